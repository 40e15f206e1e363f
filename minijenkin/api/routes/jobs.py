"""Jobs: details, cancel and logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from minijenkin import runs
from minijenkin.api import convert, schemas
from minijenkin.api.auth import ReadAccess, StreamReadAccess, TriggerAccess
from minijenkin.api.deps import db_connection, pooled_connection
from minijenkin.errors import InvalidInputError
from minijenkin.logs import live, store

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
LOG_PAGE_MAX = 10_000
# Comment lines sent on an idle stream, so that proxies keep it open.
SSE_PING_SECONDS = 15


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


@router.get(
    "/{job_id}/logs", response_model=schemas.LogPage,
    responses={
        200: {"content": {"text/event-stream": {"schema": {
            "type": "string",
            "description": "With `Accept: text/event-stream`: one `line` event per log line "
                           "(id = seq, data = a LogLine as JSON), then one `end` event "
                           "(data = a LogEnd as JSON) once the attempt has finished.",
        }}}},
        404: {"model": schemas.ErrorBody},
    },
)
async def get_logs(
    job_id: int,
    request: Request,
    _: StreamReadAccess,
    attempt: Annotated[int | None, Query(ge=1, description="Default: the latest attempt.")] = None,
    after: Annotated[int, Query(ge=0, description="Return lines with a larger seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX,
                                description="Lines per page (JSON only).")] = 1000,
    last_event_id: Annotated[str | None, Header(
        description="Sent by an SSE client that reconnects: the seq of the last line it got; "
                    "it wins over `after`.")] = None,
) -> schemas.LogPage | EventSourceResponse:
    """Read log lines of one attempt, in order: a JSON page, or a live Server-Sent Events
    stream when the request accepts `text/event-stream`."""
    if "text/event-stream" in request.headers.get("accept", ""):
        start = after
        if last_event_id is not None and last_event_id.strip():
            start = _parse_last_event_id(last_event_id)
        return await _stream_logs(request, job_id, attempt, start)

    async with pooled_connection(request) as conn:
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


def _parse_last_event_id(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 10:
        raise InvalidInputError(
            f"invalid Last-Event-ID {value!r}: expected the seq number of a log line",
            field="Last-Event-ID")
    return int(text)


async def _stream_logs(request: Request, job_id: int, attempt: int | None,
                       after: int) -> EventSourceResponse:
    pool = request.app.state.pool
    hub = request.app.state.log_hub
    # Checked before the response starts, so that an unknown job or attempt
    # is a 404 rather than a stream that ends at once.
    job = await live.check_stream(pool, job_id=job_id, attempt=attempt)

    async def encode() -> AsyncIterator[bytes]:
        async for events in live.stream_attempt(pool, hub, job=job, job_id=job_id,
                                                attempt=attempt, after=after):
            yield b"".join(
                ServerSentEvent(
                    data=json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
                    event=event.kind, id=None if event.seq is None else str(event.seq)).encode()
                for event in events)

    return EventSourceResponse(encode(), ping=SSE_PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


def _is_active(status: str) -> bool:
    return status in runs.ACTIVE_STATUSES
