"""The step after a claim that gives a job its secrets.

The worker calls mj_job_secrets_v1 (fenced by the attempt's lease token) for
the encrypted secrets the job's spec references, decrypts them with the
keyring and puts them in `job.context["secrets"]` (name to value), where the
expression engine resolves `${{ secrets.NAME }}` and the log shipper masks
the values. Plan jobs get no secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from minijenkin.crypto import DecryptionError, Keyring
from minijenkin.db import TRANSIENT_ERRORS
from minijenkin.queue.client import ClaimedJob
from minijenkin.secrets import decrypt_secret
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

FETCH_ATTEMPTS = 3
FETCH_RETRY_SECONDS = 0.2


class SecretsUnavailableError(Exception):
    """The job cannot get what it reads before its steps (its secrets, its needed jobs' outputs).

    `reason` is the message, or None when the lease is gone.
    """

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        super().__init__(reason or "the job's lease is no longer valid")


async def load_job_secrets(pool: AsyncConnectionPool, keyring: Callable[[], Keyring],
                           job: ClaimedJob, log_extra: dict[str, Any]) -> None:
    """Set job.context["secrets"]; raise SecretsUnavailableError when that is impossible.

    `keyring` is called only when the job references a stored secret, so a
    worker whose jobs use none never needs the key.
    """
    job.context["secrets"] = {}
    if job.kind == "plan":
        return
    rows = await fetch_for_attempt(pool, job, "job_secrets", "the job's secrets")
    if not rows:
        return
    values: dict[str, str] = {}
    for row in rows:
        try:
            values[row["name"]] = decrypt_secret(keyring(), row)
        except DecryptionError as exc:
            raise SecretsUnavailableError(f"cannot decrypt secret {row['name']!r}: {exc}") from exc
    job.context["secrets"] = values
    logger.info("job secrets loaded", extra={
        **log_extra, "action": "job_secrets", "job_id": job.job_id, "run_id": job.run_id,
        "secrets": ",".join(sorted(values))})


async def fetch_for_attempt(pool: AsyncConnectionPool, job: ClaimedJob, query: str, what: str,
                            params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the named query with the attempt's job id and lease token (and `params`); retry transient errors.

    Raises SecretsUnavailableError, naming `what` when the database stays
    unavailable, and with no reason when the lease is gone.
    """
    delay = FETCH_RETRY_SECONDS
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(QUERIES[query], {
                    **(params or {}), "job_id": job.job_id, "lease_token": job.lease_token})
                return await cursor.fetchall()
        except psycopg.errors.ObjectNotInPrerequisiteState:
            raise SecretsUnavailableError(None) from None
        except TRANSIENT_ERRORS as exc:
            if attempt == FETCH_ATTEMPTS:
                raise SecretsUnavailableError(
                    f"cannot load {what}: the database is unavailable ({exc})") from exc
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
