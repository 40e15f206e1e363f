"""`minijenkin cancel` and `minijenkin rerun` against a real database."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from tests.support.api import ApiServer
from tests.support.factories import (
    claim,
    create_repo,
    create_run,
    finish,
    job_entry,
    register_worker,
    run_status,
    start_run_with_graph,
    statuses,
)
from tests.support.workers import scrubbed_environment


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "minijenkin", *args], env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def test_cancel_run_command(db: psycopg.Connection, database_url: str) -> None:
    run_id = start_run_with_graph(db, create_repo(db), register_worker(db), [
        job_entry("build"), job_entry("test", ["build"])])

    result = _cli(database_url, "cancel", str(run_id))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"run {run_id}: 2 unfinished jobs cancelled or being stopped\n"
    assert statuses(db, run_id) == {"plan": "succeeded", "build": "cancelled", "test": "cancelled"}
    assert run_status(db, run_id) == "cancelled"


def test_cancel_run_of_one_job(db: psycopg.Connection, database_url: str) -> None:
    run_id = start_run_with_graph(db, create_repo(db), register_worker(db), [job_entry("build")])

    result = _cli(database_url, "cancel", str(run_id))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"run {run_id}: 1 unfinished job cancelled or being stopped\n"


def test_cancel_job_command_flags_running_job(db: psycopg.Connection, database_url: str) -> None:
    worker_id = register_worker(db)
    start_run_with_graph(db, create_repo(db), worker_id, [job_entry("build")])
    build = claim(db, worker_id)[0]

    result = _cli(database_url, "cancel", "--job", str(build["job_id"]))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"job {build['job_id']} is running; its worker was told to stop it\n"
    row = db.execute("SELECT status, reason, cancel_requested_at FROM jobs WHERE id = %s",
                     (build["job_id"],)).fetchone()
    assert row["status"] == "running"
    assert row["reason"] == "cancelled from the command line"
    assert row["cancel_requested_at"] is not None


def test_cancel_unknown_run_fails(database_url: str) -> None:
    result = _cli(database_url, "cancel", "999999")

    assert result.returncode == 1
    assert "run 999999 does not exist" in result.stderr


def test_cancel_needs_run_or_job(database_url: str) -> None:
    result = _cli(database_url, "cancel")

    assert result.returncode == 2
    assert "give either a RUN_ID or --job JOB_ID" in result.stderr


def test_rerun_failed_only_command(db: psycopg.Connection, database_url: str) -> None:
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), worker_id, [
        job_entry("lint"), job_entry("build"), job_entry("deploy", ["build"])])
    jobs = {job["key"]: job for job in claim(db, worker_id)}
    finish(db, jobs["lint"])
    finish(db, jobs["build"], "failed", 1)

    result = _cli(database_url, "rerun", str(run_id), "--failed-only")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"run {run_id}: 2 jobs queued again\n"
    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "succeeded", "build": "queued",
                                    "deploy": "pending"}


def test_rerun_active_run_fails(db: psycopg.Connection, database_url: str) -> None:
    run_id = start_run_with_graph(db, create_repo(db), register_worker(db), [job_entry("build")])

    result = _cli(database_url, "rerun", str(run_id))

    assert result.returncode == 1
    assert f"run {run_id} is still active; cancel it or wait for it to finish" in result.stderr


def test_show_queued_job_without_workers(api_server: ApiServer, db: psycopg.Connection,
                                         database_url: str) -> None:
    # The plan job has no labels, so it waits only because no worker is live.
    run_id = create_run(db, create_repo(db))

    result = _cli(database_url, "show", str(run_id))
    with api_server.client() as client:
        page = client.get(f"/runs/{run_id}").text

    assert result.returncode == 0, result.stderr
    assert "waiting for a worker: no worker is live" in result.stdout
    assert "with the labels" not in result.stdout
    assert "waiting for a worker: no worker is live" in page
    assert "with the labels" not in page
