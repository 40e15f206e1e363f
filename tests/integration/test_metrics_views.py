"""The metrics views on a seeded history: exact figures, concurrent refresh, one refresher."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tests.support.metrics_data import (
    LINT_DURATIONS,
    RUN_DURATIONS_ALL_DAY,
    RUN_DURATIONS_WEB_DAY,
    RUN_DURATIONS_WEB_WINDOW,
    TEST_DURATIONS,
    WAITS_ALL_DAY,
    WAITS_ALL_NEXT_DAY,
    WAITS_DOCKER_LINUX,
    WAITS_LINUX,
    WAITS_NO_LABELS,
    WAITS_WEB_DAY,
    at,
    percentile_cont,
    seed_history,
)

VIEWS = ["mj_metrics_job_names", "mj_metrics_jobs_hourly", "mj_metrics_queue_wait_daily",
         "mj_metrics_queue_wait_labels", "mj_metrics_repos", "mj_metrics_runs_daily"]


def _today(db: psycopg.Connection) -> dt.date:
    return db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS today").fetchone()["today"]


def _refresh(db: psycopg.Connection, min_interval_seconds: float = 0) -> list[str]:
    rows = db.execute("SELECT view_name FROM mj_metrics_refresh_v1(%s)",
                      (min_interval_seconds,)).fetchall()
    return [row["view_name"] for row in rows]


@pytest.fixture
def seeded(db: psycopg.Connection):
    data = seed_history(db, _today(db))
    _refresh(db)
    return data


def test_runs_daily_counts_and_percentiles(db: psycopg.Connection, seeded) -> None:
    web = seeded.repo_ids["acme/web"]
    rows = db.execute("SELECT * FROM mj_metrics_runs_daily WHERE repo_id = %s ORDER BY day",
                      (web,)).fetchall()

    assert [row["day"] for row in rows] == [
        seeded.day - dt.timedelta(days=37), seeded.day, seeded.day + dt.timedelta(days=1)]
    day = rows[1]
    assert (day["runs"], day["succeeded"], day["failed"], day["cancelled"]) == (5, 2, 2, 1)
    assert day["duration_p50"] == 250.0
    assert day["duration_p95"] == percentile_cont(RUN_DURATIONS_WEB_DAY, 0.95)
    next_day = rows[2]
    assert (next_day["runs"], next_day["succeeded"], next_day["failed"]) == (1, 0, 1)
    assert (next_day["duration_p50"], next_day["duration_p95"]) == (60.0, 60.0)


def test_runs_daily_all_repositories_row(db: psycopg.Connection, seeded) -> None:
    row = db.execute("SELECT * FROM mj_metrics_runs_daily WHERE repo_id = 0 AND day = %s",
                     (seeded.day,)).fetchone()

    assert (row["runs"], row["succeeded"], row["failed"], row["cancelled"]) == (6, 3, 2, 1)
    assert row["duration_p50"] == 300.0
    assert row["duration_p95"] == percentile_cont(RUN_DURATIONS_ALL_DAY, 0.95)


def test_queue_wait_daily_per_attempt(db: psycopg.Connection, seeded) -> None:
    rows = db.execute("SELECT * FROM mj_metrics_queue_wait_daily WHERE repo_id = 0 AND day >= %s "
                      "ORDER BY day", (seeded.day,)).fetchall()
    web = db.execute("SELECT * FROM mj_metrics_queue_wait_daily WHERE repo_id = %s AND day = %s",
                     (seeded.repo_ids["acme/web"], seeded.day)).fetchone()

    assert [row["attempts"] for row in rows] == [len(WAITS_ALL_DAY), len(WAITS_ALL_NEXT_DAY)]
    assert rows[0]["wait_p50"] == 5.5
    assert rows[0]["wait_p95"] == percentile_cont(WAITS_ALL_DAY, 0.95)
    assert rows[0]["wait_max"] == 45.0
    assert (rows[1]["wait_p50"], rows[1]["wait_max"]) == (55.0, 55.0)
    assert web["attempts"] == len(WAITS_WEB_DAY)
    assert web["wait_p50"] == 6.0


def test_jobs_hourly_throughput(db: psycopg.Connection, seeded) -> None:
    day = seeded.day
    rows = db.execute("SELECT hour, jobs, succeeded, failed FROM mj_metrics_jobs_hourly "
                      "WHERE repo_id = 0 AND hour >= %s ORDER BY hour", (at(day, 0),)).fetchall()

    assert [(row["hour"], row["jobs"], row["succeeded"], row["failed"]) for row in rows] == [
        (at(day, 10), 4, 4, 0),
        (at(day, 11), 2, 1, 1),
        (at(day, 12), 1, 1, 0),
        (at(day, 13), 1, 1, 0),
        (at(day + dt.timedelta(days=1), 10), 1, 0, 1),
    ]


def test_repos_window_excludes_old_runs(db: psycopg.Connection, seeded) -> None:
    rows = {row["repo_id"]: row for row in db.execute("SELECT * FROM mj_metrics_repos")}
    web = rows[seeded.repo_ids["acme/web"]]

    assert set(rows) == set(seeded.repo_ids.values())
    assert (web["runs"], web["succeeded"], web["failed"], web["cancelled"]) == (6, 2, 3, 1)
    assert web["duration_p50"] == 200.0
    assert web["duration_p95"] == percentile_cont(RUN_DURATIONS_WEB_WINDOW, 0.95)
    assert web["last_run_at"] == at(seeded.day + dt.timedelta(days=1), 10)
    assert rows[seeded.repo_ids["acme/api"]]["runs"] == 1


def test_job_names_durations_and_flakiness(db: psycopg.Connection, seeded) -> None:
    rows = {(row["repo_id"], row["name"]): row for row in db.execute(
        "SELECT * FROM mj_metrics_job_names")}
    web, api = seeded.repo_ids["acme/web"], seeded.repo_ids["acme/api"]
    test = rows[(web, "test")]
    lint = rows[(web, "lint")]

    assert set(rows) == {(web, "test"), (web, "lint"), (api, "build")}
    assert (test["jobs"], test["attempts"], test["succeeded"], test["failed"]) == (5, 6, 3, 3)
    assert test["duration_p50"] == 55.0
    assert test["duration_p95"] == percentile_cont(TEST_DURATIONS, 0.95)
    assert (test["commits"], test["flaky_commits"]) == (3, 2)
    assert test["flakiness"] == 2 / 3
    assert (lint["jobs"], lint["attempts"], lint["succeeded"], lint["failed"]) == (2, 2, 2, 0)
    assert lint["duration_p95"] == percentile_cont(LINT_DURATIONS, 0.95)
    assert (lint["commits"], lint["flaky_commits"], lint["flakiness"]) == (2, 0, 0.0)


def test_queue_wait_by_label_set(db: psycopg.Connection, seeded) -> None:
    rows = {tuple(row["labels"]): row for row in db.execute(
        "SELECT * FROM mj_metrics_queue_wait_labels")}

    assert set(rows) == {(), ("linux",), ("docker", "linux")}
    for labels, waits in [((), WAITS_NO_LABELS), (("linux",), WAITS_LINUX),
                          (("docker", "linux"), WAITS_DOCKER_LINUX)]:
        assert rows[labels]["attempts"] == len(waits), labels
        assert rows[labels]["wait_p50"] == percentile_cont(waits, 0.5), labels
        assert rows[labels]["wait_p95"] == percentile_cont(waits, 0.95), labels
        assert rows[labels]["wait_max"] == max(waits), labels
    assert rows[("linux",)]["wait_p50"] == 30.0


def test_refresh_records_time_and_respects_interval(db: psycopg.Connection) -> None:
    assert sorted(_refresh(db, 3600)) == VIEWS
    first = {row["view_name"]: row["refreshed_at"] for row in db.execute(
        "SELECT view_name, refreshed_at FROM metrics_refreshes")}

    assert _refresh(db, 3600) == []
    assert sorted(_refresh(db, 0)) == VIEWS
    second = {row["view_name"]: row["refreshed_at"] for row in db.execute(
        "SELECT view_name, refreshed_at FROM metrics_refreshes")}
    assert sorted(first) == VIEWS
    assert all(second[view] > first[view] for view in VIEWS)


def test_refresh_picks_up_new_runs(db: psycopg.Connection, seeded) -> None:
    web = seeded.repo_ids["acme/web"]
    db.execute("INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at) "
               "VALUES (%s, 'queued', 'push', 'refs/heads/main', %s, %s)",
               (web, "4" * 40, at(seeded.day, 15)))

    before = db.execute("SELECT runs FROM mj_metrics_runs_daily WHERE repo_id = %s AND day = %s",
                        (web, seeded.day)).fetchone()
    _refresh(db)
    after = db.execute("SELECT runs FROM mj_metrics_runs_daily WHERE repo_id = %s AND day = %s",
                       (web, seeded.day)).fetchone()

    assert (before["runs"], after["runs"]) == (5, 6)


def test_refresh_does_not_block_readers(db: psycopg.Connection, database_url: str,
                                        seeded) -> None:
    web = seeded.repo_ids["acme/web"]
    db.execute("INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at) "
               "VALUES (%s, 'queued', 'push', 'refs/heads/main', %s, %s)",
               (web, "4" * 40, at(seeded.day, 15)))

    with psycopg.connect(database_url) as refresher, \
            psycopg.connect(database_url, autocommit=True) as reader:
        reader.execute("SET lock_timeout = '2s'")
        # The refresh has run but not committed: it still holds its locks.
        refreshed = refresher.execute("SELECT view_name FROM mj_metrics_refresh_v1(0)").fetchall()
        during = reader.execute(
            "SELECT runs FROM mj_metrics_runs_daily WHERE repo_id = %s AND day = %s",
            (web, seeded.day)).fetchone()
        refresher.commit()
        after = reader.execute(
            "SELECT runs FROM mj_metrics_runs_daily WHERE repo_id = %s AND day = %s",
            (web, seeded.day)).fetchone()

    assert len(refreshed) == len(VIEWS)
    assert during[0] == 5
    assert after[0] == 6


def test_plain_refresh_would_block_readers(db: psycopg.Connection, database_url: str) -> None:
    """The control for the test above: without CONCURRENTLY the same read times out."""
    with psycopg.connect(database_url) as refresher, \
            psycopg.connect(database_url, autocommit=True) as reader:
        reader.execute("SET lock_timeout = '200ms'")
        refresher.execute("REFRESH MATERIALIZED VIEW mj_metrics_runs_daily")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            reader.execute("SELECT count(*) FROM mj_metrics_runs_daily")
        refresher.rollback()
