"""Notification targets and closed runs for outbox tests, made through the product's SQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.support.factories import claim, create_run, finish, job_entry, submit_plan

ALL_RUN_EVENTS = ["run.succeeded", "run.failed", "run.fixed", "run.cancelled"]


def add_target(db: psycopg.Connection, repo_id: int, *, kind: str = "webhook",
               events: list[str] | None = None, url_encrypted: str = "not-used") -> int:
    """A target row without real ciphertexts (for tests that never deliver)."""
    row = db.execute(
        "INSERT INTO notification_targets (repo_id, kind, url_encrypted, url_display, events) "
        "VALUES (%s, %s, %s, 'http://127.0.0.1', %s) RETURNING id",
        (repo_id, kind, url_encrypted, events or ALL_RUN_EVENTS)).fetchone()
    return row["id"]


def close_run(db: psycopg.Connection, repo_id: int, worker_id: uuid.UUID, status: str = "succeeded",
              *, ref: str = "refs/heads/main", commit: str = "b" * 40) -> int:
    """Create a run with one job `build`, run it to `status` and return the run id."""
    run_id = create_run(db, repo_id, ref=ref, commit=commit)
    plans = [job for job in claim(db, worker_id) if job["run_id"] == run_id]
    assert submit_plan(db, plans[0], [job_entry("build")]) == "finished"
    build = [job for job in claim(db, worker_id) if job["run_id"] == run_id][0]
    exit_code = 0 if status == "succeeded" else 2
    assert finish(db, build, status, exit_code, None if status == "succeeded" else "exit 2") == "finished"
    return run_id


def outbox_rows(db: psycopg.Connection, run_id: int | None = None) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT * FROM outbox WHERE %(run_id)s::bigint IS NULL OR run_id = %(run_id)s::bigint "
        "ORDER BY id", {"run_id": run_id}).fetchall()


def claim_deliveries(db: psycopg.Connection, limit: int = 10, *, lease: float = 30,
                     horizon: float = 3600, per_target: int = 10) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM mj_outbox_claim_v2('test', %s, %s, %s, %s)",
                      (limit, lease, horizon, per_target)).fetchall()


def report(db: psycopg.Connection, row: dict[str, Any], outcome: str, *, status_code: int | None = None,
           error: str | None = None, retry_after: float | None = None, base: float = 10,
           maximum: float = 60, horizon: float = 3600) -> str:
    return db.execute(
        "SELECT mj_outbox_report_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s) AS state",
        (row["id"], row["lease_token"], outcome, status_code, error, retry_after, base, maximum,
         horizon)).fetchone()["state"]
