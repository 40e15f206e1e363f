"""The job page: status, attempts and the log viewer, which opens at the log's tail.

The page embeds the last TAIL_LINES lines of the attempt, already rendered
to escaped HTML, and the attempt's highest seq. The viewer (static/logview.js)
then scrolls virtually over the seq range: it requests from
/api/jobs/{id}/logs the windows the reader scrolls to and follows new lines over Server-Sent
Events, so a 1,000,000-line log is never rendered or downloaded at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from minijenkin import runs
from minijenkin.api.params import RowId
from minijenkin.errors import NotFoundError
from minijenkin.logs import store
from minijenkin.logs.render import HtmlRenderer
from minijenkin.sql import QUERIES
from minijenkin.web.deps import Conn, PagePrincipal, PageRoute, page_context
from minijenkin.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TAIL_LINES = 200


@router.get("/jobs/{job_id}")
async def job_page(
    job_id: RowId,
    request: Request,
    conn: Conn,
    principal: PagePrincipal,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """A job with its attempts and the log of one attempt (the latest by default)."""
    job = await runs.get_job(conn, job_id)
    number = attempt or job["attempt"]
    if number > max(job["attempt"], 0):
        raise NotFoundError(f"job {job_id} has no attempt {number}")

    tail: list[dict[str, Any]] = []
    last_seq = 0
    attempt_finished = job["status"] not in runs.ACTIVE_STATUSES
    if number >= 1:
        info = await store.attempt_info(conn, job_id, number)
        attempt_finished = info.finished
        tail = await store.read_tail(conn, job_id=job_id, attempt=number, day=info.day,
                                     limit=TAIL_LINES)
        last_seq = tail[-1]["seq"] if tail else 0
    renderer = HtmlRenderer()
    lines = [{"seq": line["seq"], "stream": line["stream"], "html": renderer.line_to_html(line["text"])}
             for line in tail]

    cursor = await conn.execute(QUERIES["run_get"], {"run_id": job["run_id"]})
    run = await cursor.fetchone()
    return render("job.html", {
        **page_context(request, principal, section="runs", title=f"{job['name']} · job #{job_id}"),
        "job": job,
        "run": run,
        "attempt": number,
        "attempt_finished": attempt_finished,
        "viewer": {"job_id": job_id, "attempt": number, "last_seq": last_seq, "lines": lines,
                   "finished": attempt_finished, "active": job["status"] in runs.ACTIVE_STATUSES},
        "now": dt.datetime.now(dt.UTC),
    })
