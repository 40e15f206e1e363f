"""The summary and the chart time series, read from the metrics views.

Both read materialized views only (never the big tables), through their
unique indexes, so their cost does not grow with the history. The views are
as fresh as their last refresh, which the responses report.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.metrics.figures import read_figures
from minijenkin.sql import QUERIES

# Window of the summary's views (see migration 0008_metrics.sql).
WINDOW_DAYS = 30

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
STEP_UNITS = {"h": HOUR, "d": DAY, "w": 7 * DAY}
STEP_PATTERN = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
# Keep in step with the origin of the metrics_series_* queries.
BUCKET_ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
SERIES_POINTS_MAX = 10_000
# Bucket arithmetic near year 1 would leave the range of Python's datetime.
SERIES_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SERIES_RANGE_DEFAULT = dt.timedelta(days=30)

Row = Mapping[str, Any]


def _success_rate(row: Row) -> float | None:
    decided = row["succeeded"] + row["failed"]
    return row["succeeded"] / decided if decided else None


@dataclass(frozen=True)
class SeriesMetric:
    """A chartable metric: which series query feeds it and which of its figures a point carries."""

    query: str
    # The `value` parameter of the query: a name its CASE expression knows.
    value: str
    unit: str
    # The finest step the source view has (its rows are per hour or per day).
    granularity: dt.timedelta
    # Percentiles cannot be merged across days, so they are charted per day only.
    one_day_steps_only: bool
    description: str


SERIES_METRICS: Mapping[str, SeriesMetric] = {
    "runs": SeriesMetric("metrics_series_runs", "runs", "runs", DAY, False,
                         "Runs created."),
    "runs_succeeded": SeriesMetric("metrics_series_runs", "succeeded", "runs", DAY, False,
                                   "Runs created that succeeded."),
    "runs_failed": SeriesMetric("metrics_series_runs", "failed", "runs", DAY, False,
                                "Runs created that failed or timed out."),
    "success_rate": SeriesMetric("metrics_series_runs", "success_rate", "ratio", DAY, False,
                                 "Succeeded runs / (succeeded + failed runs); null without either."),
    "run_duration_p50": SeriesMetric("metrics_series_runs", "duration_p50", "seconds",
                                     DAY, True, "Median duration of the day's succeeded or "
                                                "failed runs."),
    "run_duration_p95": SeriesMetric("metrics_series_runs", "duration_p95", "seconds",
                                     DAY, True, "95th percentile duration of the day's succeeded "
                                                "or failed runs."),
    "attempts_started": SeriesMetric("metrics_series_queue_wait", "attempts", "attempts",
                                     DAY, False, "Job attempts that started."),
    "queue_wait_p50": SeriesMetric("metrics_series_queue_wait", "wait_p50", "seconds",
                                   DAY, True, "Median queue wait of the day's attempts."),
    "queue_wait_p95": SeriesMetric("metrics_series_queue_wait", "wait_p95", "seconds",
                                   DAY, True, "95th percentile queue wait of the day's attempts."),
    "queue_wait_max": SeriesMetric("metrics_series_queue_wait", "wait_max", "seconds",
                                   DAY, False, "Longest queue wait of the bucket's attempts."),
    "jobs_finished": SeriesMetric("metrics_series_jobs", "jobs", "jobs", HOUR, False,
                                  "Jobs that ended succeeded, failed or timed out (throughput)."),
    "jobs_succeeded": SeriesMetric("metrics_series_jobs", "succeeded", "jobs", HOUR, False,
                                   "Jobs that ended succeeded."),
    "jobs_failed": SeriesMetric("metrics_series_jobs", "failed", "jobs", HOUR, False,
                                "Jobs that ended failed or timed out."),
}


def parse_step(text: str) -> dt.timedelta:
    """Parse a step such as `1h`, `6h`, `1d` or `1w`; raise InvalidInputError otherwise."""
    match = STEP_PATTERN.match(text)
    if match is None:
        raise InvalidInputError(
            f"step: invalid value {text!r}; use a number and a unit h, d or w, such as 1h, 1d or 1w",
            field="step")
    return int(match.group(1)) * STEP_UNITS[match.group(2)]


def _as_utc(value: dt.datetime, field: str) -> dt.datetime:
    """Convert `value` to UTC; a time without an offset is taken as UTC, the zone the views use.

    Raises InvalidInputError naming `field` when the UTC time falls outside
    the years 1 to 9999 that Python's datetime supports.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise InvalidInputError(
            f"{field}: {value.isoformat()} is outside the years 1 to 9999 in UTC",
            field=field) from None


