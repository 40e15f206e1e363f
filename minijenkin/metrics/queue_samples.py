"""Samples of the queue's depth, the history behind the dashboard's queue depth chart.

Queue depth is a live figure, so nothing else records how it changed. The
`queue_sample` maintenance loop stores the number of queued and running
jobs every QUEUE_SAMPLE_SECONDS in metrics_queue_samples (migration
0013_dashboard.sql) and deletes samples older than QUEUE_SAMPLE_KEEP_SECONDS.
"""

from __future__ import annotations

import logging

import psycopg

from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

QUEUE_SAMPLE_SECONDS = 15.0
QUEUE_SAMPLE_KEEP_SECONDS = 30 * 86400.0


async def sample_queue(conn: psycopg.AsyncConnection) -> None:
    """Store one sample of the queued and running job counts."""
    cursor = await conn.execute(QUERIES["dashboard_queue_sample"],
                                {"keep_seconds": QUEUE_SAMPLE_KEEP_SECONDS})
    row = await cursor.fetchone()
    logger.debug("queue depth sampled", extra={
        "action": "queue_sample", "queued": row["queued"] if row else None,
        "running": row["running"] if row else None})
