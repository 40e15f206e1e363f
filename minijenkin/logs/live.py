"""Live log streaming: one LISTEN connection per API process, fanned out to viewers.

The log flush sends `NOTIFY mj_logs_v1 'job_id:attempt:last_seq'` after each
batch, and every change of a job's state sends `NOTIFY mj_runs_v1 'run_id'`.
The hub owns the process's only LISTEN connection and wakes the viewers of
the job or run named in a notification. Viewers then read the new lines
from job_logs themselves: notifications carry ids, never log text.

A viewer also re-reads on its own every VIEWER_RECHECK_SECONDS, and the hub
wakes every viewer after reconnecting. A notification lost while the LISTEN
connection was down therefore delays lines by at most that interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pg_sql
from psycopg_pool import AsyncConnectionPool

from minijenkin.db import TRANSIENT_ERRORS, connect_async, pooled
from minijenkin.errors import NotFoundError
from minijenkin.logs import store
from minijenkin.runs import ACTIVE_STATUSES
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

LOG_CHANNEL = "mj_logs_v1"
RUN_CHANNEL = "mj_runs_v1"
# A viewer re-reads this often without a notification (a safety net for
# notifications lost during a reconnect), and more often while the hub has
# no LISTEN connection.
VIEWER_RECHECK_SECONDS = 5.0
VIEWER_RECHECK_DISCONNECTED_SECONDS = 0.5
LISTEN_CHECK_SECONDS = 5.0
RECONNECT_DELAY_MAX_SECONDS = 5.0
STREAM_PAGE_LINES = 1000


@dataclass(eq=False)
class Viewer:
    job_id: int
    run_id: int
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class LogHub:
    """The process's LISTEN connection and the viewers waiting on it."""

    def __init__(self, conninfo: str, *, application_name: str = "minijenkin-api-listen") -> None:
        self.conninfo = conninfo
        self.application_name = application_name
        self._by_job: dict[int, set[Viewer]] = {}
        self._by_run: dict[int, set[Viewer]] = {}
        # Dashboard pages that show every run (the runs list).
        self._any_run: set[Viewer] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.closed = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_loop(), name="log-hub")

    async def close(self) -> None:
        """Stop listening and wake every viewer, so that open streams end."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._wake_all()

    @property
    def viewer_count(self) -> int:
        return sum(len(viewers) for viewers in self._by_job.values())

    @contextlib.contextmanager
    def subscribe(self, job_id: int, run_id: int) -> Iterator[Viewer]:
        viewer = Viewer(job_id, run_id)
        self._by_job.setdefault(job_id, set()).add(viewer)
        self._by_run.setdefault(run_id, set()).add(viewer)
        try:
            yield viewer
        finally:
            for index, key in ((self._by_job, job_id), (self._by_run, run_id)):
                viewers = index.get(key)
                if viewers is not None:
                    viewers.discard(viewer)
                    if not viewers:
                        del index[key]

    @contextlib.contextmanager
    def subscribe_runs(self, run_id: int | None) -> Iterator[Viewer]:
        """A viewer woken by every state change of one run's jobs, or of any run's (None)."""
        viewer = Viewer(0, run_id or 0)
        viewers = self._any_run if run_id is None else self._by_run.setdefault(run_id, set())
        viewers.add(viewer)
        try:
            yield viewer
        finally:
            viewers.discard(viewer)
            if run_id is not None and not viewers:
                self._by_run.pop(run_id, None)

    async def wait(self, viewer: Viewer) -> None:
        """Wait until the viewer's job may have changed, or the recheck interval passed."""
        timeout = VIEWER_RECHECK_SECONDS if self.connected else VIEWER_RECHECK_DISCONNECTED_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(viewer.changed.wait(), timeout=timeout)
        viewer.changed.clear()

    def dispatch(self, channel: str, payload: str) -> None:
        """Wake the viewers a notification concerns; malformed payloads are ignored."""
        key_text = payload.split(":", 1)[0]
        if not key_text.isdigit():
            return
        index = self._by_job if channel == LOG_CHANNEL else self._by_run
        for viewer in index.get(int(key_text), ()):
            viewer.changed.set()
        if channel == RUN_CHANNEL:
            for viewer in self._any_run:
                viewer.changed.set()

    def _wake_all(self) -> None:
        for index in (self._by_job, self._by_run):
            for viewers in index.values():
                for viewer in viewers:
                    viewer.changed.set()
        for viewer in self._any_run:
            viewer.changed.set()

    async def _listen_loop(self) -> None:
        delay = 0.2
        while True:
            conn: psycopg.AsyncConnection | None = None
            try:
                conn = await connect_async(self.conninfo, application_name=self.application_name)
                for channel in (LOG_CHANNEL, RUN_CHANNEL):
                    await conn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
                self.connected = True
                if delay > 0.2:
                    logger.info("log LISTEN connection restored", extra={"action": "log_listen_resume"})
                delay = 0.2
                # Lines stored while the connection was down woke no viewer.
                self._wake_all()
                await self._consume(conn)
            except asyncio.CancelledError:
                raise
            except (*TRANSIENT_ERRORS, TimeoutError) as exc:
                self.connected = False
                logger.warning("log LISTEN connection lost; reconnecting", extra={
                    "action": "log_listen_reconnect", "error": str(exc).strip() or "timeout",
                    "retry_in_seconds": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _consume(self, conn: psycopg.AsyncConnection) -> None:
        while True:
            async for notify in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                self.dispatch(notify.channel, notify.payload)
            # Quiet for a while: prove that the connection still works.
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=LISTEN_CHECK_SECONDS)


@dataclass(frozen=True)
class StreamEvent:
    """One event of a log stream: a line (`kind` "line") or the end of the attempt."""

    kind: str
    data: dict[str, Any]
    seq: int | None = None


async def _job_state(pool: AsyncConnectionPool, job_id: int) -> dict[str, Any]:
    async with pooled(pool) as conn:
        cursor = await conn.execute(QUERIES["log_job_state"], {"job_id": job_id})
        row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return row


async def check_stream(pool: AsyncConnectionPool, *, job_id: int,
                       attempt: int | None) -> dict[str, Any]:
    """Return the job's state; NotFoundError for an unknown job or attempt."""
    job = await _job_state(pool, job_id)
    if attempt is not None and attempt > max(job["attempt"], 0):
        raise NotFoundError(f"job {job_id} has no attempt {attempt}")
    return job


async def stream_attempt(
    pool: AsyncConnectionPool, hub: LogHub, *, job: dict[str, Any], job_id: int,
    attempt: int | None, after: int,
) -> AsyncIterator[list[StreamEvent]]:
    """Yield the lines of one attempt after seq `after` as they are stored, then an "end" event.

    Events come in lists, one per read from the table, so that a fast log
    costs one network write per read rather than one per line.

    `job` is the state `check_stream` returned. Without `attempt`, the job's
    latest attempt is streamed, waiting for the first one to start when the
    job has not run yet. The stream ends without an "end" event when the hub
    closes (the server is stopping).
    """
    with hub.subscribe(job_id, job["run_id"]) as viewer:
        number = attempt
        while number is None:
            if job["attempt"] >= 1:
                number = job["attempt"]
            elif hub.closed:
                return
            elif job["status"] not in ACTIVE_STATUSES:
                # Ended without ever running (cancelled or skipped). A deploy
                # parked in waiting or awaiting_approval is still active.
                yield [StreamEvent("end", {"job_id": job_id, "attempt": 0, "status": job["status"],
                                           "exit_code": None, "reason": job["reason"]})]
                return
            else:
                await hub.wait(viewer)
                job = await _job_state(pool, job_id)

        while True:
            # The attempt's status is read before its lines: every line of a
            # finished attempt was committed before the attempt finished, so
            # lines read after seeing it finished are complete.
            async with pooled(pool) as conn:
                info = await store.attempt_info(conn, job_id, number)
                lines = await store.read_lines(conn, job_id=job_id, attempt=number, day=info.day,
                                               after=after, limit=STREAM_PAGE_LINES)
            events = [
                StreamEvent("line", {**line, "ts": line["ts"].isoformat(), "attempt": number},
                            seq=line["seq"])
                for line in lines
            ]
            if lines:
                after = lines[-1]["seq"]
            if len(lines) == STREAM_PAGE_LINES:
                yield events
                continue
            if info.finished:
                events.append(StreamEvent("end", {
                    "job_id": job_id, "attempt": number, "status": info.status,
                    "exit_code": info.exit_code, "reason": info.reason, "last_seq": after}))
                yield events
                return
            if events:
                yield events
            if hub.closed:
                # The server is stopping: end without the final event, so
                # the client reconnects with Last-Event-ID and resumes.
                return
            await hub.wait(viewer)
