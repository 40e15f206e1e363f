"""Jobs: details, cancel and logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from minijenkin import deploys, runs
from minijenkin.api import convert, schemas
from minijenkin.api.auth import AdminAccess, ReadAccess, StreamReadAccess, TriggerAccess
from minijenkin.api.deps import db_connection, pooled_connection
from minijenkin.api.params import INTEGER_MAX, RowId
from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.logs import live, store
from minijenkin.logs.render import HtmlRenderer, plain_text

router = APIRouter(prefix="/api/jobs", tags=["jobs"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
LOG_PAGE_MAX = 10_000
# Lines read per query while a raw log download streams.
RAW_PAGE_LINES = 10_000
LOG_FIND_MAX_CHARS = 200
# Comment lines sent on an idle stream, so that proxies keep it open.
SSE_PING_SECONDS = 15


@router.get("/{job_id}", response_model=schemas.Job,
            responses={404: {"model": schemas.ErrorBody}})
async def get_job(job_id: RowId, conn: Conn, _: ReadAccess) -> schemas.Job:
    """Fetch a job with all of its attempts."""
    return convert.job_detail(await runs.get_job(conn, job_id))


@router.post("/{job_id}/cancel", response_model=schemas.CancelResult,
             responses={404: {"model": schemas.ErrorBody}})
async def cancel_job(job_id: RowId, conn: Conn, _: TriggerAccess) -> schemas.CancelResult:
    """Cancel one job; the jobs that need it are skipped."""
    outcome = await runs.cancel_job(conn, job_id, reason="cancelled by a user")
    return schemas.CancelResult(outcome=outcome)


@router.post("/{job_id}/approve", response_model=schemas.DecisionResult,
             responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}})
async def approve_job(
    job_id: RowId,
    conn: Conn,
    principal: AdminAccess,
    reject: Annotated[bool, Query(
        description="Reject the deploy instead: it is skipped with the jobs that need it.")] = False,
) -> schemas.DecisionResult:
    """Approve a deploy that awaits approval, or reject it with `?reject=true`.

    An approved deploy is queued again and still waits for its environment's
    lock. Needs an admin token; the decision is recorded under its name.
    """
    outcome = await deploys.decide(conn, job_id, approve=not reject, by=principal.name)
    return schemas.DecisionResult(job_id=job_id, outcome=outcome)  # type: ignore[arg-type]


@router.get(
    "/{job_id}/logs", response_model=schemas.LogPage, response_model_exclude_none=True,
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
    job_id: RowId,
    request: Request,
    _: StreamReadAccess,
    attempt: Annotated[int | None, Query(
        ge=1, le=INTEGER_MAX, description="Default: the latest attempt.")] = None,
    after: Annotated[int, Query(
        ge=0, le=store.SEQ_MAX, description="Return lines with a larger seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE_MAX,
                                description="Lines per page (JSON only).")] = 1000,
    tail: Annotated[int | None, Query(
        ge=1, le=LOG_PAGE_MAX,
        description="Return the last `tail` lines (before `before` when given) instead of the "
                    "lines after `after` (JSON only).")] = None,
    before: Annotated[int | None, Query(
        ge=1, le=store.SEQ_MAX + 1,
        description="With `tail`: only lines with a smaller seq.")] = None,
    html: Annotated[bool, Query(
        description="Add each line rendered as escaped HTML with its ANSI colours (`html`).")] = False,
    last_event_id: Annotated[str | None, Header(
        description="Sent by an SSE client that reconnects: the seq of the last line it got; "
                    "it wins over `after`.")] = None,
) -> schemas.LogPage | EventSourceResponse:
    """Read log lines of one attempt, in order: a JSON page, or a live Server-Sent Events
    stream when the request accepts `text/event-stream`."""
    if before is not None and tail is None:
        raise InvalidInputError("before: only valid together with tail", field="before")
    if "text/event-stream" in request.headers.get("accept", ""):
        start = after
        if last_event_id is not None and last_event_id.strip():
            start = _parse_last_event_id(last_event_id)
        return await _stream_logs(request, job_id, attempt, start, html=html)

    async with pooled_connection(request) as conn:
        job = await runs.get_job(conn, job_id)
        number = attempt or job["attempt"]
        if number < 1:
            return schemas.LogPage(job_id=job_id, attempt=0, lines=[], next_after=after,
                                   last_seq=0, complete=not _is_active(job["status"]))
        info = await store.attempt_info(conn, job_id, number)
        if tail is not None:
            lines = await store.read_tail(conn, job_id=job_id, attempt=number, day=info.day,
                                          limit=tail, before=before)
        else:
            lines = await store.read_lines(conn, job_id=job_id, attempt=number, day=info.day,
                                           after=after, limit=limit)
        last_seq = await store.last_seq(conn, job_id=job_id, attempt=number, day=info.day)
    next_after = lines[-1]["seq"] if lines else after
    if html:
        _add_html(lines)
    return schemas.LogPage(
        job_id=job_id, attempt=number, lines=[schemas.LogLine(**line) for line in lines],
        next_after=next_after, last_seq=last_seq,
        complete=info.finished and next_after >= last_seq,
    )


def _add_html(lines: list[dict[str, Any]]) -> None:
    renderer = HtmlRenderer()
    for line in lines:
        line["html"] = renderer.line_to_html(line["text"])


@router.get(
    "/{job_id}/logs/raw", response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {}},
                     "description": "Every line of the attempt, without escape sequences."},
               404: {"model": schemas.ErrorBody}},
)
async def download_logs(
    job_id: RowId,
    request: Request,
    _: StreamReadAccess,
    attempt: Annotated[int | None, Query(
        ge=1, le=INTEGER_MAX, description="Default: the latest attempt.")] = None,
) -> StreamingResponse:
    """Download the log of one attempt as plain text, one line per stored line.

    ANSI colours and other escape sequences are removed, so the file reads the
    same in an editor and a terminal.
    """
    async with pooled_connection(request) as conn:
        job = await runs.get_job(conn, job_id)
        number = attempt or job["attempt"]
        if number < 1:
            raise NotFoundError(f"job {job_id} has not started, so it has no log yet")
        info = await store.attempt_info(conn, job_id, number)

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        while True:
            # One pooled connection per page, so that a slow reader holds none while
            # it receives the previous page.
            async with pooled_connection(request) as conn:
                page = await store.read_lines(conn, job_id=job_id, attempt=number, day=info.day,
                                              after=after, limit=RAW_PAGE_LINES)
            if not page:
                return
            yield "".join(plain_text(line["text"]) + "\n" for line in page).encode("utf-8")
            after = page[-1]["seq"]

    filename = f"job-{job_id}-attempt-{number}.log"
    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@router.get("/{job_id}/logs/find", response_model=schemas.LogFindResult,
            responses={404: {"model": schemas.ErrorBody}})
async def find_in_logs(
    job_id: RowId,
    request: Request,
    _: ReadAccess,
    q: Annotated[str, Query(min_length=1, max_length=LOG_FIND_MAX_CHARS,
                            description="Text to find, ignoring case.")],
    attempt: Annotated[int | None, Query(
        ge=1, le=INTEGER_MAX, description="Default: the latest attempt.")] = None,
    start: Annotated[int, Query(
        ge=0, le=store.SEQ_MAX, description="Search from this seq, excluded.")] = 0,
    direction: Annotated[Literal["next", "previous"], Query(
        description="`next`: the first match after `start`; `previous`: the last one before it "
                    "(start=0 searches from the end).")] = "next",
) -> schemas.LogFindResult:
    """Find the nearest log line containing a text, for the log viewer's search box."""
    async with pooled_connection(request) as conn:
        job = await runs.get_job(conn, job_id)
        number = attempt or job["attempt"]
        if number < 1:
            return schemas.LogFindResult(job_id=job_id, attempt=0, seq=None)
        info = await store.attempt_info(conn, job_id, number)
        backwards = direction == "previous"
        origin = store.SEQ_MAX if backwards and start == 0 else start
        seq, continue_from = await store.find_line(conn, job_id=job_id, attempt=number,
                                                   day=info.day, needle=q, start=origin,
                                                   backwards=backwards)
    return schemas.LogFindResult(job_id=job_id, attempt=number, seq=seq,
                                 continue_from=continue_from)


