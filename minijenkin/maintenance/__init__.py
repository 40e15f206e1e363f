"""Background loops run by API processes, each led by one process at a time.

Every tick opens a transaction and tries a transaction-scoped advisory lock
named `maintenance:<loop>`. The process that gets it does the work; the
others skip the tick. The lock ends with the transaction, so a crashed
leader never blocks the others for longer than one tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from minijenkin import polling, schedules
from minijenkin.config import Settings
from minijenkin.logs.search import index_pending
from minijenkin.metrics.queue_samples import QUEUE_SAMPLE_SECONDS, sample_queue
from minijenkin.metrics.upkeep import LOG_INGEST_SAMPLE_SECONDS, make_refresh_tick, sample_log_ingest
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

PARTITION_INTERVAL_SECONDS = 3600.0

# A tick returns True when it stopped with work left (a backlog), so that
# the loop runs the next tick at once instead of after its interval.
Tick = Callable[[psycopg.AsyncConnection], Awaitable[bool | None]]


@dataclass(frozen=True)
class Loop:
    name: str
    interval_seconds: float
    tick: Tick


async def run_tick_if_leader(pool: AsyncConnectionPool, loop: Loop) -> bool:
    """Run one tick of `loop` if this process wins its lock; return whether it did."""
    led, _ = await _run_tick(pool, loop)
    return led


async def _run_tick(pool: AsyncConnectionPool, loop: Loop) -> tuple[bool, bool]:
    """Run one tick if this process leads; return (led, work left)."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(QUERIES["maintenance_lock_try"],
                                    {"name": f"maintenance:{loop.name}"})
        row = await cursor.fetchone()
        if not row or not row["acquired"]:
            return False, False
        return True, bool(await loop.tick(conn))


async def run_loop(pool: AsyncConnectionPool, loop: Loop) -> None:
    """Tick forever; a failed tick is logged and retried at the next interval."""
    logger.info("maintenance loop started", extra={"action": "maintenance_start", "loop": loop.name})
    failures = 0
    while True:
        backlog = False
        try:
            _, backlog = await _run_tick(pool, loop)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            # One line per failure streak step keeps a long outage readable.
            if failures == 1 or failures % 20 == 0:
                logger.warning("maintenance tick failed", extra={
                    "action": "maintenance_error", "loop": loop.name, "failures": failures,
                    "error": f"{type(exc).__name__}: {exc}",
                })
        # A tick can return normally after a cancel: Python 3.11's
        # asyncio.wait_for, which psycopg_pool uses to wait for a connection,
        # drops the cancel when the connection arrives at the same moment.
        # Without this check the loop would sleep on, and the API's
        # shutdown would wait for it in vain.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        # With a backlog, the next tick starts at once; each tick is bounded
        # in time, and sleep(0) still lets the process's other tasks run.
        await asyncio.sleep(0 if backlog else loop.interval_seconds)


def make_loops(settings: Settings) -> list[Loop]:
    async def reap(conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["reap"], {
            "lease_seconds": settings.worker_lease_seconds,
            "backoff_base": settings.retry_backoff_seconds,
            "backoff_max": settings.retry_backoff_max_seconds,
        })
        for row in await cursor.fetchall():
            logger.warning("job of a lost worker recovered", extra={
                "action": "reap", "job_id": row["job_id"], "run_id": row["run_id"],
                "worker_id": str(row["worker_id"]), "attempt": row["attempt"],
                "outcome": row["outcome"],
            })

    async def deploy_sweep(conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["deploy_sweep"])
        for row in await cursor.fetchall():
            logger.info("deploy woken: its lock was freed without a release", extra={
                "action": "deploy_wake", "job_id": row["job_id"], "run_id": row["run_id"],
                "lock": row["lock_name"]})

    async def run_group_sweep(conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["run_group_sweep"])
        for row in await cursor.fetchall():
            logger.info("run started: its concurrency group had no active run", extra={
                "action": "run_group_start", "run_id": row["run_id"], "repo_id": row["repo_id"],
                "concurrency_group": row["concurrency_group"]})

    async def partitions(conn: psycopg.AsyncConnection) -> None:
        cursor = await conn.execute(QUERIES["logs_ensure_partitions"])
        created = (await cursor.fetchone() or {}).get("created")
        cursor = await conn.execute(QUERIES["logs_drop_partitions"],
                                    {"retention_days": settings.log_retention_days})
        dropped = [row["dropped"] for row in await cursor.fetchall()]
        if created or dropped:
            logger.info("log partitions maintained", extra={
                "action": "log_partitions", "partitions_created": created,
                "partitions_dropped": ",".join(dropped),
            })

    async def poll(conn: psycopg.AsyncConnection) -> None:
        await polling.poll_due(conn, settings)

    async def fire_schedules(conn: psycopg.AsyncConnection) -> None:
        await schedules.tick(conn)
    async def index_logs(conn: psycopg.AsyncConnection) -> bool:
        attempts, chunks, backlog = await index_pending(conn)
        if chunks:
            logger.debug("log lines indexed for search", extra={
                "action": "log_index", "attempts": attempts, "chunks": chunks})
        return backlog

    return [
        Loop("reaper", settings.maintenance_interval_seconds, reap),
        # A deploy lock freed by a dying worker sends no NOTIFY: this sweep
        # wakes the next deploy within one interval.
        Loop("deploy_sweep", settings.maintenance_interval_seconds, deploy_sweep),
        # Likewise for a run of a concurrency group whose predecessor ended
        # while another transaction was deciding for the group.
        Loop("run_group_sweep", settings.maintenance_interval_seconds, run_group_sweep),
        Loop("log_partitions", PARTITION_INTERVAL_SECONDS, partitions),
        Loop("poll", settings.maintenance_interval_seconds, poll),
        Loop("cron", settings.maintenance_interval_seconds, fire_schedules),
        # Ticks often; the refresh itself waits for MINIJENKIN_METRICS_REFRESH_SECONDS.
        Loop("metrics_refresh", settings.maintenance_interval_seconds,
             make_refresh_tick(settings.metrics_refresh_seconds)),
        Loop("log_ingest_sample", LOG_INGEST_SAMPLE_SECONDS, sample_log_ingest),
        Loop("log_indexer", settings.log_index_interval_seconds, index_logs),
        Loop("queue_sample", QUEUE_SAMPLE_SECONDS, sample_queue),
    ]


async def run_maintenance(pool: AsyncConnectionPool, settings: Settings) -> None:
    """Run every maintenance loop until cancelled."""
    async with asyncio.TaskGroup() as group:
        for loop in make_loops(settings):
            group.create_task(run_loop(pool, loop), name=f"maintenance:{loop.name}")
