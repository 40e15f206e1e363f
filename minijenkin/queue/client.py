"""A worker's calls into the queue's SQL functions.

Each call is one statement on a pooled connection. Every state change names
the job's lease token, so the database ignores results from an attempt that
is no longer current (see mj_job_finish_v1).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from minijenkin.errors import DatabaseUnavailableError
from minijenkin.sql import QUERIES


@dataclass(frozen=True)
class ClaimedJob:
    """One attempt of a job, as handed to the worker that claimed it."""

    job_id: int
    run_id: int
    attempt: int
    lease_token: uuid.UUID
    kind: str
    key: str
    name: str
    spec: dict[str, Any]
    condition: str | None
    timeout_seconds: int | None
    context: dict[str, Any]

    @property
    def repo(self) -> dict[str, Any]:
        return self.context["repo"]

    @property
    def run(self) -> dict[str, Any]:
        return self.context["run"]


@dataclass(frozen=True)
class FinishItem:
    """One attempt's end, as reported to mj_job_finish_v1."""

    job: ClaimedJob
    status: str
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float


# Columns of the claim's rows that are not fields of ClaimedJob.
_NOT_JOB_FIELDS = ("needs", "run_context", "outcome")


def claimed_jobs(rows: list[dict[str, Any]]) -> list[ClaimedJob]:
    """Build the claimed jobs from rows of mj_job_claim_v2 or mj_job_finish_and_claim_v1.

    The run's context comes on one row per run. Each job still gets a
    context dict of its own, because the worker adds the job's secrets to it.
    """
    runs = {row["run_id"]: row["run_context"] for row in rows if row["run_context"] is not None}
    jobs = []
    for row in rows:
        fields = {name: value for name, value in row.items() if name not in _NOT_JOB_FIELDS}
        jobs.append(ClaimedJob(**fields,
                               context={**runs[row["run_id"]], "needs": row["needs"] or {}}))
    return jobs


class QueueClient:
    def __init__(self, pool: AsyncConnectionPool, worker_id: uuid.UUID, retry: RetryPolicy,
                 *, call_timeout_seconds: float | None = None) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.retry = retry
        # Seconds each call (pool checkout included) may take; None waits forever.
        self.call_timeout_seconds = call_timeout_seconds

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """Check out a pooled connection for one call, bounded by call_timeout_seconds.

        A call that times out raises DatabaseUnavailableError, so callers
        retry it as they retry a lost connection. Its outcome is unknown:
        like a claim whose result was lost, it may have been committed.
        """
        try:
            async with asyncio.timeout(self.call_timeout_seconds), self.pool.connection() as conn:
                yield conn
        except TimeoutError as exc:
            raise DatabaseUnavailableError(
                "timed out: no response from the database within "
                f"{self.call_timeout_seconds:g} s") from exc

    async def register(self, *, name: str, hostname: str, pid: int, labels: list[str],
                       concurrency: int, version: str) -> None:
        async with self._connection() as conn:
            await conn.execute(QUERIES["worker_register"], {
                "worker_id": self.worker_id, "name": name, "hostname": hostname, "pid": pid,
                "labels": labels, "concurrency": concurrency, "version": version,
            })

    async def heartbeat(self, held: dict[int, uuid.UUID]) -> list[tuple[int, str]]:
        """Record liveness; return (job_id, 'cancel' | 'abandon') for held jobs to stop."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["worker_heartbeat"], {
                "worker_id": self.worker_id, "job_ids": list(held),
                "lease_tokens": list(held.values()),
            })
            return [(row["job_id"], row["action"]) for row in await cursor.fetchall()]

    async def claim(self, labels: list[str], limit: int) -> list[ClaimedJob]:
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["job_claim"], {
                "worker_id": self.worker_id, "labels": labels, "limit": limit,
            })
            rows = await cursor.fetchall()
        return claimed_jobs(rows)

    async def finish(self, job: ClaimedJob, *, status: str, exit_code: int | None,
                     reason: str | None) -> str:
        """Report the attempt's end; return 'finished', 'retrying' or 'stale'."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["job_finish"], {
                "job_id": job.job_id, "lease_token": job.lease_token, "status": status,
                "exit_code": exit_code, "reason": reason,
                "backoff_base": self.retry.base_seconds, "backoff_max": self.retry.max_seconds,
            })
            row = await cursor.fetchone()
        assert row is not None
        return str(row["outcome"])

    async def finish_many(self, items: list[FinishItem]) -> dict[int, str]:
        """Report several attempts' ends in one transaction; return job id -> outcome."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["job_finish_many"], self._results(items))
            rows = await cursor.fetchall()
        return {row["job_id"]: str(row["outcome"]) for row in rows}

    async def finish_and_claim(self, items: list[FinishItem], labels: list[str],
                               limit: int) -> tuple[dict[int, str], list[ClaimedJob]]:
        """Report attempts' ends, then claim up to `limit` jobs, in one transaction.

        Return the outcomes (job id -> outcome) and the claimed jobs.
        """
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["job_finish_and_claim"], {
                **self._results(items), "worker_id": self.worker_id, "labels": labels,
                "limit": limit,
            })
            rows = await cursor.fetchall()
        outcomes = {row["job_id"]: str(row["outcome"]) for row in rows if row["outcome"] is not None}
        return outcomes, claimed_jobs([row for row in rows if row["outcome"] is None])

    def _results(self, items: list[FinishItem]) -> dict[str, Any]:
        return {
            "job_ids": [item.job.job_id for item in items],
            "lease_tokens": [item.job.lease_token for item in items],
            "statuses": [item.status for item in items],
            "exit_codes": [item.exit_code for item in items],
            # PostgreSQL text cannot hold NUL, and one such reason would fail
            # the whole batch of results, so it is replaced here.
            "reasons": [item.reason.replace("\0", "\ufffd") if item.reason else item.reason
                        for item in items],
            "backoff_base": self.retry.base_seconds, "backoff_max": self.retry.max_seconds,
        }

    async def store_outputs(self, job: ClaimedJob, outputs: dict[str, str]) -> bool:
        """Store the job's output values; return False when the lease is no longer this attempt's."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["job_outputs_set"], {
                "job_id": job.job_id, "lease_token": job.lease_token, "outputs": Jsonb(outputs),
            })
            row = await cursor.fetchone()
        return bool(row and row["stored"])

    async def submit_plan(self, job: ClaimedJob, graph: list[dict[str, Any]]) -> str:
        """Store the planned job graph; return 'finished', 'cancelled' or 'stale'."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["plan_submit"], {
                "job_id": job.job_id, "lease_token": job.lease_token, "jobs": Jsonb(graph),
            })
            row = await cursor.fetchone()
        assert row is not None
        return str(row["outcome"])

    async def stop(self) -> list[int]:
        """Mark this worker stopped; return the ids of the jobs handed back to the queue."""
        async with self._connection() as conn:
            cursor = await conn.execute(QUERIES["worker_stop"], {"worker_id": self.worker_id})
            return [row["job_id"] for row in await cursor.fetchall()]
