"""Log storage in PostgreSQL: idempotent flush, fencing, retention, search indexing."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest

from minijenkin.config import Settings
from minijenkin.db import connect_async, create_pool
from minijenkin.logs import search, store
from minijenkin.maintenance import make_loops, run_tick_if_leader
from tests.support import factories
from tests.support.logs import store_lines, stored_lines


def _running_job(db: psycopg.Connection) -> dict:
    repo_id = factories.create_repo(db)
    worker_id = factories.register_worker(db)
    factories.create_run(db, repo_id)
    [job] = factories.claim(db, worker_id)
    return job


def _run_loop_tick(database_url: str, settings: Settings, name: str) -> bool:
    async def tick() -> bool:
        pool = create_pool(database_url, application_name="test-maintenance")
        await pool.open()
        try:
            [loop] = [loop for loop in make_loops(settings) if loop.name == name]
            return await run_tick_if_leader(pool, loop)
        finally:
            await pool.close()

    return asyncio.run(tick())


def _partitions(db: psycopg.Connection, parent: str) -> list[str]:
    rows = db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY c.relname", (parent,)).fetchall()
    return [row["relname"] for row in rows]


def test_flush_ignores_resent_batch(db: psycopg.Connection) -> None:
    job = _running_job(db)
    lines = [f"line {n}" for n in range(1, 6)]

    first = store_lines(db, job, lines)
    second = store_lines(db, job, lines)

    assert first == [{"job_id": job["job_id"], "attempt": 1, "stored": 5, "last_seq": 5}]
    assert second == []
    assert stored_lines(db, job["job_id"]) == list(enumerate(lines, start=1))


def test_flush_stores_only_new_lines_of_overlapping_batch(db: psycopg.Connection) -> None:
    job = _running_job(db)
    store_lines(db, job, [f"line {n}" for n in range(1, 6)])

    result = store_lines(db, job, [f"line {n}" for n in range(3, 9)], first_seq=3)

    assert result == [{"job_id": job["job_id"], "attempt": 1, "stored": 3, "last_seq": 8}]
    assert stored_lines(db, job["job_id"]) == [(n, f"line {n}") for n in range(1, 9)]


def test_flush_drops_lines_of_stale_lease(db: psycopg.Connection) -> None:
    job = _running_job(db)
    stale = {**job, "lease_token": "00000000-0000-4000-8000-000000000000"}

    result = store_lines(db, stale, ["from a worker presumed dead"])

    assert result == []
    assert stored_lines(db, job["job_id"]) == []


def test_flush_notifies_ids_only(database_url: str, db: psycopg.Connection) -> None:
    job = _running_job(db)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN mj_logs_v1")
        store_lines(db, job, ["secret-looking text", "second line"])
        notifies = list(listener.notifies(timeout=5, stop_after=1))

    assert [(n.channel, n.payload) for n in notifies] == [("mj_logs_v1", f"{job['job_id']}:1:2")]


def test_retention_drops_whole_old_partitions(
    database_url: str, db: psycopg.Connection, settings: Settings,
) -> None:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS day").fetchone()["day"]
    old_day = today - dt.timedelta(days=10)
    kept_day = today - dt.timedelta(days=2)
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (old_day, old_day))
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (kept_day, kept_day))
    for day in (old_day, kept_day):
        db.execute("INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line) "
                   "VALUES (1, 1, 1, %s, 1, now(), 'old line')", (day,))

    ran = _run_loop_tick(database_url, settings.model_copy(update={"log_retention_days": 5}),
                         "log_partitions")

    old_suffix = old_day.strftime("%Y%m%d")
    kept_suffix = kept_day.strftime("%Y%m%d")
    assert ran is True
    assert f"job_logs_p{old_suffix}" not in _partitions(db, "job_logs")
    assert f"job_log_search_p{old_suffix}" not in _partitions(db, "job_log_search")
    assert f"job_logs_p{kept_suffix}" in _partitions(db, "job_logs")
    assert f"job_log_search_p{kept_suffix}" in _partitions(db, "job_log_search")
    # A week ahead exists, so the ingest path never waits for a CREATE TABLE.
    ahead = (today + dt.timedelta(days=7)).strftime("%Y%m%d")
    assert f"job_logs_p{ahead}" in _partitions(db, "job_logs")
    assert f"job_log_search_p{ahead}" in _partitions(db, "job_log_search")
    count = db.execute("SELECT count(*) AS n FROM job_logs").fetchone()["n"]
    assert count == 1


def test_indexer_builds_chunks_from_queued_batches(
    database_url: str, db: psycopg.Connection, settings: Settings,
) -> None:
    job = _running_job(db)
    store_lines(db, job, [f"build step {n}" for n in range(1, 101)])

    assert _run_loop_tick(database_url, settings, "log_indexer") is True
    chunks = db.execute("SELECT chunk, first_seq, last_seq FROM job_log_search "
                        "WHERE job_id = %s ORDER BY chunk", (job["job_id"],)).fetchall()
    assert chunks == [{"chunk": 0, "first_seq": 1, "last_seq": 64},
                      {"chunk": 1, "first_seq": 65, "last_seq": 100}]

    # More lines complete the second chunk and start a third.
    store_lines(db, job, ["deploy finished"] * 40, first_seq=101)
    _run_loop_tick(database_url, settings, "log_indexer")

    chunks = db.execute("SELECT chunk, first_seq, last_seq, document @@ 'deploy'::tsquery AS hit "
                        "FROM job_log_search WHERE job_id = %s ORDER BY chunk",
                        (job["job_id"],)).fetchall()
    assert chunks == [{"chunk": 0, "first_seq": 1, "last_seq": 64, "hit": False},
                      {"chunk": 1, "first_seq": 65, "last_seq": 128, "hit": True},
                      {"chunk": 2, "first_seq": 129, "last_seq": 140, "hit": True}]
    queued = db.execute("SELECT count(*) AS n FROM job_log_index_queue").fetchone()["n"]
    assert queued == 0


def test_indexer_reports_backlog_at_deadline(
    database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _running_job(db)
    store_lines(db, job, [f"first batch {n}" for n in range(1, 11)])
    store_lines(db, job, [f"second batch {n}" for n in range(11, 21)], first_seq=11)
    # One batch per call, and a tick that ends after one call, leave the
    # second batch queued after the first tick.
    monkeypatch.setattr(search, "INDEX_LINES_PER_CALL", 10)
    monkeypatch.setattr(search, "INDEX_TICK_SECONDS", 0.0)

    async def index_until_done() -> list[bool]:
        conn = await connect_async(database_url, application_name="test-indexer")
        backlogs = []
        try:
            for _ in range(5):
                async with conn.transaction():
                    _, _, backlog = await search.index_pending(conn)
                backlogs.append(backlog)
                if not backlog:
                    break
        finally:
            await conn.close()
        return backlogs

    assert asyncio.run(index_until_done()) == [True, True, False]
    queued = db.execute("SELECT count(*) AS n FROM job_log_index_queue").fetchone()["n"]
    assert queued == 0


def test_find_line_continues_past_window(
    database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _running_job(db)
    lines = [f"step {n}" for n in range(1, 251)]
    lines[219] = "ERROR at the end"
    store_lines(db, job, lines)
    day = db.execute("SELECT (started_at AT TIME ZONE 'UTC')::date AS day FROM jobs WHERE id = %s",
                     (job["job_id"],)).fetchone()["day"]
    monkeypatch.setattr(store, "FIND_WINDOW_LINES", 100)

    async def find(start: int, backwards: bool = False) -> tuple[int | None, int | None]:
        conn = await connect_async(database_url, application_name="test-find")
        try:
            return await store.find_line(conn, job_id=job["job_id"], attempt=1, day=day,
                                         needle="error", start=start, backwards=backwards)
        finally:
            await conn.close()

    assert asyncio.run(find(0)) == (None, 100)
    assert asyncio.run(find(100)) == (None, 200)
    assert asyncio.run(find(200)) == (220, None)
    assert asyncio.run(find(220)) == (None, None)
    assert asyncio.run(find(store.SEQ_MAX, backwards=True)) == (220, None)
    assert asyncio.run(find(220, backwards=True)) == (None, 120)
    assert asyncio.run(find(120, backwards=True)) == (None, 20)
    assert asyncio.run(find(20, backwards=True)) == (None, None)


def test_indexer_survives_huge_lines(database_url: str, db: psycopg.Connection,
                                     settings: Settings) -> None:
    job = _running_job(db)
    # 64 lines of 64 KiB of distinct words: the indexed prefix keeps the
    # chunk's tsvector under PostgreSQL's 1 MB limit.
    lines = [" ".join(f"w{n}x{i}" for i in range(10_000))[:65_536] for n in range(64)]
    store_lines(db, job, lines)

    assert _run_loop_tick(database_url, settings, "log_indexer") is True
    count = db.execute("SELECT count(*) AS n FROM job_log_search WHERE job_id = %s",
                       (job["job_id"],)).fetchone()["n"]
    assert count == 1
    first_words = db.execute("SELECT document @@ 'w0x1'::tsquery AS hit FROM job_log_search "
                             "WHERE job_id = %s", (job["job_id"],)).fetchone()["hit"]
    assert first_words is True
