"""Deploy locks with real workers: no two deploys to one environment overlap, and a
killed worker's lock passes to the next deploy."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.support.api import ApiServer
from tests.support.deploys import deploy_entry, lock_failures
from tests.support.gitrepo import GitRepo
from tests.support.queue import add_repo, plan_run, run_finished
from tests.support.waiting import wait_for
from tests.support.workers import FAST_WORKER_ENV, WorkerProcess

Start = Callable[..., WorkerProcess]
LEASE_SECONDS = float(FAST_WORKER_ENV["MINIJENKIN_WORKER_LEASE_SECONDS"])


def _deployments(db: psycopg.Connection, environment: str) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT d.job_id, d.status, d.started_at, d.finished_at, d.lock_failures, j.status AS job_status "
        "FROM deployments d JOIN jobs j ON j.id = d.job_id "
        "WHERE d.environment = %s ORDER BY d.started_at", (environment,)).fetchall()


def _assert_serial(rows: list[dict[str, Any]]) -> None:
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier["finished_at"] <= later["started_at"], (earlier, later)


def _overlaps(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> int:
    return sum(1 for a in first for b in second
               if a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"])


@pytest.mark.slow
def test_deploys_never_overlap_per_environment(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    run_ids = [plan_run(db, repo_id, commit, [
        deploy_entry(f"deploy {environment} {index}", "sleep 0.1", environment=environment)
        for index in range(10) for environment in ("production", "staging")])
        for _ in range(6)]
    for _ in range(3):
        start_worker(MINIJENKIN_WORKER_CONCURRENCY="2")

    wait_for(lambda: all(run_finished(db, run_id) for run_id in run_ids), timeout=240,
             interval=0.5, message="every deploy run to end")

    assert [run_finished(db, run_id) for run_id in run_ids] == ["succeeded"] * 6
    production = _deployments(db, "production")
    staging = _deployments(db, "staging")
    assert len(production) == 60
    assert len(staging) == 60
    assert {row["status"] for row in production + staging} == {"succeeded"}
    _assert_serial(production)
    _assert_serial(staging)
    assert _overlaps(production, staging) > 0
    for environment, rows in (("production", production), ("staging", staging)):
        counted = lock_failures(db, f"deploy:{environment}")
        assert counted == sum(row["lock_failures"] for row in rows)
        assert counted > 0


@pytest.mark.slow
def test_kill9_lock_holder_passes_lock_on(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    holder = start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
    first_run = plan_run(db, repo_id, commit, [deploy_entry("deploy", "sleep 15")])
    first = wait_for(lambda: db.execute(
        "SELECT job_id FROM deployments WHERE run_id = %s AND status = 'running'",
        (first_run,)).fetchone(), timeout=30, message="the first deploy to hold the lock")

    second_run = plan_run(db, repo_id, commit, [deploy_entry("deploy", "true")])
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
    waiting = wait_for(lambda: db.execute(
        "SELECT id, reason FROM jobs WHERE run_id = %s AND status = 'waiting'",
        (second_run,)).fetchone(), timeout=30, message="the second deploy to wait")
    assert waiting["reason"] == f"waiting for production, held by run {first_run} job deploy"

    holder.kill()
    killed_at: dt.datetime = db.execute("SELECT now() AS t").fetchone()["t"]
    killed_monotonic = time.monotonic()

    started = wait_for(lambda: db.execute(
        "SELECT started_at FROM deployments WHERE job_id = %s AND started_at IS NOT NULL",
        (waiting["id"],)).fetchone(), timeout=LEASE_SECONDS * 4, message="the next deploy to start")
    assert (started["started_at"] - killed_at).total_seconds() < LEASE_SECONDS
    assert time.monotonic() - killed_monotonic < LEASE_SECONDS * 2

    assert wait_for(lambda: run_finished(db, first_run), timeout=30,
                    message="the killed deploy's run to end") == "failed"
    killed = db.execute("SELECT status, reason, attempt FROM jobs WHERE id = %s",
                        (first["job_id"],)).fetchone()
    assert killed == {"status": "failed", "reason": "worker lost", "attempt": 1}
    assert wait_for(lambda: run_finished(db, second_run), timeout=30,
                    message="the next deploy's run to end") == "succeeded"
    rows = _deployments(db, "production")
    assert [row["status"] for row in rows] == ["failed", "succeeded"]


def _job(db: psycopg.Connection, run_id: int) -> dict[str, Any]:
    row = db.execute("SELECT id, status, reason FROM jobs WHERE run_id = %s AND kind = 'script'",
                     (run_id,)).fetchone()
    assert row is not None
    return row


def test_cancel_in_progress_stops_running_deploy(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="2")
    first_run = plan_run(db, repo_id, commit, [
        deploy_entry("deploy", "sleep 30", group="web", cancel_in_progress=True)])
    wait_for(lambda: db.execute("SELECT 1 FROM deployments WHERE run_id = %s AND status = 'running'",
                                (first_run,)).fetchone(), timeout=30, message="the first deploy to start")

    second_run = plan_run(db, repo_id, commit, [
        deploy_entry("deploy", "true", group="web", cancel_in_progress=True)])

    assert wait_for(lambda: run_finished(db, first_run), timeout=30,
                    message="the first run to be cancelled") == "cancelled"
    assert wait_for(lambda: run_finished(db, second_run), timeout=30,
                    message="the second run to end") == "succeeded"
    cancelled = _job(db, first_run)
    assert cancelled["status"] == "cancelled"
    assert cancelled["reason"] == f"cancelled in progress by run {second_run} job deploy"
    _assert_serial(_deployments(db, "production"))


def test_queue_latest_supersedes_pending_deploys(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="2")
    holder_run = plan_run(db, repo_id, commit, [
        deploy_entry("deploy", "sleep 4", group="web", queue="latest")])
    wait_for(lambda: db.execute("SELECT 1 FROM deployments WHERE run_id = %s AND status = 'running'",
                                (holder_run,)).fetchone(), timeout=30, message="the first deploy to start")

    pending_runs = []
    for _ in range(3):
        run_id = plan_run(db, repo_id, commit, [
            deploy_entry("deploy", "true", group="web", queue="latest")])
        pending_runs.append(run_id)
        wait_for(lambda run_id=run_id: _job(db, run_id)["status"] == "waiting", timeout=30,
                 message="the pending deploy to be parked")

    for run_id in [holder_run, *pending_runs]:
        wait_for(lambda run_id=run_id: run_finished(db, run_id), timeout=60,
                 message="every run to end")
    statuses = [_job(db, run_id)["status"] for run_id in [holder_run, *pending_runs]]
    assert statuses == ["succeeded", "superseded", "superseded", "succeeded"]
    assert _job(db, pending_runs[0])["reason"] == f"superseded by run {pending_runs[1]} job deploy"
    assert _job(db, pending_runs[1])["reason"] == f"superseded by run {pending_runs[2]} job deploy"
