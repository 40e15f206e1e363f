"""Runs with a given job graph, for tests that drive real workers.

The plan job is claimed by a stand-in worker and the graph is submitted
through mj_plan_submit_v1, so the jobs are exactly the graph given, with no
pipeline file to parse. The steps still run in a checkout of a real
repository.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.support.factories import create_repo, create_run, register_worker, submit_plan
from tests.support.gitrepo import GitRepo


def script_job(key: str, *commands: str, needs: list[str] | None = None,
               **extra: Any) -> dict[str, Any]:
    """A graph entry whose steps run `commands`, one step each."""
    steps = [{"name": f"step {index + 1}", "run": command} for index, command in enumerate(commands)]
    return {"key": key, "name": key, "needs": needs or [], "labels": [], "spec": {"steps": steps},
            **extra}


def add_repo(db: psycopg.Connection, git_repo: GitRepo, name: str = "acme/queue") -> tuple[int, str]:
    """Register `git_repo` and give it a commit; return (repository id, commit)."""
    commit = git_repo.commit({"README.md": f"{name}\n"}, "Initial commit")
    return create_repo(db, name, git_repo.url), commit


def plan_run(db: psycopg.Connection, repo_id: int, commit: str,
             graph: list[dict[str, Any]]) -> int:
    """Create a run whose plan produced `graph`; return the run id."""
    planner = register_worker(db)
    # One transaction, so that a running worker cannot claim the plan job first.
    with db.transaction():
        run_id = create_run(db, repo_id, commit=commit)
        plan = db.execute(
            "UPDATE jobs SET status = 'running', attempt = 1, worker_id = %s, "
            "lease_token = gen_random_uuid(), started_at = now() "
            "WHERE run_id = %s AND kind = 'plan' RETURNING id AS job_id, lease_token",
            (planner, run_id)).fetchone()
    assert submit_plan(db, plan, graph) == "finished"
    db.execute("SELECT mj_worker_stop_v1(%s)", (planner,))
    return run_id


def job_id(db: psycopg.Connection, run_id: int, key: str) -> int:
    return db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = %s",
                      (run_id, key)).fetchone()["id"]


def job_status(db: psycopg.Connection, job_id: int) -> str:
    return db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"]


def attempts(db: psycopg.Connection, job_id: int) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT attempt, worker_id, status, exit_code, reason, started_at, finished_at "
        "FROM job_attempts WHERE job_id = %s ORDER BY attempt", (job_id,)).fetchall()


def worker_ids(db: psycopg.Connection, pid: int) -> list[uuid.UUID]:
    """Instance ids registered by the worker process `pid`, oldest first."""
    rows = db.execute("SELECT id FROM workers WHERE pid = %s ORDER BY started_at", (pid,)).fetchall()
    return [row["id"] for row in rows]


def run_finished(db: psycopg.Connection, run_id: int) -> str | None:
    """The run's status once it has ended, else None (for wait_for)."""
    status = db.execute("SELECT status FROM pipeline_runs WHERE id = %s",
                        (run_id,)).fetchone()["status"]
    return None if status in ("pending", "queued", "running") else status