def _check_not_before_earliest(field: str, value: dt.datetime) -> None:
    if value < SERIES_EARLIEST:
        raise InvalidInputError(
            f"{field}: {value.isoformat()} is before {SERIES_EARLIEST.date().isoformat()}",
            field=field)


def bucket_count(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> int:
    """Number of buckets the series queries return (see metrics.sql: aligned to BUCKET_ORIGIN)."""
    first = BUCKET_ORIGIN + ((start - BUCKET_ORIGIN) // step) * step
    return math.ceil((end - first) / step)


def _check_step(metric_name: str, metric: SeriesMetric, step_text: str,
                step: dt.timedelta) -> None:
    if metric.one_day_steps_only and step != DAY:
        raise InvalidInputError(
            f"step: {metric_name} is a daily percentile, which cannot be combined across days; "
            f"use step=1d (got {step_text!r})", field="step")
    if step % metric.granularity:
        unit = "1h" if metric.granularity == HOUR else "1d"
        raise InvalidInputError(
            f"step: {metric_name} is stored per {unit}; use a multiple of {unit} "
            f"(got {step_text!r})", field="step")


async def _repo_id(conn: psycopg.AsyncConnection, repo: str | None) -> int | None:
    if repo is None:
        return None
    cursor = await conn.execute(QUERIES["repo_get"], {"id": None, "name": repo})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"repository {repo!r} does not exist", field="repo")
    return int(row["id"])


async def _database_now(conn: psycopg.AsyncConnection) -> dt.datetime:
    cursor = await conn.execute(QUERIES["metrics_clock"])
    row = await cursor.fetchone()
    assert row is not None
    return row["now"]


async def read_series(
    conn: psycopg.AsyncConnection,
    *,
    metric: str,
    step: str,
    repo: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> dict[str, Any]:
    """Read one point per bucket of `step`, from the bucket containing `start` to before `end`.

    `end` defaults to the database's now() and `start` to 30 days before
    `end`. Raises InvalidInputError naming the field for an unknown metric,
    a malformed or unsuitable step, an empty range or too many points, and
    NotFoundError for an unknown repository.
    """
    series_metric = SERIES_METRICS.get(metric)
    if series_metric is None:
        raise InvalidInputError(
            f"metric: unknown metric {metric!r}; use one of {', '.join(sorted(SERIES_METRICS))}",
            field="metric")
    step_length = parse_step(step)
    _check_step(metric, series_metric, step, step_length)

    if end is None:
        end = await _database_now(conn)
    end = _as_utc(end, "to")
    if start is None:
        # Checked before the subtraction, which fails for a `to` near year 1.
        _check_not_before_earliest("to", end)
        start = end - SERIES_RANGE_DEFAULT
    else:
        start = _as_utc(start, "from")
    for field, value in (("from", start), ("to", end)):
        _check_not_before_earliest(field, value)
    if start >= end:
        raise InvalidInputError(
            f"from: must be earlier than to (from {start.isoformat()}, to {end.isoformat()})",
            field="from")
    points = bucket_count(start, end, step_length)
    if points > SERIES_POINTS_MAX:
        raise InvalidInputError(
            f"step: {step} from {start.isoformat()} to {end.isoformat()} gives {points} points, "
            f"more than {SERIES_POINTS_MAX}; use a larger step or a shorter range", field="step")

    repo_id = await _repo_id(conn, repo)
    cursor = await conn.execute(QUERIES[series_metric.query], {
        "repo_id": repo_id or 0, "from": start, "to": end, "step": step_length,
        "value": series_metric.value})
    row = await cursor.fetchone()
    assert row is not None
    return {
        "metric": metric,
        "unit": series_metric.unit,
        "repo": repo,
        "step": step,
        "from": start,
        "to": end,
        "points_json": row["points"],
    }


def series_json(series: Mapping[str, Any]) -> bytes:
    """Encode a series read by read_series as the MetricsSeries JSON body.

    The points arrive from PostgreSQL already encoded and are spliced in
    unchanged, so a long series is never decoded into Python objects.
    """
    head = {key: value for key, value in series.items() if key != "points_json"}
    head["from"] = _iso_utc(series["from"])
    head["to"] = _iso_utc(series["to"])
    return (json.dumps(head)[:-1] + ', "points": ' + series["points_json"] + "}").encode()


def _iso_utc(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


async def read_summary(
    conn: psycopg.AsyncConnection,
    *,
    repo: str | None = None,
    jobs_limit: int = 50,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Read the live figures, the 30-day views (optionally of one repository) and refresh times.

    Raises NotFoundError for an unknown repository.
    """
    repo_id = await _repo_id(conn, repo)
    live = await read_figures(conn, live_only=True, now=now)

    async with conn.pipeline():
        cursors = [
            await conn.execute(QUERIES["metrics_refreshes"]),
            await conn.execute(QUERIES["metrics_summary_repos"], {"repo_id": repo_id}),
            await conn.execute(QUERIES["metrics_summary_job_names"],
                               {"repo_id": repo_id, "limit": jobs_limit}),
            await conn.execute(QUERIES["metrics_summary_queue_wait"]),
            await conn.execute(QUERIES["metrics_summary_throughput"],
                               {"repo_id": repo_id or 0, "now": now}),
        ]
        refreshes, repos, job_names, queue_wait, throughput_rows = [
            await cursor.fetchall() for cursor in cursors]
    throughput = throughput_rows[0]

    return {
        "window_days": WINDOW_DAYS,
        "refreshed_at": min((row["refreshed_at"] for row in refreshes), default=None),
        "views": [
            {"name": row["view_name"], "refreshed_at": row["refreshed_at"],
             "duration_seconds": row["duration_seconds"]}
            for row in refreshes
        ],
        "live": [
            {"figure": reading.figure.name, "metric": reading.figure.exposed_name,
             "unit": reading.figure.unit, "labels": dict(reading.labels), "value": reading.value}
            for reading in live
        ],
        "repositories": [
            {"repo": row["repo"], "runs": row["runs"], "succeeded": row["succeeded"],
             "failed": row["failed"], "cancelled": row["cancelled"],
             "success_rate": _success_rate(row),
             "duration_p50_seconds": _float(row["duration_p50"]),
             "duration_p95_seconds": _float(row["duration_p95"]),
             "last_run_at": row["last_run_at"]}
            for row in repos
        ],
        "jobs": [
            {"repo": row["repo"], "name": row["name"], "jobs": row["jobs"],
             "attempts": row["attempts"], "succeeded": row["succeeded"], "failed": row["failed"],
             "duration_p50_seconds": _float(row["duration_p50"]),
             "duration_p95_seconds": _float(row["duration_p95"]),
             "commits": row["commits"], "flaky_commits": row["flaky_commits"],
             "flakiness": _float(row["flakiness"])}
            for row in job_names
        ],
        "queue_wait": [
            {"labels": list(row["labels"]), "attempts": row["attempts"],
             "p50_seconds": _float(row["wait_p50"]), "p95_seconds": _float(row["wait_p95"]),
             "max_seconds": _float(row["wait_max"])}
            for row in queue_wait
        ],
        "throughput_last_24h": {
            "jobs": throughput["jobs"], "succeeded": throughput["succeeded"],
            "failed": throughput["failed"],
            "jobs_per_hour": float(throughput["jobs"]) / 24,
        },
    }