def _parse_last_event_id(value: str) -> int:
    text = value.strip()
    # isascii: str.isdigit() also accepts digits such as '²' that int() rejects.
    # The length check keeps int() off strings longer than any seq.
    if (not (text.isascii() and text.isdigit()) or len(text) > len(str(store.SEQ_MAX))
            or int(text) > store.SEQ_MAX):
        raise InvalidInputError(
            f"invalid Last-Event-ID {value!r}: expected the seq number of a log line",
            field="Last-Event-ID")
    return int(text)


async def _stream_logs(request: Request, job_id: int, attempt: int | None,
                       after: int, *, html: bool) -> EventSourceResponse:
    pool = request.app.state.pool
    hub = request.app.state.log_hub
    # Checked before the response starts, so that an unknown job or attempt
    # is a 404 rather than a stream that ends at once.
    job = await live.check_stream(pool, job_id=job_id, attempt=attempt)

    renderer = HtmlRenderer() if html else None

    async def encode() -> AsyncIterator[bytes]:
        async for events in live.stream_attempt(pool, hub, job=job, job_id=job_id,
                                                attempt=attempt, after=after):
            if renderer is not None:
                for event in events:
                    if event.kind == "line":
                        event.data["html"] = renderer.line_to_html(event.data["text"])
            yield b"".join(
                ServerSentEvent(
                    data=json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
                    event=event.kind, id=None if event.seq is None else str(event.seq)).encode()
                for event in events)

    return EventSourceResponse(encode(), ping=SSE_PING_SECONDS,
                               headers={"Cache-Control": "no-store"})


def _is_active(status: str) -> bool:
    return status in runs.ACTIVE_STATUSES
