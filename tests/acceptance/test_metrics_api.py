"""Metrics over real HTTP: /metrics, the summary, time series and their validation."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from minijenkin import auth
from minijenkin.db import connect_async
from tests.support.api import ApiServer
from tests.support.metrics_data import (
    RUN_DURATIONS_WEB_WINDOW,
    TEST_DURATIONS,
    WAITS_ALL_DAY,
    Seeded,
    at,
    percentile_cont,
    seed_history,
)
from tests.support.waiting import wait_for


def _token(database_url: str, scope: str) -> str:
    async def create() -> str:
        conn = await connect_async(database_url, application_name="test")
        try:
            value, _ = await auth.create_token(conn, name=f"{scope} token", scope=scope)
            return value
        finally:
            await conn.close()

    return asyncio.run(create())


@pytest.fixture
def seeded(db: psycopg.Connection) -> Seeded:
    today = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
    data = seed_history(db, today)
    db.execute("SELECT mj_metrics_refresh_v1(0)")
    return data


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_exposition(api_server: ApiServer, db: psycopg.Connection,
                               seeded: Seeded) -> None:
    db.execute("INSERT INTO jobs (run_id, repo_id, key, name, status, labels, queued_at) "
               "VALUES (%s, %s, 'queued-1', 'queued-1', 'queued', '{linux}', now())",
               (seeded.run_ids["r1"], seeded.repo_ids["acme/web"]))

    with api_server.client() as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = _samples(response.text)
    assert samples[("minijenkin_queue_depth", (("labels", "linux"),))] == 1.0
    assert samples[("minijenkin_runs_active", (("status", "queued"),))] == 0.0
    assert samples[("minijenkin_repo_runs", (("repo", "acme/web"),))] == 6.0
    assert samples[("minijenkin_repo_success_ratio", (("repo", "acme/web"),))] == 0.4
    assert samples[("minijenkin_repo_run_duration_seconds",
                    (("quantile", "0.95"), ("repo", "acme/web")))] == percentile_cont(
        RUN_DURATIONS_WEB_WINDOW, 0.95)
    assert ("minijenkin_queue_oldest_age_seconds", (("labels", "linux"),)) in samples


def test_prometheus_needs_read_scope(api_server: ApiServer, database_url: str) -> None:
    with api_server.client(token=None) as client:
        anonymous = client.get("/metrics")
    with api_server.client(token=_token(database_url, "read")) as client:
        reader = client.get("/metrics")

    assert anonymous.status_code == 401
    assert reader.status_code == 200
    assert "# TYPE minijenkin_queue_depth gauge" in reader.text


def test_summary_exact_figures(api_server: ApiServer, seeded: Seeded) -> None:
    with api_server.client() as client:
        body = client.get("/api/metrics/summary").json()

    assert body["window_days"] == 30
    assert body["refreshed_at"] is not None
    assert len(body["views"]) == 6
    web = next(repo for repo in body["repositories"] if repo["repo"] == "acme/web")
    assert web == {
        "repo": "acme/web", "runs": 6, "succeeded": 2, "failed": 3, "cancelled": 1,
        "success_rate": 0.4, "duration_p50_seconds": 200.0,
        "duration_p95_seconds": percentile_cont(RUN_DURATIONS_WEB_WINDOW, 0.95),
        "last_run_at": at(seeded.day + dt.timedelta(days=1), 10).isoformat().replace(
            "+00:00", "Z"),
    }
    assert body["jobs"][0] == {
        "repo": "acme/web", "name": "test", "jobs": 5, "attempts": 6, "succeeded": 3,
        "failed": 3, "duration_p50_seconds": 55.0,
        "duration_p95_seconds": percentile_cont(TEST_DURATIONS, 0.95),
        "commits": 3, "flaky_commits": 2, "flakiness": 2 / 3,
    }
    assert [wait["labels"] for wait in body["queue_wait"]] == [[], ["docker", "linux"], ["linux"]]
    assert body["queue_wait"][2]["p50_seconds"] == 30.0
    live = {(reading["figure"], tuple(reading["labels"].items())): reading["value"]
            for reading in body["live"]}
    assert live[("runs_active", (("status", "running"),))] == 0.0


def test_summary_of_one_repository(api_server: ApiServer, seeded: Seeded) -> None:
    with api_server.client() as client:
        body = client.get("/api/metrics/summary",
                          params={"repo": "acme/api", "jobs_limit": 5}).json()

    assert [repo["repo"] for repo in body["repositories"]] == ["acme/api"]
    assert [(job["repo"], job["name"]) for job in body["jobs"]] == [("acme/api", "build")]


def test_summary_unknown_repository_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/summary", params={"repo": "acme/nothing"})

    assert response.status_code == 404
    assert response.json() == {"detail": "repository 'acme/nothing' does not exist",
                               "field": "repo"}


def _series(api_server: ApiServer, **params: str) -> list[tuple[str, float | None]]:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries", params=params)
    assert response.status_code == 200, response.text
    return [(point["t"], point["value"]) for point in response.json()["points"]]


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_timeseries_daily_runs_and_success_rate(api_server: ApiServer, seeded: Seeded) -> None:
    day, next_day = seeded.day, seeded.day + dt.timedelta(days=1)
    span = {"repo": "acme/web", "from": _iso(at(day, 0)),
            "to": _iso(at(day + dt.timedelta(days=2), 0)), "step": "1d"}

    assert _series(api_server, metric="runs", **span) == [
        (_iso(at(day, 0)), 5.0), (_iso(at(next_day, 0)), 1.0)]
    assert _series(api_server, metric="success_rate", **span) == [
        (_iso(at(day, 0)), 0.5), (_iso(at(next_day, 0)), 0.0)]
    assert _series(api_server, metric="run_duration_p50", **span) == [
        (_iso(at(day, 0)), 250.0), (_iso(at(next_day, 0)), 60.0)]


def test_timeseries_hourly_throughput(api_server: ApiServer, seeded: Seeded) -> None:
    day = seeded.day
    points = _series(api_server, metric="jobs_finished", step="1h",
                     **{"from": _iso(at(day, 9)), "to": _iso(at(day, 14))})

    assert points == [(_iso(at(day, 9)), 0.0), (_iso(at(day, 10)), 4.0), (_iso(at(day, 11)), 2.0),
                      (_iso(at(day, 12)), 1.0), (_iso(at(day, 13)), 1.0)]


def test_timeseries_response_fields(api_server: ApiServer, seeded: Seeded) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries", params={
            "metric": "queue_wait_max", "repo": "acme/web", "step": "1d",
            "from": "2026-01-05T12:00:00+02:00", "to": "2026-01-07T00:00:00"})

    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "metric": "queue_wait_max", "unit": "seconds", "repo": "acme/web", "step": "1d",
        "from": "2026-01-05T10:00:00Z", "to": "2026-01-07T00:00:00Z",
        "points": [{"t": "2026-01-05T00:00:00Z", "value": None},
                   {"t": "2026-01-06T00:00:00Z", "value": None}],
    }


def test_timeseries_buckets_larger_than_source(api_server: ApiServer, seeded: Seeded) -> None:
    day = seeded.day
    three_hours = _series(api_server, metric="jobs_finished", step="3h",
                          **{"from": _iso(at(day, 9)), "to": _iso(at(day, 15))})
    next_day = day + dt.timedelta(days=1)
    week = _series(api_server, metric="runs", step="7d", repo="acme/web",
                   **{"from": _iso(at(day, 0)), "to": _iso(at(next_day + dt.timedelta(days=1), 0))})

    # Three-hour buckets are aligned to midnight UTC: 09-12 and 12-15.
    assert three_hours == [(_iso(at(day, 9)), 6.0), (_iso(at(day, 12)), 2.0)]
    # Seven-day buckets start on Mondays: D and D+1 share one unless D+1 is a Monday.
    monday = day - dt.timedelta(days=day.weekday())
    if next_day.weekday() == 0:
        assert week == [(_iso(at(monday, 0)), 5.0), (_iso(at(next_day, 0)), 1.0)]
    else:
        assert week == [(_iso(at(monday, 0)), 6.0)]


def test_timeseries_queue_wait_percentile(api_server: ApiServer, seeded: Seeded) -> None:
    day = seeded.day
    points = _series(api_server, metric="queue_wait_p95", step="1d",
                     **{"from": _iso(at(day, 0)), "to": _iso(at(day, 12))})

    assert points == [(_iso(at(day, 0)), percentile_cont(WAITS_ALL_DAY, 0.95))]


def test_timeseries_defaults_to_last_30_days(api_server: ApiServer) -> None:
    with api_server.client() as client:
        body = client.get("/api/metrics/timeseries", params={"metric": "runs"}).json()

    assert body["step"] == "1d"
    assert len(body["points"]) == 31
    assert {point["value"] for point in body["points"]} == {0.0}


@pytest.mark.parametrize(("params", "field", "detail_start"), [
    ({}, "metric", "metric: Field required"),
    ({"metric": "nope"}, "metric", "metric: Input should be"),
    ({"metric": "runs", "step": "5m"}, "step", "step: invalid value '5m'"),
    ({"metric": "runs", "step": "0d"}, "step", "step: invalid value '0d'"),
    ({"metric": "runs", "step": "1h"}, "step", "step: runs is stored per 1d"),
    ({"metric": "run_duration_p95", "step": "7d"}, "step",
     "step: run_duration_p95 is a daily percentile"),
    ({"metric": "runs", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from",
     "from: must be earlier than to"),
    ({"metric": "jobs_finished", "step": "1h", "from": "2020-01-01T00:00:00Z",
      "to": "2026-01-01T00:00:00Z"}, "step", "step: 1h from 2020-01-01T00:00:00+00:00"),
    ({"metric": "runs", "from": "yesterday"}, "from", "from: Input should be a valid datetime"),
    ({"metric": "runs", "from": "0001-01-01T00:00:00Z", "to": "0001-01-05T00:00:00Z"}, "from",
     "from: 0001-01-01T00:00:00+00:00 is before 1970-01-01"),
])
def test_timeseries_invalid_parameters_are_422(api_server: ApiServer, params: dict[str, str],
                                               field: str, detail_start: str) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries", params=params)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(detail_start), response.json()["detail"]


@pytest.mark.parametrize(("params", "field", "detail"), [
    ({"to": "9999-12-31T23:59:59-14:00"}, "to",
     "to: 9999-12-31T23:59:59-14:00 is outside the years 1 to 9999 in UTC"),
    ({"from": "9999-12-31T23:00:00-01:00", "to": "9999-12-31T23:59:59Z"}, "from",
     "from: 9999-12-31T23:00:00-01:00 is outside the years 1 to 9999 in UTC"),
    ({"to": "0001-01-01T00:00:00+14:00"}, "to",
     "to: 0001-01-01T00:00:00+14:00 is outside the years 1 to 9999 in UTC"),
    ({"to": "0001-01-05T00:00:00Z"}, "to", "to: 0001-01-05T00:00:00+00:00 is before 1970-01-01"),
])
def test_timeseries_times_beyond_datetime_range(api_server: ApiServer, params: dict[str, str],
                                                field: str, detail: str) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries", params={"metric": "runs", **params})

    assert response.status_code == 422, response.text
    assert response.json() == {"detail": detail, "field": field}


def test_timeseries_until_year_9999(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries",
                              params={"metric": "runs", "to": "9999-12-31T23:59:59Z"})

    assert response.status_code == 200, response.text
    assert response.json()["from"] == "9999-12-01T23:59:59Z"
    assert response.json()["to"] == "9999-12-31T23:59:59Z"
    assert len(response.json()["points"]) == 31


def test_timeseries_step_longer_than_range(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries",
                              params={"metric": "runs", "step": "99999w"})

    assert response.status_code == 200, response.text
    assert len(response.json()["points"]) == 1


def test_timeseries_unknown_repository_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/metrics/timeseries",
                              params={"metric": "runs", "repo": "acme/nothing"})

    assert response.status_code == 404
    assert response.json()["field"] == "repo"


def test_timeseries_needs_read_scope(api_server: ApiServer) -> None:
    with api_server.client(token=None) as client:
        response = client.get("/api/metrics/timeseries", params={"metric": "runs"})

    assert response.status_code == 401


def test_maintenance_loops_refresh_and_sample(api_server: ApiServer,
                                              db: psycopg.Connection) -> None:
    def refreshed() -> int:
        return db.execute("SELECT count(*) AS n FROM metrics_refreshes").fetchone()["n"]

    def sampled() -> int:
        return db.execute("SELECT count(*) AS n FROM metrics_log_ingest_samples").fetchone()["n"]

    assert wait_for(refreshed, timeout=30, message="the first refresh") == 6
    assert wait_for(sampled, timeout=30, message="the first log counter sample") >= 1
