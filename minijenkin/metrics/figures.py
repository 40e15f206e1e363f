"""Figures: each one is a named query plus one Prometheus metric.

A figure's query (`metrics_<name>` in `sql/queries/metrics.sql`) returns one
row per sample: a column per label and `value`. Live figures read the tables
through indexes that exist for the queue anyway (queued and running jobs,
live workers, active runs) or PostgreSQL's statistics, so they stay cheap
however long the history grows. History figures read the 30-day views.

Adding a figure is one query and one `Figure` entry below; `/metrics`, the
summary and `minijenkin status` pick it up. Label values are bounded by
repositories, label sets, statuses or views, never by job names, so a
scrape stays small. Per-job durations and flakiness are in the summary
(`minijenkin.metrics.history`) instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from minijenkin.sql import QUERIES

# The log ingest rate is measured over at least this many seconds, so that
# the lag of PostgreSQL's statistics stays small against the window. A
# backend flushes its counters at most once a second after a commit, and an
# idle one within 10 s (PGSTAT_MIN_INTERVAL, PGSTAT_IDLE_INTERVAL in pgstat.c).
LOG_INGEST_WINDOW_SECONDS = 60.0

Unit = Literal["jobs", "runs", "slots", "seconds", "ratio", "lines/s", "jobs/h", "timestamp",
               "messages", "deploys", "failures"]


@dataclass(frozen=True)
class Figure:
    """One figure: query `metrics_<name>` and Prometheus metric `metric`.

    A figure is a gauge unless `counter` is set. A counter's `metric` is its
    name without `_total`, which the exposition format appends.
    """

    name: str
    metric: str
    help: str
    labels: tuple[str, ...]
    unit: Unit
    # True for figures read from the tables and statistics at request time;
    # False for the ones read from the 30-day materialized views.
    live: bool
    counter: bool = False

    @property
    def query(self) -> str:
        return f"metrics_{self.name}"

    @property
    def exposed_name(self) -> str:
        """The name scrapers see: a counter's gets `_total`."""
        return f"{self.metric}_total" if self.counter else self.metric


@dataclass(frozen=True)
class Reading:
    """One sample of a figure."""

    figure: Figure
    labels: Mapping[str, str]
    value: float


FIGURES: tuple[Figure, ...] = (
    Figure("queue_depth", "minijenkin_queue_depth",
           "Jobs waiting in the queue, by the worker labels they require.",
           ("labels",), "jobs", live=True),
    Figure("queue_oldest_age", "minijenkin_queue_oldest_age_seconds",
           "Seconds since the longest-waiting queued job entered the queue, by required labels.",
           ("labels",), "seconds", live=True),
    Figure("worker_slots", "minijenkin_worker_slots",
           "Job slots of live workers, busy or idle, by the labels the workers offer.",
           ("labels", "state"), "slots", live=True),
    Figure("worker_utilisation", "minijenkin_worker_utilisation_ratio",
           "Share of the live workers' job slots that run a job.",
           (), "ratio", live=True),
    Figure("runs_active", "minijenkin_runs_active",
           "Runs that have not ended, by status.",
           ("status",), "runs", live=True),
    Figure("deploys_waiting", "minijenkin_deploys_waiting",
           "Deploy jobs parked per environment: waiting for its lock, or awaiting approval.",
           ("environment", "state"), "jobs", live=True),
    Figure("deploy_lock_failures", "minijenkin_deploy_lock_failures",
           "Failed attempts to take a deploy lock (deploy:<environment> or "
           "concurrency:<group>), a running total since the name was first contended.",
           ("lock",), "failures", live=True, counter=True),
    Figure("deploys", "minijenkin_deploys",
           "Deployments that ended in the last 30 days, by environment and status.",
           ("environment", "status"), "deploys", live=True),
    Figure("deploy_lead_time", "minijenkin_deploy_lead_time_seconds",
           "Lead time percentiles over the last 30 days' succeeded deployments: seconds from "
           "the run's creation to the deploy's end, by environment.",
           ("environment", "quantile"), "seconds", live=True),
    Figure("log_ingest_rate", "minijenkin_log_ingest_lines_per_second",
           "Log lines stored per second over about the last minute "
           "(from the job_logs partitions' insert counters).",
           (), "lines/s", live=True),
    Figure("outbox_messages", "minijenkin_outbox_messages",
           "Notifications in the outbox: pending (the backlog), delivering, or dead letters.",
           ("state",), "messages", live=True),
    Figure("outbox_oldest_due_age", "minijenkin_outbox_oldest_due_age_seconds",
           "Seconds the most overdue pending notification has waited past its delivery time.",
           (), "seconds", live=True),
    Figure("refreshed_at", "minijenkin_metrics_refreshed_timestamp_seconds",
           "When each metrics view was last refreshed (Unix time).",
           ("view",), "timestamp", live=True),
    Figure("refresh_duration", "minijenkin_metrics_refresh_duration_seconds",
           "Seconds the last refresh of each metrics view took.",
           ("view",), "seconds", live=True),
    Figure("throughput", "minijenkin_throughput_jobs_per_hour",
           "Jobs that ended per hour, averaged over the last 24 complete hours.",
           (), "jobs/h", live=False),
    Figure("repo_runs", "minijenkin_repo_runs",
           "Runs created in the last 30 days, by repository.",
           ("repo",), "runs", live=False),
    Figure("repo_success_ratio", "minijenkin_repo_success_ratio",
           "Share of the last 30 days' succeeded or failed runs that succeeded, by repository.",
           ("repo",), "ratio", live=False),
    Figure("repo_run_duration", "minijenkin_repo_run_duration_seconds",
           "Run duration percentiles over the last 30 days, by repository.",
           ("repo", "quantile"), "seconds", live=False),
    Figure("queue_wait", "minijenkin_queue_wait_seconds",
           "Queue wait percentiles (queued to started, per attempt) over the last 30 days, "
           "by required labels.",
           ("labels", "quantile"), "seconds", live=False),
)

def label_text(value: object) -> str:
    """Format a label value as text; a label set (array) becomes its labels joined by commas."""
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


async def read_figures(
    conn: psycopg.AsyncConnection,
    *,
    live_only: bool = False,
    now: dt.datetime | None = None,
    figures: Sequence[Figure] = FIGURES,
) -> list[Reading]:
    """Run the query of each figure and return its samples, in figure order.

    `now` pins the clock of the time-dependent figures (tests); None means
    the database's now(). A NULL value (nothing to measure, e.g. a ratio
    over zero slots) yields no sample.
    """
    params: dict[str, Any] = {"now": now, "window_seconds": LOG_INGEST_WINDOW_SECONDS}
    selected = [figure for figure in figures if figure.live or not live_only]
    # Pipeline mode sends every query before reading any result: one network
    # round trip for all the figures instead of one per figure.
    async with conn.pipeline():
        cursors = [await conn.execute(QUERIES[figure.query], params) for figure in selected]
        results = [await cursor.fetchall() for cursor in cursors]

    readings: list[Reading] = []
    for figure, rows in zip(selected, results, strict=True):
        for row in rows:
            if row["value"] is None:
                continue
            labels = {label: label_text(row[label]) for label in figure.labels}
            readings.append(Reading(figure=figure, labels=labels, value=float(row["value"])))
    return readings
