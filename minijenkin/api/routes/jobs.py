"""Jobs: details, cancel and logs."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query

from minijenkin import runs
from minijenkin.api import convert, schemas
from minijenkin.api.auth import ReadAccess, TriggerAccess
from minijenkin.api.deps import db_connection
from minijenkin.logs import store

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
LOG_PAGE_MAX = 10_000


@router.get("/{job_id}", response_model=schemas.Job,
            responses={404: {"model": schemas.ErrorBody}})
async def get_job(job_id: int, conn: Conn, _: ReadAccess) -> schemas.Job:
    """Fetch a job with all of its attempts."""
    return convert.job_detail(await runs.get_job(conn, job_id))


@router.post("/{job_id}/cancel", response_model=schemas.CancelResult,
             responses={404: {"model": schemas.ErrorBody}})
async def cancel_job(job_id: int, conn: Conn, _: TriggerAccess) -> schemas.CancelResult:
    """Cancel one job; the jobs that need it are skipped."""
    outcome = await runs.cancel_job(conn, job_id, reason="cancelled by a user")
    return schemas.CancelResult(outcome=outcome)


@router.get("/{job_id}/logs", response_model=schemas.LogPage,
            responses={404: {"model": schemas.ErrorBody}})
async def get_logs(
    job_id: int,
    conn: Conn,
    _: ReadAccess,
    attempt: Annotated[int | None, Query(ge=1, description="Default: the latest attempt.")] = None,
    after: Annotated[int, Query(ge=0, description="Return lines with a larger seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX)] = 1000,
) -> schemas.LogPage:
    """Read log lines of one attempt, in order, a page at a time."""
    job = await runs.get_job(conn, job_id)
    number = attempt or job["attempt"]
    if number < 1:
        return schemas.LogPage(job_id=job_id, attempt=0, lines=[], next_after=after,
                               complete=not _is_active(job["status"]))
    info = await store.attempt_info(conn, job_id, number)
    lines = await store.read_lines(conn, job_id=job_id, attempt=number, day=info.day,
                                   after=after, limit=limit)
    next_after = lines[-1]["seq"] if lines else after
    return schemas.LogPage(
        job_id=job_id, attempt=number, lines=[schemas.LogLine(**line) for line in lines],
        next_after=next_after, complete=info.finished and len(lines) < limit,
    )


def _is_active(status: str) -> bool:
    return status in runs.ACTIVE_STATUSES


