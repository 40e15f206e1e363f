"""Graph entries and SQL calls for deploy-lock tests."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def deploy_entry(key: str, *commands: str, environment: str | None = "production",
                 group: str | None = None, queue: str = "all", cancel_in_progress: bool = False,
                 needs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A graph entry for a job with an environment and/or a concurrency group.

    The plan job stores both the entry's fields (read by the queue's SQL)
    and the spec's (read by the worker); this builds both the same way.
    """
    steps = [{"name": f"step {index + 1}", "run": command} for index, command in enumerate(commands)]
    spec: dict[str, Any] = {"steps": steps}
    entry: dict[str, Any] = {"key": key, "name": key, "needs": needs or [], "labels": [],
                             "spec": spec, **extra}
    if environment is not None:
        spec["environment"] = {"name": environment, "url": None}
        entry["environment"] = environment
    if group is not None:
        concurrency = {"group": group, "cancel_in_progress": cancel_in_progress, "queue": queue}
        spec["concurrency"] = concurrency
        entry["concurrency"] = concurrency
    return entry


def lock_connection(database_url: str) -> psycopg.Connection:
    """A dedicated connection, like the one a worker holds a deploy lock on."""
    return psycopg.connect(database_url, autocommit=True, row_factory=dict_row)


def acquire(conn: psycopg.Connection, job: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM mj_deploy_acquire_v1(%s, %s)",
                       (job["job_id"], job["lease_token"])).fetchone()
    assert row is not None
    return row


def release(conn: psycopg.Connection, job_id: int) -> int:
    row = conn.execute("SELECT mj_deploy_release_v1(%s) AS woken", (job_id,)).fetchone()
    assert row is not None
    return int(row["woken"])


def lock_failures(db: psycopg.Connection, name: str) -> int:
    row = db.execute("SELECT failures FROM deploy_lock_failures WHERE name = %s", (name,)).fetchone()
    return int(row["failures"]) if row else 0
