"""Server-Sent Events that tell dashboard pages when to refresh what they show.

A page subscribes to one run (run and job pages) or to every run (the runs
list). Each state change of a job sends `NOTIFY mj_runs_v1 '<run id>'`; the
API process's LogHub wakes the subscribers, and this stream sends them a
`changed` event. The page then fetches itself again and swaps the parts
that are marked live. Bursts of changes are coalesced into one event per
COALESCE_SECONDS, so a run of 500 jobs finishing at once costs a page a
few refreshes, not 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from minijenkin.api.auth import StreamReadAccess
from minijenkin.api.deps import pooled_connection
from minijenkin.logs.live import VIEWER_RECHECK_SECONDS, LogHub, Viewer
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

COALESCE_SECONDS = 0.5
PING_SECONDS = 15


async def _newest_run_id(request: Request) -> int:
    async with pooled_connection(request) as conn:
        cursor = await conn.execute(QUERIES["dashboard_newest_run"])
        row = await cursor.fetchone()
    return int(row["id"]) if row else 0


async def _woken(viewer: Viewer, recheck_seconds: float) -> bool:
    """Wait for a notification about the viewer's run; False when `recheck_seconds` passed first."""
    try:
        await asyncio.wait_for(viewer.changed.wait(), timeout=recheck_seconds)
    except TimeoutError:
        return False
    return True


@router.get("/ui/events")
async def page_events(
    request: Request,
    _: StreamReadAccess,
    run: Annotated[int | None, Query(ge=1, description="Only changes of this run.")] = None,
) -> EventSourceResponse:
    """Stream a `changed` event whenever the run (or, without `run`, any run) changes."""
    hub: LogHub = request.app.state.log_hub

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with hub.subscribe_runs(run) as viewer:
            # Runs are created without a notification on mj_runs_v1, so the
            # runs list also looks for a new newest run at every recheck.
            newest = await _newest_run_id(request) if run is None else 0
            while not hub.closed:
                woken = await _woken(viewer, VIEWER_RECHECK_SECONDS)
                if hub.closed:
                    return
                if not woken and run is None:
                    latest = await _newest_run_id(request)
                    woken = latest != newest
                    newest = latest
                if not woken:
                    continue
                await asyncio.sleep(COALESCE_SECONDS)
                viewer.changed.clear()
                if run is None:
                    newest = await _newest_run_id(request)
                yield ServerSentEvent(data=str(run or newest), event="changed")

    return EventSourceResponse(stream(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})
