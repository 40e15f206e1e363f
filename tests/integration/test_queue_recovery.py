"""Leases, the reaper, heartbeats and retry policies, through the queue's SQL functions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest

from tests.support.factories import (
    claim,
    create_repo,
    create_run,
    job_entry,
    register_worker,
    run_status,
    start_run_with_graph,
    statuses,
)

LEASE = 30.0
BASE = 10.0
MAXIMUM = 15.0


def _age_heartbeat(db: psycopg.Connection, worker_id: uuid.UUID) -> None:
    db.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
               (worker_id,))


def _reap(db: psycopg.Connection) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM mj_reap_v1(%s, %s, %s)", (LEASE, BASE, MAXIMUM)).fetchall()


def _finish(db: psycopg.Connection, job: dict[str, Any], status: str,
            exit_code: int | None = None) -> str:
    row = db.execute("SELECT mj_job_finish_v1(%s, %s, %s, %s, %s, %s, %s) AS outcome",
                     (job["job_id"], job["lease_token"], status, exit_code, f"ended {status}",
                      BASE, MAXIMUM)).fetchone()
    return row["outcome"]


def _job(db: psycopg.Connection, job_id: int) -> dict[str, Any]:
    return db.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()


def _attempts(db: psycopg.Connection, job_id: int) -> list[tuple[int, str, str | None]]:
    rows = db.execute("SELECT attempt, status, reason FROM job_attempts WHERE job_id = %s "
                      "ORDER BY attempt", (job_id,)).fetchall()
    return [(row["attempt"], row["status"], row["reason"]) for row in rows]


def _backoff_seconds(db: psycopg.Connection, job_id: int) -> float:
    job = _job(db, job_id)
    return (job["run_after"] - job["queued_at"]).total_seconds()


def _make_due(db: psycopg.Connection, job_id: int) -> None:
    """Skip the backoff so the next claim can take the job at once."""
    db.execute("UPDATE jobs SET run_after = now() WHERE id = %s", (job_id,))


def _single_job_run(db: psycopg.Connection, **entry: Any) -> tuple[uuid.UUID, dict[str, Any]]:
    worker_id = register_worker(db)
    start_run_with_graph(db, create_repo(db), worker_id, [job_entry("build", **entry)])
    jobs = claim(db, worker_id)
    assert [job["key"] for job in jobs] == ["build"]
    return worker_id, jobs[0]


def test_reap_requeues_job_of_lost_worker(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)
    _age_heartbeat(db, worker_id)

    reaped = _reap(db)

    assert [(row["job_id"], row["worker_id"], row["attempt"], row["outcome"]) for row in reaped] == [
        (job["job_id"], worker_id, 1, "retrying")]
    assert db.execute("SELECT status FROM workers WHERE id = %s", (worker_id,)).fetchone() == {
        "status": "lost"}
    row = _job(db, job["job_id"])
    assert row["status"] == "queued"
    assert row["reason"] == "worker lost"
    assert row["worker_id"] is None
    assert row["lease_token"] is None
    assert _attempts(db, job["job_id"]) == [(1, "lost", "worker lost")]
    # First retry: uniformly in [base / 2, base].
    assert BASE / 2 <= _backoff_seconds(db, job["job_id"]) <= BASE


def test_reap_ignores_live_worker(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)

    assert _reap(db) == []
    assert _job(db, job["job_id"])["status"] == "running"
    assert db.execute("SELECT status FROM workers WHERE id = %s", (worker_id,)).fetchone() == {
        "status": "active"}


def test_reap_fails_job_after_max_attempts(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db, max_attempts=2)
    _age_heartbeat(db, worker_id)
    assert [row["outcome"] for row in _reap(db)] == ["retrying"]
    _make_due(db, job["job_id"])
    second_worker = register_worker(db)
    second = claim(db, second_worker)
    assert [(row["job_id"], row["attempt"]) for row in second] == [(job["job_id"], 2)]
    _age_heartbeat(db, second_worker)

    assert [row["outcome"] for row in _reap(db)] == ["failed"]

    row = _job(db, job["job_id"])
    assert row["status"] == "failed"
    assert row["reason"] == "worker lost"
    assert _attempts(db, job["job_id"]) == [(1, "lost", "worker lost"), (2, "lost", "worker lost")]
    assert run_status(db, row["run_id"]) == "failed"


def test_reap_backoff_doubles_per_lost_attempt(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db, max_attempts=5)
    delays = []
    for attempt in range(1, 4):
        _age_heartbeat(db, worker_id)
        assert [row["outcome"] for row in _reap(db)] == ["retrying"]
        delays.append(_backoff_seconds(db, job["job_id"]))
        _make_due(db, job["job_id"])
        worker_id = register_worker(db)
        assert [row["attempt"] for row in claim(db, worker_id)] == [attempt + 1]

    # d = min(max, base * 2^(n-1)), drawn from [d / 2, d].
    assert 5.0 <= delays[0] <= 10.0
    assert 7.5 <= delays[1] <= 15.0
    assert 7.5 <= delays[2] <= 15.0


def test_reap_fails_at_once_when_infra_retry_excluded(db: psycopg.Connection) -> None:
    policy = {"max": 2, "script": True, "timeout": False, "infra": False}
    worker_id, job = _single_job_run(db, retry=policy, max_attempts=1)
    _age_heartbeat(db, worker_id)

    assert [row["outcome"] for row in _reap(db)] == ["failed"]
    assert _job(db, job["job_id"])["status"] == "failed"


def test_reap_cancels_job_with_cancel_request(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)
    db.execute("SELECT mj_job_cancel_v1(%s, 'stop it')", (job["job_id"],))
    _age_heartbeat(db, worker_id)

    assert [row["outcome"] for row in _reap(db)] == ["cancelled"]
    assert _job(db, job["job_id"])["status"] == "cancelled"
    assert _attempts(db, job["job_id"]) == [(1, "lost", "worker lost")]


def test_late_finish_after_reap_is_stale(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)
    _age_heartbeat(db, worker_id)
    _reap(db)
    _make_due(db, job["job_id"])
    replacement = claim(db, register_worker(db))[0]

    assert _finish(db, job, "succeeded", 0) == "stale"
    assert _finish(db, replacement, "succeeded", 0) == "finished"
    assert _job(db, job["job_id"])["status"] == "succeeded"
    assert _attempts(db, job["job_id"]) == [(1, "lost", "worker lost"),
                                            (2, "succeeded", "ended succeeded")]


def test_lost_worker_claims_nothing_until_heartbeat(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)
    _age_heartbeat(db, worker_id)
    _reap(db)
    _make_due(db, job["job_id"])

    assert claim(db, worker_id) == []

    actions = db.execute("SELECT * FROM mj_worker_heartbeat_v1(%s, %s, %s)",
                         (worker_id, [job["job_id"]], [job["lease_token"]])).fetchall()
    assert actions == [{"job_id": job["job_id"], "action": "abandon"}]
    assert db.execute("SELECT status FROM workers WHERE id = %s", (worker_id,)).fetchone() == {
        "status": "active"}
    assert [row["attempt"] for row in claim(db, worker_id)] == [2]


def test_heartbeat_requests_cancel_of_flagged_job(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)
    before = db.execute("SELECT heartbeat_at FROM workers WHERE id = %s", (worker_id,)).fetchone()
    db.execute("SELECT mj_job_cancel_v1(%s, 'stop it')", (job["job_id"],))

    actions = db.execute("SELECT * FROM mj_worker_heartbeat_v1(%s, %s, %s)",
                         (worker_id, [job["job_id"]], [job["lease_token"]])).fetchall()

    assert actions == [{"job_id": job["job_id"], "action": "cancel"}]
    after = db.execute("SELECT heartbeat_at FROM workers WHERE id = %s", (worker_id,)).fetchone()
    assert after["heartbeat_at"] > before["heartbeat_at"]


def test_heartbeat_hands_back_claim_worker_never_saw(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)

    actions = db.execute("SELECT * FROM mj_worker_heartbeat_v1(%s, %s, %s)",
                         (worker_id, [], [])).fetchall()

    assert actions == []
    assert _job(db, job["job_id"])["status"] == "queued"
    assert _attempts(db, job["job_id"]) == [(1, "handed_back", "the claim did not reach the worker")]


def test_heartbeat_of_unknown_worker_raises(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="is not registered"):
        db.execute("SELECT * FROM mj_worker_heartbeat_v1(%s, '{}', '{}')", (uuid.uuid4(),))


def test_worker_stop_hands_running_jobs_back(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db)

    handed = db.execute("SELECT mj_worker_stop_v1(%s) AS job_id", (worker_id,)).fetchall()

    assert handed == [{"job_id": job["job_id"]}]
    row = _job(db, job["job_id"])
    assert row["status"] == "queued"
    assert row["run_after"] <= db.execute("SELECT now() AS now").fetchone()["now"]
    assert _attempts(db, job["job_id"]) == [(1, "handed_back", "worker stopped")]
    assert claim(db, worker_id) == []
    assert [row["attempt"] for row in claim(db, register_worker(db))] == [2]


def test_script_failure_without_policy_is_final(db: psycopg.Connection) -> None:
    _worker_id, job = _single_job_run(db)

    assert _finish(db, job, "failed", 1) == "finished"
    assert _job(db, job["job_id"])["status"] == "failed"


def test_script_retry_counts_and_backoff(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db, retry={"max": 2, "script": True, "timeout": True,
                                                 "infra": True})
    outcomes = []
    delays = []
    for _ in range(3):
        outcomes.append(_finish(db, job, "failed", 1))
        if outcomes[-1] == "retrying":
            delays.append(_backoff_seconds(db, job["job_id"]))
            _make_due(db, job["job_id"])
            job = claim(db, worker_id)[0]

    assert outcomes == ["retrying", "retrying", "finished"]
    assert [attempt for attempt, _status, _reason in _attempts(db, job["job_id"])] == [1, 2, 3]
    assert {status for _attempt, status, _reason in _attempts(db, job["job_id"])} == {"failed"}
    assert _job(db, job["job_id"])["status"] == "failed"
    assert BASE / 2 <= delays[0] <= BASE
    assert MAXIMUM / 2 <= delays[1] <= MAXIMUM


def test_retry_on_exit_codes_only(db: psycopg.Connection) -> None:
    policy = {"max": 3, "script": True, "timeout": False, "infra": False, "exit_codes": [137]}
    worker_id, job = _single_job_run(db, retry=policy, max_attempts=1)

    assert _finish(db, job, "failed", 137) == "retrying"
    _make_due(db, job["job_id"])
    job = claim(db, worker_id)[0]
    assert _finish(db, job, "failed", 1) == "finished"
    assert _job(db, job["job_id"])["exit_code"] == 1


def test_retry_on_timeout_only(db: psycopg.Connection) -> None:
    policy = {"max": 1, "script": False, "timeout": True, "infra": True}
    worker_id, job = _single_job_run(db, retry=policy)

    assert _finish(db, job, "timed_out") == "retrying"
    _make_due(db, job["job_id"])
    job = claim(db, worker_id)[0]
    assert _finish(db, job, "failed", 1) == "finished"
    assert _attempts(db, job["job_id"]) == [(1, "timed_out", "ended timed_out"),
                                            (2, "failed", "ended failed")]


def test_cancelled_attempt_is_not_retried(db: psycopg.Connection) -> None:
    _worker_id, job = _single_job_run(db, retry={"max": 3, "script": True, "timeout": True,
                                                  "infra": True})
    db.execute("SELECT mj_job_cancel_v1(%s, 'stop it')", (job["job_id"],))

    assert _finish(db, job, "cancelled") == "finished"
    assert _job(db, job["job_id"])["status"] == "cancelled"
    assert run_status(db, _job(db, job["job_id"])["run_id"]) == "cancelled"


def test_failed_job_after_cancel_request_is_not_retried(db: psycopg.Connection) -> None:
    _worker_id, job = _single_job_run(db, retry={"max": 3, "script": True, "timeout": True,
                                                  "infra": True})
    db.execute("SELECT mj_job_cancel_v1(%s, 'stop it')", (job["job_id"],))

    assert _finish(db, job, "failed", 143) == "finished"
    assert _job(db, job["job_id"])["status"] == "failed"


def test_every_attempt_keeps_worker_times_and_exit_code(db: psycopg.Connection) -> None:
    worker_id, job = _single_job_run(db, retry={"max": 1, "script": True, "timeout": True,
                                                 "infra": True})
    _finish(db, job, "failed", 2)
    _make_due(db, job["job_id"])
    second_worker = register_worker(db)
    _finish(db, claim(db, second_worker)[0], "succeeded", 0)

    rows = db.execute("SELECT attempt, worker_id, status, exit_code, started_at, finished_at "
                      "FROM job_attempts WHERE job_id = %s ORDER BY attempt",
                      (job["job_id"],)).fetchall()
    assert [(row["attempt"], row["worker_id"], row["status"], row["exit_code"]) for row in rows] == [
        (1, worker_id, "failed", 2), (2, second_worker, "succeeded", 0)]
    assert all(isinstance(row["started_at"], dt.datetime) for row in rows)
    assert rows[0]["finished_at"] <= rows[1]["started_at"]


def test_plan_job_of_lost_worker_is_retried(db: psycopg.Connection) -> None:
    worker_id = register_worker(db)
    run_id = create_run(db, create_repo(db))
    plan = claim(db, worker_id)[0]
    _age_heartbeat(db, worker_id)

    assert [row["outcome"] for row in _reap(db)] == ["retrying"]
    assert statuses(db, run_id) == {"plan": "queued"}
    assert _attempts(db, plan["job_id"]) == [(1, "lost", "worker lost")]
