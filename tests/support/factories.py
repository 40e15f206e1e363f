"""Rows for tests, created through the same SQL functions the product uses."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

COMMIT = "a" * 40


def create_repo(db: psycopg.Connection, name: str = "acme/web", url: str = "file:///nowhere",
                secret: str | None = "s3cret-value") -> int:
    row = db.execute(
        "INSERT INTO repositories (name, url, webhook_secret) VALUES (%s, %s, %s) RETURNING id",
        (name, url, secret)).fetchone()
    return row["id"]


def create_run(db: psycopg.Connection, repo_id: int, *, commit: str = COMMIT,
               ref: str = "refs/heads/main") -> int:
    row = db.execute(
        "SELECT mj_run_create_v1(%s, 'push', %s, %s, NULL, 'message', 'author', '{}') AS id",
        (repo_id, ref, commit)).fetchone()
    return row["id"]


def register_worker(db: psycopg.Connection, labels: list[str] | None = None) -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute("SELECT mj_worker_register_v1(%s, 'test', 'host', 1, %s, 4, 'test')",
               (worker_id, labels or []))
    return worker_id


def claim(db: psycopg.Connection, worker_id: uuid.UUID, labels: list[str] | None = None,
          limit: int = 10) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM mj_job_claim_v1(%s, %s, %s)",
                      (worker_id, labels or [], limit)).fetchall()


def finish(db: psycopg.Connection, job: dict[str, Any], status: str = "succeeded",
           exit_code: int | None = 0, reason: str | None = None) -> str:
    row = db.execute("SELECT mj_job_finish_v1(%s, %s, %s, %s, %s, 0.01, 0.05) AS outcome",
                     (job["job_id"], job["lease_token"], status, exit_code, reason)).fetchone()
    return row["outcome"]


def submit_plan(db: psycopg.Connection, plan_job: dict[str, Any],
                graph: list[dict[str, Any]]) -> str:
    row = db.execute("SELECT mj_plan_submit_v1(%s, %s, %s::jsonb) AS outcome",
                     (plan_job["job_id"], plan_job["lease_token"], json.dumps(graph))).fetchone()
    return row["outcome"]


def job_entry(key: str, needs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "needs": needs or [], "labels": [], "spec": {"steps": []},
            **extra}


def start_run_with_graph(db: psycopg.Connection, repo_id: int, worker_id: uuid.UUID,
                         graph: list[dict[str, Any]]) -> int:
    """Create a run, claim and submit its plan; return the run id."""
    run_id = create_run(db, repo_id)
    plans = [job for job in claim(db, worker_id) if job["run_id"] == run_id and job["kind"] == "plan"]
    assert len(plans) == 1
    assert submit_plan(db, plans[0], graph) == "finished"
    return run_id


def statuses(db: psycopg.Connection, run_id: int) -> dict[str, str]:
    rows = db.execute("SELECT key, status FROM jobs WHERE run_id = %s", (run_id,)).fetchall()
    return {row["key"]: row["status"] for row in rows}


def run_status(db: psycopg.Connection, run_id: int) -> str:
    return db.execute("SELECT status FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()["status"]
