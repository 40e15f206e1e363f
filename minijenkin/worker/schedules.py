"""The step after claiming a plan job that reads the repository's cron schedules.

Only the plan job of the newest head of the default branch does this (see
mj_schedules_sync_wanted_v1). It fetches the commit into the worker's
mirror, which the plan itself needs next anyway, reads `on.schedule` from
the files a run of that commit uses (`.minijenkin.yml`, or else the GitHub
Actions workflow files) and stores the schedules with
mj_schedules_replace_v1, fenced by the lease token. A problem never fails
the plan: an invalid `on.schedule` is stored as the repository's
schedules_error (the plan reports the file's problems itself), and a
database or git failure leaves the request for the next head.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from minijenkin.db import TRANSIENT_ERRORS
from minijenkin.errors import PipelineError
from minijenkin.queue.client import ClaimedJob
from minijenkin.schedules import read_schedules
from minijenkin.sql import QUERIES
from minijenkin.worker.git import GitError, Mirror, pipeline_files

logger = logging.getLogger(__name__)


async def sync_schedules(pool: AsyncConnectionPool, data_dir: Path, job: ClaimedJob,
                         log_extra: dict[str, Any]) -> None:
    """Store the schedules of the plan job's commit when it is the default branch's newest head."""
    if job.kind != "plan":
        return
    extra = {**log_extra, "job_id": job.job_id, "run_id": job.run_id, "repo_id": job.repo["id"]}
    try:
        await _sync(pool, data_dir, job, extra)
    except Exception as exc:
        # The plan must run whatever happens here; the next head retries.
        logger.exception("reading the schedules failed", extra={
            **extra, "action": "schedule_read_error", "error": f"{type(exc).__name__}: {exc}"})


async def _sync(pool: AsyncConnectionPool, data_dir: Path, job: ClaimedJob,
                extra: dict[str, Any]) -> None:
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(QUERIES["schedule_sync_wanted"], {
                "job_id": job.job_id, "lease_token": job.lease_token})
            row = await cursor.fetchone()
        if not row or not row["wanted"]:
            return

        commit = job.run["commit"]
        specs: list[dict[str, str]] = []
        error: str | None = None
        try:
            mirror = Mirror(data_dir, job.repo["id"], job.repo["url"])
            await mirror.ensure_commit(commit)
            # The files a run of this commit uses: `.minijenkin.yml`, or else
            # every GitHub Actions workflow file.
            unique: dict[tuple[str, str], dict[str, str]] = {}
            for file in await pipeline_files(mirror, commit):
                for spec in read_schedules(file.data, file=file.path):
                    unique[(spec.cron, spec.timezone)] = {"cron": spec.cron,
                                                          "timezone": spec.timezone}
            specs = list(unique.values())
        except PipelineError as exc:
            error = str(exc)
        except GitError as exc:
            logger.warning("cannot read the schedules: the commit cannot be fetched",
                           extra={**extra, "action": "schedule_read_error", "error": str(exc)})
            return

        async with pool.connection() as conn:
            cursor = await conn.execute(QUERIES["schedule_replace"], {
                "job_id": job.job_id, "lease_token": job.lease_token, "commit_sha": commit,
                "schedules": Jsonb(specs), "error": error})
            stored = await cursor.fetchone()
    except TRANSIENT_ERRORS as exc:
        logger.warning("cannot store the schedules; the next head of the default branch retries",
                       extra={**extra, "action": "schedule_read_error", "error": str(exc)})
        return

    outcome = stored["outcome"] if stored else "stale"
    if error is not None:
        logger.warning("invalid schedules in the pipeline file", extra={
            **extra, "action": "schedule_read_error", "error": error})
    elif outcome == "stored":
        logger.info("schedules read", extra={
            **extra, "action": "schedule_read", "commit": commit,
            "schedules": ";".join(f"{spec['cron']} {spec['timezone']}" for spec in specs) or "-"})
