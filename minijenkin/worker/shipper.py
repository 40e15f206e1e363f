"""Shipping log lines from a worker to PostgreSQL in batches.

Lines from every job of the worker process go into one buffer. A background
task sends the buffer FLUSH_INTERVAL_SECONDS after its oldest line arrived,
or sooner when it contains BATCH_MAX_BYTES, with COPY into a per-session
staging table followed by
mj_logs_flush_v1() in the same transaction. A failed batch is sent again
after a reconnect; the (job, attempt, seq) primary key makes the resend
harmless, so every line is stored exactly once.

Memory stays bounded: `append` waits while more than PENDING_MAX_BYTES are
buffered, which stops the reader of the step's pipe, which in turn blocks
the step when it writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid

import psycopg

from minijenkin.db import connect_async
from minijenkin.errors import DatabaseUnavailableError
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

# The batching delay is most of a line's way to a live viewer, so it is kept
# far below the 50 ms that viewers should wait at most. While a batch is in
# flight, new lines collect for the next one, so a chatty job still ships
# large batches. The cost is up to 100 small transactions per second and
# worker process for a job that prints a line every few milliseconds.
FLUSH_INTERVAL_SECONDS = 0.01
BATCH_MAX_BYTES = 4 * 1024 * 1024
PENDING_MAX_BYTES = 32 * 1024 * 1024
RECONNECT_DELAY_MAX_SECONDS = 2.0

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def utc_timestamp() -> str:
    """The current time in a form COPY reads as timestamptz."""
    return dt.datetime.now(dt.UTC).isoformat()


class LogShipper:
    def __init__(self, conninfo: str, *, application_name: str = "minijenkin-worker-logs") -> None:
        self.conninfo = conninfo
        self.application_name = application_name
        self._rows: list[str] = []
        self._pending_bytes = 0
        self._appended = 0
        self._committed = 0
        self._first_pending_at: float | None = None
        self._changed = asyncio.Condition()
        self._flush_requested = asyncio.Event()
        # Set when a line arrives in an empty buffer, so that the idle sender
        # starts the FLUSH_INTERVAL_SECONDS timer for it.
        self._lines_arrived = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.lines_stored = 0
        self.lines_rejected = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-shipper")

    async def close(self) -> None:
        """Send what is buffered, then stop."""
        await self.flush()
        self._closing = True
        self._flush_requested.set()
        self._lines_arrived.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()

    async def append(
        self, *, job_id: int, attempt: int, lease_token: uuid.UUID, seq: int, stream: int,
        ts: str, text: str,
    ) -> None:
        await self.append_many(job_id=job_id, attempt=attempt, lease_token=lease_token,
                               lines=[(seq, stream, ts, text)])

    async def append_many(
        self, *, job_id: int, attempt: int, lease_token: uuid.UUID,
        lines: list[tuple[int, int, str, str]],
    ) -> None:
        """Buffer lines of one attempt, given as (seq, stream, ts, text).

        One call per chunk a step printed, rather than per line: profiling a
        chatty job showed the per-line lock and row prefix (the lease
        token's str() above all) as the worker's largest costs.
        """
        if not lines:
            return
        prefix = f"{job_id}\t{attempt}\t{lease_token}\t"
        # One translate() for the whole chunk: lines never contain NUL (the
        # splitter replaces it), so NUL safely separates them meanwhile.
        texts = "\x00".join([line[3] for line in lines]).translate(_COPY_ESCAPES).split("\x00")
        rows = [f"{prefix}{seq}\t{stream}\t{ts}\t{text}\n"
                for (seq, stream, ts, _), text in zip(lines, texts, strict=True)]
        size = sum(map(len, rows))
        async with self._changed:
            while self._pending_bytes > PENDING_MAX_BYTES:
                self._flush_requested.set()
                await self._changed.wait()
            self._rows.extend(rows)
            self._pending_bytes += size
            self._appended += len(rows)
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
                self._lines_arrived.set()
            if self._pending_bytes >= BATCH_MAX_BYTES:
                self._flush_requested.set()

    async def flush(self) -> None:
        """Wait until every line appended before this call is committed."""
        target = self._appended
        async with self._changed:
            while self._committed < target:
                self._flush_requested.set()
                await self._changed.wait()

    async def _run(self) -> None:
        while True:
            await self._wait_for_batch()
            async with self._changed:
                rows = self._take_batch()
            if rows:
                await self._send(rows)
                async with self._changed:
                    self._committed += len(rows)
                    self._changed.notify_all()
            elif self._closing:
                return

    async def _wait_for_batch(self) -> None:
        while True:
            if self._closing or self._flush_requested.is_set():
                self._flush_requested.clear()
                return
            if self._first_pending_at is None:
                # Idle: wait for a line (or close) rather than a flush request,
                # which would come only once 4 MiB are buffered.
                self._lines_arrived.clear()
                await self._lines_arrived.wait()
                continue
            remaining = self._first_pending_at + FLUSH_INTERVAL_SECONDS - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._flush_requested.wait(), timeout=remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[str]:
        size = 0
        take = 0
        for row in self._rows:
            if take and size + len(row) > BATCH_MAX_BYTES:
                break
            size += len(row)
            take += 1
        rows = self._rows[:take]
        del self._rows[:take]
        self._pending_bytes -= size
        self._first_pending_at = time.monotonic() if self._rows else None
        return rows

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect_async(self.conninfo, application_name=self.application_name)
            await self._conn.execute(QUERIES["log_batch_create"])
            await self._conn.execute(QUERIES["log_batch_share"])
        return self._conn

    async def _send(self, rows: list[str]) -> None:
        payload = "".join(rows).encode("utf-8")
        delay = 0.05
        failures = 0
        while True:
            try:
                conn = await self._connection()
                async with conn.transaction():
                    async with conn.cursor().copy(QUERIES["log_batch_copy"]) as copy:
                        await copy.write(payload)
                    cursor = await conn.execute(QUERIES["log_batch_flush"])
                    results = await cursor.fetchall()
                stored = sum(row["stored"] for row in results)
                self.lines_stored += stored
                self.lines_rejected += len(rows) - stored
                if failures:
                    logger.info("log shipping resumed", extra={
                        "action": "log_ship_resume", "lines": len(rows), "failures": failures})
                return
            except (psycopg.OperationalError, psycopg.InterfaceError,
                    DatabaseUnavailableError) as exc:
                failures += 1
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                if failures == 1 or failures % 20 == 0:
                    logger.warning("log batch not sent; retrying", extra={
                        "action": "log_ship_retry", "lines": len(rows), "failures": failures,
                        "error": str(exc).strip()})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
            except psycopg.Error as exc:
                # Not a connection problem: sending the same rows again would
                # fail the same way, so they are dropped and counted.
                logger.error("log batch rejected by the database; lines dropped", extra={
                    "action": "log_ship_error", "lines": len(rows), "error": str(exc).strip()})
                self.lines_rejected += len(rows)
                if self._conn is not None and not self._conn.closed:
                    await self._conn.close()
                self._conn = None
                return
