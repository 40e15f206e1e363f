"""Environments over HTTP and the CLI: settings, approvals, history, holder and queue."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support.api import ApiServer
from tests.support.deploys import acquire, deploy_entry, lock_connection
from tests.support.factories import claim, create_repo, register_worker, start_run_with_graph
from tests.support.gitrepo import GitRepo
from tests.support.queue import add_repo, plan_run, run_finished
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, scrubbed_environment

Start = Callable[..., WorkerProcess]


def _job_row(db: psycopg.Connection, run_id: int, key: str) -> dict[str, Any]:
    row = db.execute("SELECT id, status, reason FROM jobs WHERE run_id = %s AND key = %s",
                     (run_id, key)).fetchone()
    assert row is not None
    return row


def test_approval_over_http_runs_deploy(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    repo_id, commit = add_repo(db, git_repo)
    with api_server.client() as client:
        put = client.put("/api/environments/production", json={"requires_approval": True})
        assert put.status_code == 200
        assert put.json()["requires_approval"] is True
        run_id = plan_run(db, repo_id, commit, [deploy_entry("deploy", "echo deployed")])
        start_worker()
        job = wait_for(lambda: db.execute(
            "SELECT id, reason FROM jobs WHERE run_id = %s AND status = 'awaiting_approval'",
            (run_id,)).fetchone(), timeout=30, message="the deploy to await approval")
        assert job["reason"] == "waiting for approval to deploy to production"

        environment = client.get("/api/environments/production").json()
        assert environment["awaiting_approval"] == 1
        assert [entry["job_id"] for entry in environment["queue"]] == [job["id"]]
        assert environment["queue"][0]["status"] == "awaiting_approval"

        approved = client.post(f"/api/jobs/{job['id']}/approve")
        assert approved.status_code == 200
        assert approved.json() == {"job_id": job["id"], "outcome": "approved"}
        assert wait_for(lambda: run_finished(db, run_id), timeout=60,
                        message="the approved deploy's run to end") == "succeeded"

        # The worker releases the deploy lock once the job's result is
        # recorded, so the run can end a moment before the lock is free.
        def released() -> dict[str, Any] | None:
            history = client.get("/api/environments/production/deployments").json()
            return history if history["environment"]["holder"] is None else None

        history = wait_for(released, timeout=30, message="the deploy lock to be released")
        scraped = client.get("/metrics").text
    assert history["environment"]["holder"] is None
    assert history["queue"] == []
    [deployment] = history["deployments"]
    assert deployment["job_id"] == job["id"]
    assert deployment["status"] == "succeeded"
    assert deployment["decision"] == "approved"
    assert deployment["decided_by"] == "MINIJENKIN_ADMIN_TOKEN"
    assert deployment["commit_sha"] == commit
    assert deployment["ref"] == "refs/heads/main"
    assert deployment["event"] == "push"
    assert deployment["repo"] == "acme/queue"
    assert deployment["started_at"] is not None
    assert deployment["finished_at"] >= deployment["started_at"]
    assert 'minijenkin_deploys{environment="production",status="succeeded"} 1.0' in scraped
    assert 'minijenkin_deploy_lead_time_seconds{environment="production",quantile="0.5"}' in scraped


def test_reject_over_http_skips_deploy(api_server: ApiServer, db: psycopg.Connection,
                                       database_url: str) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), worker_id, [deploy_entry("deploy")])
    [job] = claim(db, worker_id, limit=1)
    with lock_connection(database_url) as conn:
        assert acquire(conn, job)["outcome"] == "awaiting_approval"

    with api_server.client() as client:
        rejected = client.post(f"/api/jobs/{job['job_id']}/approve", params={"reject": "true"})
        again = client.post(f"/api/jobs/{job['job_id']}/approve")
        history = client.get("/api/environments/production/deployments").json()

    assert rejected.status_code == 200
    assert rejected.json() == {"job_id": job["job_id"], "outcome": "rejected"}
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"job {job['job_id']} is not awaiting approval: its status is 'skipped'")
    assert _job_row(db, run_id, "deploy")["reason"] == (
        "deploy to production rejected by MINIJENKIN_ADMIN_TOKEN")
    assert [(row["status"], row["decision"]) for row in history["deployments"]] == [("skipped", "rejected")]


def test_approve_needs_admin_token(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        created = client.post("/api/tokens", json={"name": "ci bot", "scope": "trigger"})
    token = created.json()["token"]

    with api_server.client(token=token) as client:
        response = client.post("/api/jobs/1/approve")

    assert response.status_code == 403
    assert response.json()["detail"] == "token 'ci bot' has scope 'trigger'; this needs 'admin'"


def test_environment_api_rejects_bad_input(api_server: ApiServer) -> None:
    with api_server.client() as client:
        too_long = client.put("/api/environments/" + "p" * 256, json={"requires_approval": True})
        missing_field = client.put("/api/environments/production", json={})
        unknown = client.get("/api/environments/nowhere/deployments")
        unknown_job = client.post("/api/jobs/999999/approve")
        bad_body = client.post("/api/jobs/1/approve", params={"reject": "maybe"})

    assert too_long.status_code == 422
    assert missing_field.status_code == 422
    assert "requires_approval" in str(missing_field.json())
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "environment 'nowhere' not found"
    assert unknown_job.status_code == 404
    assert bad_body.status_code == 422
    assert "reject" in str(bad_body.json())



def test_environment_put_rejects_unmatchable_names(api_server: ApiServer,
                                                   db: psycopg.Connection) -> None:
    with api_server.client() as client:
        trailing = client.put("/api/environments/production%20", json={"requires_approval": True})
        blank = client.put("/api/environments/%20", json={"requires_approval": True})
        control = client.put("/api/environments/prod%09uction", json={"requires_approval": True})

    assert trailing.status_code == 422
    assert trailing.json() == {
        "detail": "invalid environment 'production ': use 1 to 255 printable characters "
                  "without leading or trailing spaces",
        "field": "name"}
    assert blank.status_code == 422
    assert blank.json()["field"] == "name"
    assert control.status_code == 422
    assert control.json()["field"] == "name"
    assert db.execute("SELECT count(*) AS n FROM environments").fetchone()["n"] == 0

def test_environment_list_shows_holder_and_waiting(
    api_server: ApiServer, db: psycopg.Connection, database_url: str,
) -> None:
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), worker_id,
                                  [deploy_entry("first"), deploy_entry("second")])
    first, second = claim(db, worker_id, limit=2)
    with lock_connection(database_url) as holder, lock_connection(database_url) as waiter:
        assert acquire(holder, first)["outcome"] == "acquired"
        assert acquire(waiter, second)["outcome"] == "waiting"
        with api_server.client() as client:
            listed = client.get("/api/environments").json()
            scraped = client.get("/metrics").text

    [environment] = listed["environments"]
    assert environment["name"] == "production"
    assert environment["holder"]["job_id"] == first["job_id"]
    assert environment["holder"]["run_id"] == run_id
    assert environment["holder"]["job_name"] == "first"
    assert environment["waiting"] == 1
    assert environment["lock_failures"] == 1
    assert 'minijenkin_deploys_waiting{environment="production",state="waiting"} 1.0' in scraped
    assert ('minijenkin_deploys_waiting{environment="production",state="awaiting_approval"} 0.0'
            in scraped)
    assert 'minijenkin_deploy_lock_failures_total{lock="deploy:production"} 1.0' in scraped
    assert "# TYPE minijenkin_deploy_lock_failures_total counter" in scraped


def test_cli_approve_command(db: psycopg.Connection, database_url: str) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), worker_id, [deploy_entry("deploy")])
    [job] = claim(db, worker_id, limit=1)
    with lock_connection(database_url) as conn:
        assert acquire(conn, job)["outcome"] == "awaiting_approval"
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url}

    result = subprocess.run([sys.executable, "-m", "minijenkin", "approve", str(job["job_id"])],
                            env=env, text=True, capture_output=True, timeout=60, check=False)
    repeat = subprocess.run([sys.executable, "-m", "minijenkin", "approve", "--reject",
                             str(job["job_id"])],
                            env=env, text=True, capture_output=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"job {job['job_id']}: deploy approved by cli:")
    assert _job_row(db, run_id, "deploy")["status"] == "queued"
    assert repeat.returncode != 0
    assert "is not awaiting approval" in repeat.stderr
