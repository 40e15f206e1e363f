"""Live figures, read with the product's queries on seeded rows, with a pinned clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import psycopg
import pytest

from minijenkin.db import connect_async
from minijenkin.metrics.figures import FIGURES, read_figures
from tests.support.metrics_data import percentile_cont, seed_history
from tests.support.waiting import wait_for

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _readings(database_url: str, *, now: dt.datetime | None = NOW,
              live_only: bool = False) -> dict[str, dict[tuple[str, ...], float]]:
    """{figure name: {label values: value}} as read by the product."""
    async def read() -> dict[str, dict[tuple[str, ...], float]]:
        conn = await connect_async(database_url, application_name="test")
        try:
            readings = await read_figures(conn, now=now, live_only=live_only)
        finally:
            await conn.close()
        result: dict[str, dict[tuple[str, ...], float]] = {}
        for reading in readings:
            result.setdefault(reading.figure.name, {})[tuple(reading.labels.values())] = \
                reading.value
        return result

    return asyncio.run(read())


def _run(db: psycopg.Connection, repo_id: int, status: str) -> int:
    return db.execute(
        "INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
        "VALUES (%s, %s, 'push', 'refs/heads/main', %s) RETURNING id",
        (repo_id, status, "a" * 40)).fetchone()["id"]


def _worker(db: psycopg.Connection, labels: list[str], concurrency: int,
            status: str = "active") -> uuid.UUID:
    worker_id = uuid.uuid4()
    db.execute("INSERT INTO workers (id, name, hostname, labels, concurrency, status) "
               "VALUES (%s, 'w', 'host', %s, %s, %s)", (worker_id, labels, concurrency, status))
    return worker_id


def _job(db: psycopg.Connection, run_id: int, key: str, *, status: str, labels: list[str],
         queued_at: dt.datetime | None = None, worker_id: uuid.UUID | None = None) -> None:
    db.execute(
        "INSERT INTO jobs (run_id, repo_id, key, name, status, labels, queued_at, run_after, "
        "                  worker_id, lease_token) "
        "SELECT %s, repo_id, %s, %s, %s, %s, %s, %s, %s, %s FROM pipeline_runs WHERE id = %s",
        (run_id, key, key, status, labels, queued_at, queued_at or NOW, worker_id,
         uuid.uuid4() if worker_id else None, run_id))


@pytest.fixture
def live_rows(db: psycopg.Connection) -> None:
    repo_id = db.execute("INSERT INTO repositories (name, url) VALUES ('acme/web', 'file:///x') "
                         "RETURNING id").fetchone()["id"]
    queued_run = _run(db, repo_id, "queued")
    running_run = _run(db, repo_id, "running")
    _run(db, repo_id, "running")
    _run(db, repo_id, "succeeded")
    _run(db, repo_id, "failed")

    _job(db, queued_run, "a", status="queued", labels=[], queued_at=NOW - dt.timedelta(seconds=100))
    _job(db, queued_run, "b", status="queued", labels=[], queued_at=NOW - dt.timedelta(seconds=40))
    _job(db, queued_run, "c", status="queued", labels=["linux"],
         queued_at=NOW - dt.timedelta(seconds=10))
    _job(db, queued_run, "d", status="pending", labels=["linux"])
    _job(db, queued_run, "e", status="succeeded", labels=["linux"],
         queued_at=NOW - dt.timedelta(seconds=999))

    busy = _worker(db, ["linux", "docker"], 4)
    _worker(db, [], 2)
    stopping = _worker(db, ["docker", "linux"], 2, status="stopping")
    lost = _worker(db, ["linux"], 8, status="lost")
    _worker(db, ["linux"], 8, status="stopped")
    for index in range(3):
        _job(db, running_run, f"busy-{index}", status="running", labels=["linux"], worker_id=busy)
    _job(db, running_run, "stopping-0", status="running", labels=[], worker_id=stopping)
    # A job still marked running on a worker the reaper declared lost is not a busy slot.
    _job(db, running_run, "lost-0", status="running", labels=[], worker_id=lost)


def test_queue_depth_by_label_set(database_url: str, live_rows: None) -> None:
    figures = _readings(database_url)

    assert figures["queue_depth"] == {("",): 2.0, ("linux",): 1.0}


def test_queue_oldest_age_by_label_set(database_url: str, live_rows: None) -> None:
    figures = _readings(database_url)

    assert figures["queue_oldest_age"] == {("",): 100.0, ("linux",): 10.0}


def test_worker_slots_busy_and_idle(database_url: str, live_rows: None) -> None:
    figures = _readings(database_url)

    assert figures["worker_slots"] == {
        ("", "busy"): 0.0, ("", "idle"): 2.0,
        ("docker,linux", "busy"): 4.0, ("docker,linux", "idle"): 2.0,
    }
    assert figures["worker_utilisation"] == {(): 0.5}


def test_runs_active_by_status(database_url: str, live_rows: None) -> None:
    figures = _readings(database_url)

    assert figures["runs_active"] == {("pending",): 0.0, ("queued",): 1.0, ("running",): 2.0}


def test_empty_database_figures(database_url: str) -> None:
    figures = _readings(database_url)

    assert "queue_depth" not in figures
    assert "worker_utilisation" not in figures
    assert "log_ingest_rate" not in figures
    assert figures["runs_active"] == {("pending",): 0.0, ("queued",): 0.0, ("running",): 0.0}


def _partition_counter(db: psycopg.Connection, partition: str) -> int:
    row = db.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = %s",
                     (partition,)).fetchone()
    return row["n_tup_ins"] if row else 0


def _insert_log_lines(db: psycopg.Connection, day: dt.date, count: int) -> None:
    db.execute("INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line) "
               "SELECT 1, 1, g, %s, 1, now(), 'line ' || g FROM generate_series(1, %s) AS g",
               (day, count))
    db.execute("SELECT pg_stat_force_next_flush()")
    db.execute("SELECT 1")


def test_log_ingest_rate_uses_window_sample(db: psycopg.Connection, database_url: str) -> None:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (today, today))
    partition = f"job_logs_p{today:%Y%m%d}"
    relid = db.execute("SELECT %s::regclass::oid AS oid", (partition,)).fetchone()["oid"]
    _insert_log_lines(db, today, 900)
    counter = wait_for(lambda: _partition_counter(db, partition) >= 900 and
                       _partition_counter(db, partition), timeout=30,
                       message="the insert counter to show 900 lines")
    samples = [(NOW - dt.timedelta(seconds=200), counter - 900),
               (NOW - dt.timedelta(seconds=90), counter - 600),
               (NOW - dt.timedelta(seconds=30), counter - 100)]
    for sampled_at, value in samples:
        db.execute("INSERT INTO metrics_log_ingest_samples (sampled_at, counters) "
                   "VALUES (%s, jsonb_build_object(%s::text, %s::bigint))",
                   (sampled_at, str(relid), value))

    figures = _readings(database_url)

    # Base: the newest sample at least 60 s old, 90 s before NOW.
    assert figures["log_ingest_rate"] == {(): 600 / 90}


def test_log_ingest_rate_counts_reset_counter_from_zero(db: psycopg.Connection,
                                                        database_url: str) -> None:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (today, today))
    partition = f"job_logs_p{today:%Y%m%d}"
    relid = db.execute("SELECT %s::regclass::oid AS oid", (partition,)).fetchone()["oid"]
    _insert_log_lines(db, today, 300)
    counter = wait_for(lambda: _partition_counter(db, partition) >= 300 and
                       _partition_counter(db, partition), timeout=30,
                       message="the insert counter to show 300 lines")
    db.execute("INSERT INTO metrics_log_ingest_samples (sampled_at, counters) "
               "VALUES (%s, jsonb_build_object(%s::text, %s::bigint))",
               (NOW - dt.timedelta(seconds=100), str(relid), counter + 5000))

    figures = _readings(database_url)

    assert figures["log_ingest_rate"] == {(): counter / 100}


def test_log_ingest_sample_then_rate(db: psycopg.Connection, database_url: str) -> None:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)",
               (today - dt.timedelta(days=1), today + dt.timedelta(days=1)))

    partitions = db.execute("SELECT mj_metrics_log_ingest_sample_v1(600) AS n").fetchone()["n"]
    sampled_at = db.execute("SELECT sampled_at FROM metrics_log_ingest_samples").fetchone()[
        "sampled_at"]
    _insert_log_lines(db, today, 600)

    def rate() -> float | None:
        value = _readings(database_url, now=sampled_at + dt.timedelta(seconds=60)).get(
            "log_ingest_rate", {}).get(())
        return value if value == 10.0 else None

    assert partitions == 3
    assert wait_for(rate, timeout=30, message="600 lines over 60 s") == 10.0


def test_history_figures_read_the_views(db: psycopg.Connection, database_url: str) -> None:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    seeded = seed_history(db, today)
    db.execute("SELECT mj_metrics_refresh_v1(0)")
    # Pinned to noon of the day after D: the last 24 complete hours hold the jobs
    # that ended at 12:00 and 13:00 on D and at 10:00 on the next day.
    pinned = dt.datetime.combine(seeded.day + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)

    figures = _readings(database_url, now=pinned)

    assert figures["throughput"] == {(): 3 / 24}
    assert figures["repo_runs"] == {("acme/api",): 1.0, ("acme/web",): 6.0}
    assert figures["repo_success_ratio"] == {("acme/api",): 1.0, ("acme/web",): 2 / 5}
    assert figures["repo_run_duration"][("acme/web", "0.5")] == 200.0
    assert figures["queue_wait"][("linux", "0.95")] == percentile_cont(
        [5.0, 15.0, 25.0, 35.0, 45.0, 55.0], 0.95)
    assert sorted(view for (view,) in figures["refreshed_at"]) == sorted(
        view for (view,) in figures["refresh_duration"])
    assert len(figures["refreshed_at"]) == 6


def test_live_only_skips_history_figures(database_url: str) -> None:
    figures = _readings(database_url, live_only=True)

    live_names = {figure.name for figure in FIGURES if figure.live}
    assert set(figures) <= live_names
    assert "throughput" not in figures


def test_outbox_backlog_and_dead_letters(database_url: str, db: psycopg.Connection) -> None:
    repo_id = db.execute("INSERT INTO repositories (name, url) VALUES ('acme/outbox', 'file:///x') "
                         "RETURNING id").fetchone()["id"]
    target_id = db.execute(
        "INSERT INTO notification_targets (repo_id, kind, url_encrypted, url_display, events) "
        "VALUES (%s, 'webhook', 'sealed', 'https://hooks.example', '{run.failed}') RETURNING id",
        (repo_id,)).fetchone()["id"]
    rows = [("pending", NOW - dt.timedelta(seconds=90)), ("pending", NOW + dt.timedelta(minutes=5)),
            ("dead", NOW - dt.timedelta(days=2)), ("delivered", NOW - dt.timedelta(hours=1))]
    for state, due in rows:
        db.execute(
            "INSERT INTO outbox (target_id, repo_id, event, payload, state, next_attempt_at) "
            "VALUES (%s, %s, 'run.failed', '{}', %s, %s)", (target_id, repo_id, state, due))

    figures = _readings(database_url)

    assert figures["outbox_messages"] == {("dead",): 1.0, ("delivering",): 0.0, ("pending",): 2.0}
    assert figures["outbox_oldest_due_age"] == {(): 90.0}
