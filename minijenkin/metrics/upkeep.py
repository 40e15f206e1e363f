"""Ticks of the metrics maintenance loops: view refresh and log counter samples.

`minijenkin.maintenance` runs them under its per-loop advisory lock, so one
process at a time does each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import psycopg

from minijenkin.metrics.figures import LOG_INGEST_WINDOW_SECONDS
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

LOG_INGEST_SAMPLE_SECONDS = 15.0
# Samples older than this are deleted; the rate needs only one sample older
# than its window.
LOG_INGEST_SAMPLE_KEEP_SECONDS = 10 * LOG_INGEST_WINDOW_SECONDS


def make_refresh_tick(min_interval_seconds: float) -> Callable[[psycopg.AsyncConnection],
                                                               Awaitable[None]]:
    """A tick that refreshes the metrics views once they are `min_interval_seconds` old."""

    async def refresh(conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["metrics_refresh"],
                                    {"min_interval_seconds": min_interval_seconds})
        rows = await cursor.fetchall()
        if not rows:
            return
        logger.info("metrics views refreshed", extra={
            "action": "metrics_refresh",
            "views": ",".join(row["view_name"] for row in rows),
            "started_at": rows[0]["started_at"].isoformat(),
            "finished_at": rows[-1]["finished_at"].isoformat(),
            "duration_seconds": round(
                (rows[-1]["finished_at"] - rows[0]["started_at"]).total_seconds(), 3),
        })

    return refresh


async def sample_log_ingest(conn: psycopg.AsyncConnection) -> None:
    """Store the job_logs partitions' insert counters for the ingest rate."""
    cursor = await conn.execute(QUERIES["metrics_log_ingest_sample"],
                                {"keep_seconds": LOG_INGEST_SAMPLE_KEEP_SECONDS})
    row = await cursor.fetchone()
    logger.debug("log ingest counters sampled", extra={
        "action": "log_ingest_sample", "partitions": row["partitions"] if row else 0})
