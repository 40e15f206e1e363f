"""The step after a claim that gives a job its secrets.

The worker calls mj_job_secrets_v1 (fenced by the attempt's lease token) for
the encrypted secrets the job's spec references, decrypts them with the
keyring and puts them in `job.context["secrets"]` (name to value), where the
expression engine resolves `${{ secrets.NAME }}` and the log shipper masks
the values. Plan jobs get no secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from minijenkin.crypto import DecryptionError, Keyring
from minijenkin.queue.client import ClaimedJob
from minijenkin.secrets import decrypt_secret
from minijenkin.worker.attempt_inputs import AttemptInputUnavailableError, fetch_for_attempt

logger = logging.getLogger(__name__)


async def load_job_secrets(pool: AsyncConnectionPool, keyring: Callable[[], Keyring],
                           job: ClaimedJob, log_extra: dict[str, Any]) -> None:
    """Set job.context["secrets"]; raise AttemptInputUnavailableError when that is impossible.

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
            raise AttemptInputUnavailableError(f"cannot decrypt secret {row['name']!r}: {exc}") from exc
    job.context["secrets"] = values
    logger.info("job secrets loaded", extra={
        **log_extra, "action": "job_secrets", "job_id": job.job_id, "run_id": job.run_id,
        "secrets": ",".join(sorted(values))})
