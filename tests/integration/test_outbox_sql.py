"""The outbox's SQL functions: enqueueing with the run's close, claiming, outcomes, redelivery."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import psycopg
import pytest

from minijenkin.db import connect_async
from minijenkin.errors import InvalidInputError
from minijenkin.notify import deliveries
from tests.support.factories import claim, create_repo, create_run, register_worker
from tests.support.notify import (
    add_target,
    claim_deliveries,
    close_run,
    outbox_rows,
    report,
)

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_run_success_enqueues_for_subscribed_targets(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    everything = add_target(db, repo_id)
    add_target(db, repo_id, events=["run.failed"])

    run_id = close_run(db, repo_id, worker_id)

    rows = outbox_rows(db)
    assert [(row["target_id"], row["event"], row["state"], row["run_id"]) for row in rows] == [
        (everything, "run.succeeded", "pending", run_id)]
    payload = rows[0]["payload"]
    assert payload["event"] == "run.succeeded"
    assert payload["previous_status"] is None
    assert payload["repository"] == {"id": repo_id, "name": "acme/web"}
    assert payload["commit"] == {"sha": "b" * 40, "before": None, "message": "message",
                                 "author": "author"}
    run = payload["run"]
    assert (run["id"], run["status"], run["trigger"], run["ref"], run["branch"], run["tag"]) == (
        run_id, "succeeded", "push", "refs/heads/main", "main", None)
    assert ISO_UTC.match(run["finished_at"])
    assert run["duration_seconds"] >= 0
    assert [(job["key"], job["status"], job["attempt"], job["exit_code"])
            for job in payload["jobs"]] == [("build", "succeeded", 1, 0)]
    assert ISO_UTC.match(payload["occurred_at"])


def test_run_failure_enqueues_failed_event(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)

    run_id = close_run(db, repo_id, worker_id, "failed")

    rows = outbox_rows(db, run_id)
    assert [row["event"] for row in rows] == ["run.failed"]
    assert rows[0]["payload"]["run"]["reason"] == "job build failed"
    assert rows[0]["payload"]["jobs"][0]["reason"] == "exit 2"


def test_success_after_failure_is_fixed(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    close_run(db, repo_id, worker_id, "failed")
    success_only = add_target(db, repo_id, events=["run.succeeded"])
    fixed_only = add_target(db, repo_id, events=["run.fixed"])
    add_target(db, repo_id, events=["run.failed"])

    run_id = close_run(db, repo_id, worker_id, "succeeded")

    rows = outbox_rows(db, run_id)
    assert [(row["target_id"], row["event"]) for row in rows] == [
        (success_only, "run.fixed"), (fixed_only, "run.fixed")]
    assert rows[0]["payload"]["previous_status"] == "failed"


def test_second_success_is_not_fixed(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    close_run(db, repo_id, worker_id, "failed")
    close_run(db, repo_id, worker_id, "succeeded")

    run_id = close_run(db, repo_id, worker_id, "succeeded")

    assert [row["event"] for row in outbox_rows(db, run_id)] == ["run.succeeded"]


def test_other_branch_failure_not_fixed(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    close_run(db, repo_id, worker_id, "failed", ref="refs/heads/feature")

    run_id = close_run(db, repo_id, worker_id, "succeeded", ref="refs/heads/main")

    assert [row["event"] for row in outbox_rows(db, run_id)] == ["run.succeeded"]


def test_cancelled_run_enqueues_cancelled(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    run_id = create_run(db, repo_id)

    db.execute("SELECT mj_run_cancel_v1(%s, 'cancelled by a user')", (run_id,))

    rows = outbox_rows(db, run_id)
    assert [row["event"] for row in rows] == ["run.cancelled"]
    assert rows[0]["payload"]["run"]["status"] == "cancelled"


def test_repository_without_targets_enqueues_nothing(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    other_repo = create_repo(db, name="acme/other")
    add_target(db, other_repo)
    worker_id = register_worker(db)

    close_run(db, repo_id, worker_id)

    assert outbox_rows(db) == []


def test_outbox_rows_roll_back_with_close(db: psycopg.Connection,
                                                  database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    run_id = create_run(db, repo_id)
    plan = claim(db, worker_id)[0]

    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT mj_job_finish_v1(%s, %s, 'failed', 1, '.minijenkin.yml:1:1: bad', "
                     "0.01, 0.05)", (plan["job_id"], plan["lease_token"]))
        inside = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        conn.rollback()

    assert inside == 1
    assert outbox_rows(db) == []
    status = db.execute("SELECT status FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()
    assert status["status"] == "running"


def test_enqueue_notifies_dispatchers(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN mj_outbox_v1")

        close_run(db, repo_id, worker_id)

        channels = [notify.channel for notify in listener.notifies(timeout=5, stop_after=1)]
    assert channels == ["mj_outbox_v1"]


def test_claim_skips_rows_locked_by_another_claim(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    add_target(db, repo_id)
    close_run(db, repo_id, worker_id)

    with psycopg.connect(database_url) as other:
        first = other.execute("SELECT id FROM mj_outbox_claim_v1('other', 1, 30, 3600)").fetchall()
        second = claim_deliveries(db)
        other.commit()

    assert len(first) == 1
    assert [row["id"] for row in second] != [first[0][0]]
    assert len(second) == 1
    assert claim_deliveries(db) == []


def test_claim_limits_deliveries_per_target(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    slow = add_target(db, repo_id)
    for _ in range(5):
        close_run(db, repo_id, worker_id)
    other_repo = create_repo(db, name="acme/api")
    fast = add_target(db, other_repo)
    close_run(db, other_repo, register_worker(db))

    first = claim_deliveries(db, limit=8, per_target=2)
    second = claim_deliveries(db, limit=8, per_target=2)
    db.execute("UPDATE outbox SET state = 'delivered', lease_token = NULL WHERE id = %s",
               (first[0]["id"],))
    third = claim_deliveries(db, limit=8, per_target=2)

    assert sorted(row["target_id"] for row in first) == [slow, slow, fast]
    assert second == []
    assert [row["target_id"] for row in third] == [slow]
    assert len(outbox_rows(db)) == 6


def test_claim_v1_has_no_limit_per_target(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    add_target(db, repo_id)
    for _ in range(3):
        close_run(db, repo_id, worker_id)

    claimed = db.execute("SELECT id FROM mj_outbox_claim_v1('old', 10, 30, 3600)").fetchall()

    assert len(claimed) == 3


def test_claim_sets_lease_and_counts_attempt(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    target_id = add_target(db, repo_id, kind="github-status")
    close_run(db, repo_id, register_worker(db))

    claimed = claim_deliveries(db, lease=30)

    assert len(claimed) == 1
    assert (claimed[0]["kind"], claimed[0]["target_id"], claimed[0]["repo_name"],
            claimed[0]["attempts"]) == ("github-status", target_id, "acme/web", 1)
    row = outbox_rows(db)[0]
    assert row["state"] == "delivering"
    assert row["dispatcher"] == "test"
    assert row["lease_token"] == claimed[0]["lease_token"]
    lease = row["next_attempt_at"] - row["last_attempt_at"]
    assert lease == dt.timedelta(seconds=30)


def test_report_delivered(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    assert report(db, claimed, "delivered", status_code=204) == "delivered"

    row = outbox_rows(db)[0]
    assert (row["state"], row["last_status_code"], row["lease_token"]) == ("delivered", 204, None)
    assert row["delivered_at"] is not None
    assert claim_deliveries(db) == []


def test_report_retry_schedules_backoff_with_jitter(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    state = report(db, claimed, "retry", status_code=503, error="HTTP 503", base=10, maximum=60)

    assert state == "pending"
    row = db.execute("SELECT *, next_attempt_at - now() AS wait FROM outbox").fetchone()
    assert (row["state"], row["last_status_code"], row["last_error"]) == ("pending", 503, "HTTP 503")
    # First retry: uniformly within [base/2, base].
    assert dt.timedelta(seconds=5) <= row["wait"] <= dt.timedelta(seconds=10)
    assert claim_deliveries(db) == []


def test_retry_after_defers_target_rows(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    target_id = add_target(db, repo_id)
    other_target = add_target(db, repo_id)
    close_run(db, repo_id, worker_id)
    close_run(db, repo_id, worker_id)
    claimed = [row for row in claim_deliveries(db, limit=1)]

    state = report(db, claimed[0], "retry", status_code=429, retry_after=30)

    assert state == "pending"
    rows = db.execute("SELECT target_id, next_attempt_at - now() AS wait FROM outbox "
                      "ORDER BY id").fetchall()
    waits = {(row["target_id"], row["wait"] >= dt.timedelta(seconds=29)) for row in rows}
    assert waits == {(target_id, True), (other_target, False)}


def test_huge_retry_after_goes_to_dead_letter(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    # About 3 million years: now() plus this is past the last valid timestamp.
    state = report(db, claimed, "retry", status_code=429, error="HTTP 429",
                   retry_after=99_999_999_999_999, horizon=3600)

    assert state == "dead"
    row = outbox_rows(db)[0]
    assert (row["state"], row["last_status_code"]) == ("dead", 429)
    assert row["last_error"] == "HTTP 429 (retry schedule ended after 1 attempts)"


def test_backoff_after_many_attempts(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]
    # A receiver that responds 429 with a short Retry-After gets an attempt
    # every poll interval: 1100 attempts take about 90 minutes at 5 s.
    db.execute("UPDATE outbox SET attempts = 1100 WHERE id = %s", (claimed["id"],))

    state = report(db, claimed, "retry", status_code=503, error="HTTP 503", base=10, maximum=60)

    assert state == "pending"
    row = db.execute("SELECT next_attempt_at - now() AS wait FROM outbox").fetchone()
    assert dt.timedelta(seconds=30) <= row["wait"] <= dt.timedelta(seconds=60)


def test_retry_past_horizon_goes_to_dead_letter(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    state = report(db, claimed, "retry", status_code=500, error="HTTP 500: boom", base=10,
                   maximum=60, horizon=1)

    assert state == "dead"
    row = outbox_rows(db)[0]
    assert row["state"] == "dead"
    assert row["last_error"] == "HTTP 500: boom (retry schedule ended after 1 attempts)"
    assert row["dead_at"] is not None


def test_permanent_failure_goes_to_dead_letter(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    assert report(db, claimed, "failed", status_code=404, error="HTTP 404: no such hook") == "dead"

    row = outbox_rows(db)[0]
    assert (row["state"], row["last_status_code"], row["last_error"]) == (
        "dead", 404, "HTTP 404: no such hook")


def test_expired_lease_is_claimed_again(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    first = claim_deliveries(db, lease=0.01)[0]
    db.execute("SELECT pg_sleep(0.05)")

    second = claim_deliveries(db)

    assert [row["id"] for row in second] == [first["id"]]
    assert second[0]["idempotency_key"] == first["idempotency_key"]
    assert second[0]["lease_token"] != first["lease_token"]
    assert second[0]["attempts"] == 2
    assert report(db, first, "delivered", status_code=200) == "stale"
    assert report(db, second[0], "delivered", status_code=200) == "delivered"


def test_expired_lease_past_horizon_is_dead(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claim_deliveries(db, lease=0.01)
    db.execute("SELECT pg_sleep(0.05)")

    assert claim_deliveries(db, horizon=0.01) == []

    row = outbox_rows(db)[0]
    assert row["state"] == "dead"
    assert row["last_error"] == ("the dispatcher stopped during the last attempt, and the retry "
                                 "schedule has ended")


def test_redeliver_dead_row_keeps_key(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]
    report(db, claimed, "failed", status_code=410, error="HTTP 410")

    state = db.execute("SELECT mj_outbox_redeliver_v1(%s) AS state", (claimed["id"],)).fetchone()

    assert state["state"] == "pending"
    again = claim_deliveries(db)
    assert [(row["id"], row["idempotency_key"], row["attempts"]) for row in again] == [
        (claimed["id"], claimed["idempotency_key"], 1)]


def test_redeliver_while_delivering_is_refused(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db)[0]

    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                       match=f"delivery {claimed['id']} is being delivered right now"):
        db.execute("SELECT mj_outbox_redeliver_v1(%s)", (claimed["id"],))


def test_outbox_stats_counts_backlog_and_dead(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    for _ in range(3):
        add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    first, second = claim_deliveries(db, limit=2)
    report(db, first, "failed", status_code=404, error="HTTP 404")

    stats = db.execute("SELECT * FROM mj_outbox_stats_v1()").fetchone()

    assert (stats["pending"], stats["delivering"], stats["dead"]) == (1, 1, 1)
    assert stats["oldest_due_seconds"] >= 0


def test_deploy_event_skips_commit_status_targets(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    chat = add_target(db, repo_id, kind="slack", events=["deploy.started", "deploy.finished"])
    add_target(db, repo_id, kind="github-status")
    add_target(db, repo_id, kind="discord", events=["run.failed"])
    run_id = close_run(db, repo_id, worker_id)
    job_id = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'build'",
                        (run_id,)).fetchone()["id"]
    db.execute("DELETE FROM outbox")

    inserted = db.execute(
        "SELECT mj_outbox_enqueue_deploy_v1(%s, 'production', 'deploy.finished', 'succeeded') AS n",
        (job_id,)).fetchone()

    assert inserted["n"] == 1
    row = outbox_rows(db)[0]
    assert (row["target_id"], row["event"]) == (chat, "deploy.finished")
    deployment = row["payload"]["deployment"]
    assert (deployment["environment"], deployment["status"], deployment["job_id"],
            deployment["job_name"]) == ("production", "succeeded", job_id, "build")


def test_deploy_event_name_is_checked(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    run_id = close_run(db, repo_id, register_worker(db))
    job_id = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'build'",
                        (run_id,)).fetchone()["id"]

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid deploy event"):
        db.execute("SELECT mj_outbox_enqueue_deploy_v1(%s, 'production', 'deploy.exploded', 'x')",
                   (job_id,))


def test_outbox_stats_wrapper_for_metrics(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id)
    add_target(db, repo_id)
    close_run(db, repo_id, register_worker(db))
    claimed = claim_deliveries(db, limit=1)[0]
    report(db, claimed, "failed", status_code=400, error="HTTP 400")

    async def read() -> deliveries.OutboxStats:
        conn = await connect_async(database_url, application_name="test")
        try:
            return await deliveries.outbox_stats(conn)
        finally:
            await conn.close()

    stats = asyncio.run(read())

    assert (stats.pending, stats.delivering, stats.dead, stats.backlog) == (1, 0, 1, 1)


def test_enqueue_deploy_event_wrapper(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    add_target(db, repo_id, kind="discord", events=["deploy.started"])
    run_id = close_run(db, repo_id, register_worker(db))
    job_id = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'build'",
                        (run_id,)).fetchone()["id"]

    async def enqueue(event: str) -> int:
        conn = await connect_async(database_url, application_name="test")
        try:
            return await deliveries.enqueue_deploy_event(
                conn, job_id=job_id, environment="staging", event=event, status="running")
        finally:
            await conn.close()

    assert asyncio.run(enqueue("deploy.started")) == 1
    assert asyncio.run(enqueue("deploy.finished")) == 0
    with pytest.raises(InvalidInputError, match="invalid deploy event 'deploy.paused'"):
        asyncio.run(enqueue("deploy.paused"))
    assert [row["event"] for row in outbox_rows(db)] == ["deploy.started"]
