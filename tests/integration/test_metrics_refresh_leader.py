"""Only one process refreshes the metrics views at a time, however many tick the loop."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import psycopg

from tests.support.workers import scrubbed_environment

PROCESSES = 3
TICK_SECONDS = 4.0


def _seed_bulk_history(db: psycopg.Connection) -> None:
    """Enough rows that one refresh takes a noticeable time, so that refreshes would overlap."""
    db.execute("INSERT INTO repositories (name, url) VALUES ('acme/bulk', 'file:///nowhere')")
    db.execute("""
        INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at, started_at,
                                   finished_at)
        SELECT 1, 'succeeded', 'push', 'refs/heads/main', repeat('a', 40),
               now() - g * interval '1 minute', now() - g * interval '1 minute',
               now() - g * interval '1 minute' + interval '90 seconds'
        FROM generate_series(1, 20000) AS g
    """)
    db.execute("""
        INSERT INTO jobs (run_id, repo_id, key, name, status, created_at, queued_at, started_at,
                          finished_at, attempt)
        SELECT pr.id, 1, 'test', 'test', 'succeeded', pr.created_at, pr.created_at,
               pr.started_at, pr.finished_at, 1
        FROM pipeline_runs pr
    """)
    db.execute("""
        INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, queued_at,
                                  started_at, finished_at)
        SELECT j.id, 1, gen_random_uuid(), gen_random_uuid(), 'succeeded', j.queued_at,
               j.started_at, j.finished_at
        FROM jobs j
    """)
    db.execute("ANALYZE")


def test_one_refresher_at_a_time(db: psycopg.Connection, database_url: str) -> None:
    _seed_bulk_history(db)
    start_at = time.time() + 3.0
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.refresh_child", database_url, str(start_at),
             str(TICK_SECONDS)],
            env=scrubbed_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    results = []
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        results.append(json.loads(stdout))

    intervals = sorted(
        (dt.datetime.fromisoformat(refresh["started_at"]),
         dt.datetime.fromisoformat(refresh["finished_at"]))
        for result in results for refresh in result["refreshes"])
    assert len(intervals) >= 2
    for (_, previous_end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert next_start >= previous_end, intervals
    # Some ticks found another process refreshing and skipped: the processes did compete.
    assert sum(result["skipped"] for result in results) > 0
