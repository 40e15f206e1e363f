"""Pipeline runs and their jobs: creating, reading, cancelling and re-running."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from minijenkin.db import translate_errors
from minijenkin.errors import NotFoundError
from minijenkin.sql import QUERIES

RUN_STATUSES = ("pending", "queued", "running", "succeeded", "failed", "cancelled", "skipped",
                "timed_out")
# Job statuses before the end; only jobs are ever waiting (for a deploy lock) or
# awaiting_approval. Keep in step with mj_status_is_active in SQL.
ACTIVE_STATUSES = frozenset({"pending", "queued", "running", "waiting", "awaiting_approval"})
EVENTS = ("push", "tag", "pull_request", "manual", "schedule", "api")


async def create_run(
    conn: psycopg.AsyncConnection,
    *,
    repo_id: int,
    event: str,
    ref: str,
    commit_sha: str,
    before_sha: str | None = None,
    message: str | None = None,
    author: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> int:
    """Insert a run and its plan job (one statement) and return the run id."""
    with translate_errors():
        cursor = await conn.execute(QUERIES["run_create"], {
            "repo_id": repo_id, "event": event, "ref": ref, "commit_sha": commit_sha,
            "before_sha": before_sha, "message": message, "author": author,
            "trigger": Jsonb(trigger or {}),
        })
    row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def create_run_for_head(
    conn: psycopg.AsyncConnection,
    *,
    repo_id: int,
    event: str,
    ref: str,
    commit_sha: str,
    source: str,
    before_sha: str | None = None,
    message: str | None = None,
    author: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> tuple[int | None, bool]:
    """Start a run for a pushed head unless a webhook or poll already did.

    Returns (run id, whether this call created it); the run id of an
    earlier trigger is None when that run was deleted.
    """
    with translate_errors():
        cursor = await conn.execute(QUERIES["run_create_for_head"], {
            "repo_id": repo_id, "event": event, "ref": ref, "commit_sha": commit_sha,
            "before_sha": before_sha, "message": message, "author": author,
            "trigger": Jsonb(trigger or {}), "source": source,
        })
    row = await cursor.fetchone()
    assert row is not None
    return row["run_id"], bool(row["created"])


async def get_run(conn: psycopg.AsyncConnection, run_id: int) -> dict[str, Any]:
    """The run with its jobs; raise NotFoundError for an unknown id."""
    cursor = await conn.execute(QUERIES["run_get"], {"run_id": run_id})
    run = await cursor.fetchone()
    if run is None:
        raise NotFoundError(f"run {run_id} does not exist")
    cursor = await conn.execute(QUERIES["run_jobs"], {"run_id": run_id})
    run["jobs"] = await cursor.fetchall()
    return run


async def list_runs(
    conn: psycopg.AsyncConnection,
    *,
    repo: str | None = None,
    status: str | None = None,
    event: str | None = None,
    ref: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["run_list"], {
        "repo": repo, "status": status, "event": event, "ref": ref, "before_id": before_id,
        "limit": limit,
    })
    return await cursor.fetchall()


async def cancel_run(conn: psycopg.AsyncConnection, run_id: int, *, reason: str) -> int:
    """Cancel a run's active jobs; return how many were cancelled or flagged."""
    with translate_errors():
        cursor = await conn.execute(QUERIES["run_cancel"], {"run_id": run_id, "reason": reason})
    row = await cursor.fetchone()
    assert row is not None
    return int(row["affected"])


async def rerun_run(conn: psycopg.AsyncConnection, run_id: int, *, failed_only: bool) -> int:
    """Queue new attempts for a finished run's jobs; return how many were reset."""
    with translate_errors():
        cursor = await conn.execute(
            QUERIES["run_rerun"], {"run_id": run_id, "failed_only": failed_only}
        )
    row = await cursor.fetchone()
    assert row is not None
    return int(row["reset"])


async def get_job(conn: psycopg.AsyncConnection, job_id: int) -> dict[str, Any]:
    """The job with every attempt; raise NotFoundError for an unknown id."""
    cursor = await conn.execute(QUERIES["job_get"], {"job_id": job_id})
    job = await cursor.fetchone()
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    cursor = await conn.execute(QUERIES["job_attempts"], {"job_id": job_id})
    job["attempts"] = await cursor.fetchall()
    return job


async def cancel_job(conn: psycopg.AsyncConnection, job_id: int, *, reason: str) -> str:
    """Cancel one job; return 'cancelled', 'cancel_requested' or 'already_finished'."""
    with translate_errors():
        cursor = await conn.execute(QUERIES["job_cancel"], {"job_id": job_id, "reason": reason})
    row = await cursor.fetchone()
    assert row is not None
    return str(row["outcome"])
