"""Deploy locks, the deploy queue, supersede, cancel-in-progress and approvals, in SQL.

Each lock is taken on a connection of its own, as a worker does, so the
advisory locks are real session locks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.deploys import acquire, deploy_entry, lock_connection, lock_failures, release
from tests.support.factories import (
    COMMIT,
    claim,
    create_repo,
    finish,
    register_worker,
    start_run_with_graph,
)
from tests.support.notify import add_target
from tests.support.queue import plan_run
from tests.support.sessions import BackgroundCall
from tests.support.waiting import wait_for


@pytest.fixture
def connections(database_url: str) -> Iterator[list[psycopg.Connection]]:
    """Three lock connections, closed at teardown."""
    conns = [lock_connection(database_url) for _ in range(3)]
    yield conns
    for conn in conns:
        conn.close()


def _setup(db: psycopg.Connection, graph: list[dict[str, Any]]) -> tuple[uuid.UUID, int]:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    return worker_id, start_run_with_graph(db, repo_id, worker_id, graph)


def _claim_one(db: psycopg.Connection, worker_id: uuid.UUID) -> dict[str, Any]:
    jobs = claim(db, worker_id, limit=1)
    assert len(jobs) == 1
    return jobs[0]


def _job(db: psycopg.Connection, job_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def _deployment(db: psycopg.Connection, job_id: int) -> dict[str, Any]:
    row = db.execute("SELECT * FROM deployments WHERE job_id = %s ORDER BY id DESC LIMIT 1",
                     (job_id,)).fetchone()
    assert row is not None
    return row


def test_deploy_lock_second_job_waits_then_wakes(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    worker_id, run_id = _setup(db, [deploy_entry("deploy-a"), deploy_entry("deploy-b")])
    first = _claim_one(db, worker_id)
    second = _claim_one(db, worker_id)

    assert acquire(connections[0], first) == {"outcome": "acquired", "reason": None}
    assert acquire(connections[1], second) == {
        "outcome": "waiting", "reason": f"waiting for production, held by run {run_id} job deploy-a"}

    parked = _job(db, second["job_id"])
    assert parked["status"] == "waiting"
    assert parked["attempt"] == 0
    assert parked["worker_id"] is None
    assert parked["lease_token"] is None
    assert db.execute("SELECT count(*) AS n FROM job_attempts WHERE job_id = %s",
                      (second["job_id"],)).fetchone()["n"] == 0
    assert lock_failures(db, "deploy:production") == 1
    assert _deployment(db, second["job_id"])["lock_failures"] == 1
    holder = db.execute("SELECT job_id, run_id, job_name FROM deploy_locks "
                        "WHERE name = 'deploy:production'").fetchone()
    assert holder == {"job_id": first["job_id"], "run_id": run_id, "job_name": "deploy-a"}

    assert finish(db, first) == "finished"
    assert release(connections[0], first["job_id"]) == 1
    assert _job(db, second["job_id"])["status"] == "queued"
    ended = _deployment(db, first["job_id"])
    assert ended["status"] == "succeeded"
    assert ended["finished_at"] == _job(db, first["job_id"])["finished_at"]
    assert ended["started_at"] is not None
    assert db.execute("SELECT count(*) AS n FROM deploy_locks").fetchone()["n"] == 0

    again = _claim_one(db, worker_id)
    assert again["job_id"] == second["job_id"]
    assert again["attempt"] == 1
    assert acquire(connections[1], again)["outcome"] == "acquired"
    assert _deployment(db, second["job_id"])["status"] == "running"


def test_deploy_start_and_end_notify(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id, kind="webhook", events=["deploy.started", "deploy.finished"])
    worker_id = register_worker(db)
    start_run_with_graph(db, repo_id, worker_id, [deploy_entry("deploy-a")])
    job = _claim_one(db, worker_id)

    assert acquire(connections[0], job)["outcome"] == "acquired"
    assert finish(db, job) == "finished"
    assert release(connections[0], job["job_id"]) == 0

    rows = db.execute("SELECT event, payload->'deployment'->>'environment' AS environment, "
                      "payload->'deployment'->>'status' AS status FROM outbox ORDER BY id").fetchall()
    assert rows == [
        {"event": "deploy.started", "environment": "production", "status": "running"},
        {"event": "deploy.finished", "environment": "production", "status": "succeeded"},
    ]


def test_release_from_other_session_ignored(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    worker_id, run_id = _setup(db, [deploy_entry("deploy-a"), deploy_entry("deploy-b")])
    first = _claim_one(db, worker_id)
    second = _claim_one(db, worker_id)
    assert acquire(connections[0], first)["outcome"] == "acquired"
    assert acquire(connections[1], second)["outcome"] == "waiting"

    assert release(connections[2], first["job_id"]) == 0

    holder = db.execute("SELECT job_id FROM deploy_locks WHERE name = 'deploy:production'").fetchone()
    assert holder == {"job_id": first["job_id"]}
    assert _job(db, second["job_id"])["status"] == "waiting"
    assert _deployment(db, first["job_id"])["status"] == "running"
    assert release(connections[0], first["job_id"]) == 1
    assert _job(db, second["job_id"])["status"] == "queued"


def test_deploy_queue_wakes_oldest_first(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    worker_id, _ = _setup(db, [deploy_entry(key) for key in ("a", "b", "c")])
    first, second, third = (_claim_one(db, worker_id) for _ in range(3))
    assert acquire(connections[0], first)["outcome"] == "acquired"
    assert acquire(connections[2], third)["outcome"] == "waiting"
    assert acquire(connections[1], second)["outcome"] == "waiting"

    assert finish(db, first) == "finished"
    assert release(connections[0], first["job_id"]) == 1

    assert _job(db, second["job_id"])["status"] == "queued"
    assert _job(db, third["job_id"])["status"] == "waiting"
    assert lock_failures(db, "deploy:production") == 2


def test_deploy_job_waits_behind_older_queued_job(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    worker_id, run_id = _setup(db, [deploy_entry("a"), deploy_entry("b")])
    jobs = claim(db, worker_id, limit=2)
    db.execute("UPDATE jobs SET status = 'queued', worker_id = NULL, lease_token = NULL "
               "WHERE id = %s", (jobs[0]["job_id"],))

    result = acquire(connections[1], jobs[1])

    assert result == {"outcome": "waiting",
                      "reason": f"waiting for production, queued behind run {run_id} job a"}
    assert lock_failures(db, "deploy:production") == 0


def test_concurrency_queue_latest_supersedes_older(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    graph = [deploy_entry(key, environment=None, group="web", queue="latest")
             for key in ("a", "b", "c", "d")]
    worker_id, run_id = _setup(db, graph)
    first = _claim_one(db, worker_id)
    assert acquire(connections[0], first)["outcome"] == "acquired"
    second = _claim_one(db, worker_id)
    assert acquire(connections[1], second) == {
        "outcome": "waiting",
        "reason": f"waiting for concurrency group web, held by run {run_id} job a"}
    third = _claim_one(db, worker_id)
    assert acquire(connections[1], third)["outcome"] == "waiting"
    fourth = _claim_one(db, worker_id)
    assert acquire(connections[1], fourth)["outcome"] == "waiting"

    assert _job(db, second["job_id"])["status"] == "superseded"
    assert _job(db, second["job_id"])["reason"] == f"superseded by run {run_id} job c"
    assert _job(db, third["job_id"])["status"] == "superseded"
    assert _job(db, third["job_id"])["reason"] == f"superseded by run {run_id} job d"

    assert finish(db, first) == "finished"
    assert release(connections[0], first["job_id"]) == 1
    assert _job(db, fourth["job_id"])["status"] == "queued"
    assert lock_failures(db, "concurrency:web") == 3


def test_concurrency_default_queue_keeps_every_job(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    graph = [deploy_entry(key, environment=None, group="web") for key in ("a", "b", "c")]
    worker_id, _ = _setup(db, graph)
    first, second, third = (_claim_one(db, worker_id) for _ in range(3))
    assert acquire(connections[0], first)["outcome"] == "acquired"
    assert acquire(connections[1], second)["outcome"] == "waiting"
    assert acquire(connections[1], third)["outcome"] == "waiting"

    assert [_job(db, job["job_id"])["status"] for job in (second, third)] == ["waiting", "waiting"]


def test_cancel_in_progress_cancels_holder(
    db: psycopg.Connection, database_url: str, connections: list[psycopg.Connection],
) -> None:
    graph = [deploy_entry(key, group="web", cancel_in_progress=True) for key in ("a", "b")]
    worker_id, run_id = _setup(db, graph)
    first = _claim_one(db, worker_id)
    second = _claim_one(db, worker_id)
    assert acquire(connections[0], first)["outcome"] == "acquired"

    with lock_connection(database_url) as listener:
        listener.execute("LISTEN mj_cancel_v1")
        result = acquire(connections[1], second)
        payloads = [notify.payload for notify in listener.notifies(timeout=2, stop_after=1)]

    assert result["outcome"] == "waiting"
    assert payloads == [str(first["job_id"])]
    holder = _job(db, first["job_id"])
    assert holder["cancel_requested_at"] is not None
    assert holder["reason"] == f"cancelled in progress by run {run_id} job b"

    assert finish(db, first, "cancelled", None, "cancelled") == "finished"
    assert release(connections[0], first["job_id"]) == 1
    assert _job(db, first["job_id"])["status"] == "cancelled"
    assert _deployment(db, first["job_id"])["status"] == "cancelled"
    assert _job(db, second["job_id"])["status"] == "queued"


def test_approval_holds_deploy_until_approved(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    worker_id, _ = _setup(db, [deploy_entry("a")])
    job = _claim_one(db, worker_id)

    assert acquire(connections[0], job) == {
        "outcome": "awaiting_approval", "reason": "waiting for approval to deploy to production"}
    assert _job(db, job["job_id"])["status"] == "awaiting_approval"
    assert _deployment(db, job["job_id"])["status"] == "awaiting_approval"

    decided = db.execute("SELECT mj_deploy_decide_v1(%s, true, 'alice') AS outcome",
                         (job["job_id"],)).fetchone()
    assert decided["outcome"] == "approved"
    assert _job(db, job["job_id"])["status"] == "queued"

    again = _claim_one(db, worker_id)
    assert acquire(connections[0], again)["outcome"] == "acquired"
    deployment = _deployment(db, job["job_id"])
    assert deployment["decision"] == "approved"
    assert deployment["decided_by"] == "alice"
    assert deployment["status"] == "running"

    repeat = db.execute("SELECT mj_deploy_decide_v1(%s, true, 'alice') AS outcome",
                        (job["job_id"],)).fetchone()
    assert repeat["outcome"] == "running"


def test_rejection_skips_deploy_and_dependents(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    graph = [deploy_entry("a"), {**deploy_entry("after", environment=None), "needs": ["a"]}]
    worker_id, run_id = _setup(db, graph)
    job = _claim_one(db, worker_id)
    assert acquire(connections[0], job)["outcome"] == "awaiting_approval"

    decided = db.execute("SELECT mj_deploy_decide_v1(%s, false, 'bob') AS outcome",
                         (job["job_id"],)).fetchone()

    assert decided["outcome"] == "rejected"
    rejected = _job(db, job["job_id"])
    assert rejected["status"] == "skipped"
    assert rejected["reason"] == "deploy to production rejected by bob"
    deployment = _deployment(db, job["job_id"])
    assert deployment["status"] == "skipped"
    assert deployment["decision"] == "rejected"
    assert deployment["decided_by"] == "bob"
    statuses = {row["key"]: row["status"] for row in db.execute(
        "SELECT key, status FROM jobs WHERE run_id = %s AND kind = 'script'", (run_id,))}
    assert statuses == {"a": "skipped", "after": "skipped"}
    assert db.execute("SELECT status FROM pipeline_runs WHERE id = %s",
                      (run_id,)).fetchone()["status"] == "succeeded"


def test_sweep_wakes_queue_after_holder_dies(db: psycopg.Connection, database_url: str) -> None:
    worker_id, _ = _setup(db, [deploy_entry("a"), deploy_entry("b")])
    first = _claim_one(db, worker_id)
    second = _claim_one(db, worker_id)
    holder = lock_connection(database_url)
    with lock_connection(database_url) as waiter:
        assert acquire(holder, first)["outcome"] == "acquired"
        assert acquire(waiter, second)["outcome"] == "waiting"
    assert db.execute("SELECT * FROM mj_deploy_sweep_v1()").fetchall() == []

    holder.close()
    woken = wait_for(lambda: db.execute("SELECT * FROM mj_deploy_sweep_v1()").fetchall(),
                     timeout=5, message="the sweep to wake the waiting deploy")

    assert [row["job_id"] for row in woken] == [second["job_id"]]
    assert woken[0]["lock_name"] == "deploy:production"
    assert _job(db, second["job_id"])["status"] == "queued"
    assert db.execute("SELECT count(*) AS n FROM deploy_locks").fetchone()["n"] == 0


def test_lost_deploy_fails_without_retry(
    db: psycopg.Connection, connections: list[psycopg.Connection],
) -> None:
    graph = [deploy_entry("plain"), deploy_entry("retried", retry={"max": 0, "infra": True},
                                                  environment="staging")]
    worker_id, _ = _setup(db, graph)
    plain = _claim_one(db, worker_id)
    retried = _claim_one(db, worker_id)
    assert acquire(connections[0], plain)["outcome"] == "acquired"
    assert acquire(connections[1], retried)["outcome"] == "acquired"
    db.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
               (worker_id,))

    reaped = db.execute("SELECT job_id, outcome FROM mj_reap_v1(30, 10, 15) ORDER BY job_id").fetchall()

    assert reaped == [{"job_id": plain["job_id"], "outcome": "failed"},
                      {"job_id": retried["job_id"], "outcome": "retrying"}]
    assert _job(db, plain["job_id"])["reason"] == "worker lost"
    db.execute("SELECT * FROM mj_deploy_sweep_v1()")
    assert _deployment(db, plain["job_id"])["status"] == "failed"
    assert _deployment(db, retried["job_id"])["status"] == "failed"


def test_sweep_locks_runs_in_id_order(db: psycopg.Connection, database_url: str) -> None:
    # The finish, the reaper and a worker's stop lock several runs in id
    # order. The sweep woke name by name and so locked runs in name order:
    # it could hold a newer run while it waited for an older one.
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    older = plan_run(db, repo_id, COMMIT, [deploy_entry(key, environment="beta") for key in ("b1", "b2")])
    newer = plan_run(db, repo_id, COMMIT, [deploy_entry(key, environment="alpha") for key in ("a1", "a2")])
    jobs = {job["key"]: job for job in claim(db, worker_id, limit=4)}
    holder = lock_connection(database_url)
    with lock_connection(database_url) as waiter:
        assert [acquire(holder, jobs[key])["outcome"] for key in ("b1", "a1")] == ["acquired"] * 2
        assert [acquire(waiter, jobs[key])["outcome"] for key in ("b2", "a2")] == ["waiting"] * 2
    holder.close()

    with lock_connection(database_url) as blocker, blocker.transaction():
        blocker.execute("SELECT 1 FROM pipeline_runs WHERE id = %s FOR UPDATE", (older,))
        sweep = BackgroundCall(database_url, "SELECT job_id FROM mj_deploy_sweep_v1()")
        sweep.wait_until_blocked(db)
        # Waiting for the older run, the sweep holds no lock on the newer one.
        with lock_connection(database_url) as other, other.transaction():
            assert other.execute("SELECT id FROM pipeline_runs WHERE id = %s FOR UPDATE NOWAIT",
                                 (newer,)).fetchone() == {"id": newer}

    assert sweep.join()
    assert sorted(sweep.result) == sorted([(jobs["b2"]["job_id"],), (jobs["a2"]["job_id"],)])
