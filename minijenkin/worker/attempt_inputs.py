"""What a job attempt reads from the database before its steps, fenced by its lease token.

Each read is one worker function (see 90_security.sql), made only when the
job's spec needs it:
- the outputs of the jobs it needs (spec `needs_outputs`), for
  `needs.<id>.outputs`;
- the statuses of its indirect ancestors (spec `ancestors`). On GitHub,
  failure() in a job's condition is true when any ancestor failed, not
  only a job listed in `needs`, while the claim returns the direct needs
  only. The planner lists the other ancestors of jobs whose condition calls
  failure();
- the repository's variables, by the plan job only. The planner copies
  the values each job reads into its spec, so a run keeps the values it
  started with and other jobs make no call.
The job's secrets are read the same way (minijenkin.worker.secrets).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from minijenkin.db import TRANSIENT_ERRORS
from minijenkin.queue.client import ClaimedJob
from minijenkin.sql import QUERIES

FETCH_ATTEMPTS = 3
FETCH_RETRY_SECONDS = 0.2


class AttemptInputUnavailableError(Exception):
    """The job cannot get what it reads before its steps (secrets, outputs, statuses, variables).

    `reason` is the message, or None when the lease is gone.
    """

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        super().__init__(reason or "the job's lease is no longer valid")


async def fetch_for_attempt(pool: AsyncConnectionPool, job: ClaimedJob, query: str, what: str,
                            params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the named query with the attempt's job id and lease token (and `params`); retry transient errors.

    Raises AttemptInputUnavailableError, naming `what` when the database
    stays unavailable, and with no reason when the lease is gone.
    """
    delay = FETCH_RETRY_SECONDS
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(QUERIES[query], {
                    **(params or {}), "job_id": job.job_id, "lease_token": job.lease_token})
                return await cursor.fetchall()
        except psycopg.errors.ObjectNotInPrerequisiteState:
            raise AttemptInputUnavailableError(None) from None
        except TRANSIENT_ERRORS as exc:
            if attempt == FETCH_ATTEMPTS:
                raise AttemptInputUnavailableError(
                    f"cannot load {what}: the database is unavailable ({exc})") from exc
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


async def load_needs_outputs(pool: AsyncConnectionPool, job: ClaimedJob) -> None:
    """Set job.context["needs_outputs"] to (job key, outputs) pairs, those finished last coming last."""
    if job.kind == "plan" or not job.spec.get("needs_outputs"):
        return
    rows = await fetch_for_attempt(pool, job, "job_needs_outputs", "the outputs of the jobs it needs")
    job.context["needs_outputs"] = [(row["key"], row["outputs"]) for row in rows]


async def load_ancestor_statuses(pool: AsyncConnectionPool, job: ClaimedJob) -> None:
    """Set job.context["ancestors"] to the statuses of the spec's `ancestors`, by job key.

    A failure of a job that continues on error counts as a success, as for
    direct needs.
    """
    keys = job.spec.get("ancestors")
    if job.kind == "plan" or not keys:
        return
    rows = await fetch_for_attempt(pool, job, "job_ancestor_statuses", "the statuses of its ancestor jobs",
                                   {"keys": list(keys)})
    job.context["ancestors"] = {
        row["key"]: "succeeded" if row["continue_on_error"] and row["status"] in ("failed", "timed_out")
        else row["status"]
        for row in rows}


async def load_variables(pool: AsyncConnectionPool, job: ClaimedJob) -> None:
    """Set job.context["vars"] of a plan job to the repository's variables."""
    if job.kind != "plan":
        return
    rows = await fetch_for_attempt(pool, job, "job_variables", "the repository's variables")
    job.context["vars"] = {row["name"]: row["value"] for row in rows}
