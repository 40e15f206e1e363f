"""The deploy lock of one job, held on a connection of its own.

A job with an `environment` or a `concurrency` group runs only while its
worker holds PostgreSQL session advisory locks for those names (see
mj_deploy_acquire_v1). The locks live on a dedicated connection that stays
open for the job's whole run: if the worker dies, PostgreSQL closes the
session and releases them, and the next deploy can start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin.db import connect_async
from minijenkin.queue.client import ClaimedJob
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

ACQUIRED = "acquired"


def needs_deploy_lock(job: ClaimedJob) -> bool:
    """Whether the job must hold a deploy lock: it has an environment or a concurrency group."""
    return job.kind == "script" and bool(job.spec.get("environment") or job.spec.get("concurrency"))


@dataclass(frozen=True)
class LockResult:
    """The outcome of mj_deploy_acquire_v1 (acquired, waiting, awaiting_approval, cancelled or
    stale) and the reason a parked job waits."""

    outcome: str
    reason: str | None


class DeployLock:
    """The connection that holds a job's deploy locks, and a watchdog over it."""

    def __init__(self, conn: psycopg.AsyncConnection, job: ClaimedJob,
                 log_extra: dict[str, Any]) -> None:
        self.conn = conn
        self.job = job
        self.log_extra = log_extra
        self._watchdog: asyncio.Task[None] | None = None
        self._released = asyncio.Event()

    @classmethod
    async def acquire(cls, conninfo: str, job: ClaimedJob,
                      log_extra: dict[str, Any]) -> tuple[DeployLock | None, LockResult]:
        """Take the job's locks on a new connection.

        Returns the held lock with outcome 'acquired'; otherwise None (the
        connection is closed) and why the job did not start. Raises the
        driver's error when the database cannot be reached.
        """
        conn = await connect_async(conninfo, application_name="minijenkin-worker-deploy")
        try:
            cursor = await conn.execute(QUERIES["deploy_lock_acquire"], {
                "job_id": job.job_id, "lease_token": job.lease_token})
            row = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        assert row is not None
        result = LockResult(row["outcome"], row["reason"])
        if result.outcome != ACQUIRED:
            await conn.close()
            return None, result
        return cls(conn, job, log_extra), result

    def watch(self, interval_seconds: float, on_lost: Callable[[], None]) -> None:
        """Check the connection every interval; call `on_lost` once if it breaks.

        A broken connection means PostgreSQL has released the locks, so
        another deploy may start: the job must stop.
        """
        self._watchdog = asyncio.create_task(self._watch(interval_seconds, on_lost),
                                             name=f"deploy-lock-{self.job.job_id}")

    async def _watch(self, interval_seconds: float, on_lost: Callable[[], None]) -> None:
        # The loop ends between checks rather than by task cancellation: a
        # query cancelled mid-flight would leave the connection busy while
        # release() needs it.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=interval_seconds)
                return
            try:
                await asyncio.wait_for(self.conn.execute("SELECT 1"), timeout=interval_seconds * 4)
            except (psycopg.Error, TimeoutError) as exc:
                logger.error("the deploy lock's connection broke; stopping the job", extra={
                    **self.log_extra, "action": "deploy_lock_lost", "error": str(exc) or "timeout"})
                on_lost()
                return

    async def release(self) -> None:
        """Give the locks back and wake the next waiting job, then close the connection.

        If that fails, closing the connection still releases the locks, and
        the maintenance sweep wakes the next job.
        """
        self._released.set()
        if self._watchdog is not None:
            await self._watchdog
        try:
            cursor = await self.conn.execute(QUERIES["deploy_lock_release"],
                                             {"job_id": self.job.job_id})
            row = await cursor.fetchone()
            logger.info("deploy lock released", extra={
                **self.log_extra, "action": "deploy_lock_release",
                "woken": row["woken"] if row else 0})
        except psycopg.Error as exc:
            logger.warning("could not release the deploy lock; closing its connection instead",
                           extra={**self.log_extra, "action": "deploy_lock_release_error",
                                  "error": str(exc)})
        finally:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
