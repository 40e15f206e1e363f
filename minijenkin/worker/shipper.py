"""Shipping log lines from a worker to PostgreSQL in batches.

Lines from every job of the worker process go into one buffer. A background
task sends the buffer FLUSH_INTERVAL_SECONDS after its oldest line arrived,
or sooner when it contains BATCH_MAX_BYTES. A batch of at least
DIRECT_COPY_MIN_BYTES whose attempts all hold their lease, and which starts
after their last stored lines, is COPY-ed straight into job_logs (mj_logs_direct_check_v1, then
mj_logs_direct_finish_v1) when the session's role may insert into job_logs (the restricted
worker role may not); any other goes by COPY into a per-session staging
table followed by mj_logs_flush_v1(), all in one transaction. A failed batch
is sent again after a reconnect; the (job, attempt, seq) primary key makes
the resend harmless, so every line is stored exactly once.

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
from dataclasses import dataclass

import psycopg
import psycopg.errors

from minijenkin.db import TRANSIENT_ERRORS, connect_async
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

# The batching delay is most of a line's way to a live viewer, so it is kept
# far below the 50 ms that viewers should wait at most. While a batch is in
# flight, new lines collect for the next one, so a chatty job still ships
# large batches. The cost is up to 100 small transactions per second and
# worker process for a job that prints a line every few milliseconds.
FLUSH_INTERVAL_SECONDS = 0.01
BATCH_MAX_BYTES = 4 * 1024 * 1024
# Smaller batches take the staged path even when the direct one is open to
# them: the direct path's check costs one more round trip, which would add
# to a live viewer's delay, and writing a few lines twice costs little.
DIRECT_COPY_MIN_BYTES = 64 * 1024
PENDING_MAX_BYTES = 32 * 1024 * 1024
RECONNECT_DELAY_MAX_SECONDS = 2.0

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def utc_timestamp() -> str:
    """The current time in a form COPY reads as timestamptz."""
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class _Segment:
    """Consecutive buffered lines of one attempt.

    Each row is COPY text of the columns seq, stream, ts and line, ending in
    a newline. The columns in front of them depend on the path a batch
    takes: job id, attempt and either the lease token (staging table) or
    the partition day (job_logs).
    """

    job_id: int
    attempt: int
    lease_token: uuid.UUID
    first_seq: int
    last_seq: int
    rows: list[str]
    size: int

    def copy_text(self, column: object) -> str:
        """Prefix every row with job id, attempt and `column`, as COPY text."""
        prefix = f"{self.job_id}\t{self.attempt}\t{column}\t"
        # A row's text has its newlines escaped, so every real newline ends
        # a row and is followed by the next row's prefix.
        text = "".join(self.rows)
        return prefix + text[:-1].replace("\n", "\n" + prefix) + "\n"


@dataclass
class _AttemptRange:
    job_id: int
    attempt: int
    lease_token: uuid.UUID
    first_seq: int
    last_seq: int
    lines: int


def _attempt_ranges(segments: list[_Segment]) -> list[_AttemptRange]:
    ranges: dict[tuple[int, int], _AttemptRange] = {}
    for segment in segments:
        key = (segment.job_id, segment.attempt)
        found = ranges.get(key)
        if found is None:
            ranges[key] = _AttemptRange(segment.job_id, segment.attempt, segment.lease_token,
                                        segment.first_seq, segment.last_seq, len(segment.rows))
        else:
            found.first_seq = min(found.first_seq, segment.first_seq)
            found.last_seq = max(found.last_seq, segment.last_seq)
            found.lines += len(segment.rows)
    return list(ranges.values())


class LogShipper:
    def __init__(self, conninfo: str, *, application_name: str = "minijenkin-worker-logs") -> None:
        self.conninfo = conninfo
        self.application_name = application_name
        self._segments: list[_Segment] = []
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
        self._direct_allowed = False
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
        # One translate() for the whole chunk: lines never contain NUL (the
        # splitter replaces it), so NUL safely separates them meanwhile.
        texts = "\x00".join([line[3] for line in lines]).translate(_COPY_ESCAPES).split("\x00")
        rows = [f"{seq}\t{stream}\t{ts}\t{text}\n"
                for (seq, stream, ts, _), text in zip(lines, texts, strict=True)]
        size = sum(map(len, rows))
        segment = _Segment(job_id=job_id, attempt=attempt, lease_token=lease_token,
                           first_seq=lines[0][0], last_seq=lines[-1][0], rows=rows, size=size)
        async with self._changed:
            while self._pending_bytes > PENDING_MAX_BYTES:
                self._flush_requested.set()
                await self._changed.wait()
            self._segments.append(segment)
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
                segments = self._take_batch()
            if segments:
                await self._send(segments)
                async with self._changed:
                    self._committed += sum(len(segment.rows) for segment in segments)
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

    def _take_batch(self) -> list[_Segment]:
        """Take whole segments up to BATCH_MAX_BYTES, splitting the one that crosses it."""
        size = 0
        batch: list[_Segment] = []
        while self._segments:
            segment = self._segments[0]
            if size + segment.size <= BATCH_MAX_BYTES or not batch and len(segment.rows) == 1:
                batch.append(self._segments.pop(0))
                size += segment.size
                continue
            # Cut the segment after the last row that fits (at least one row
            # when the batch is still empty).
            part_size = 0
            count = 0
            for row in segment.rows:
                if (batch or count) and size + part_size + len(row) > BATCH_MAX_BYTES:
                    break
                part_size += len(row)
                count += 1
            if count:
                batch.append(_Segment(
                    job_id=segment.job_id, attempt=segment.attempt,
                    lease_token=segment.lease_token, first_seq=segment.first_seq,
                    last_seq=segment.first_seq + count - 1, rows=segment.rows[:count],
                    size=part_size))
                del segment.rows[:count]
                segment.first_seq += count
                segment.size -= part_size
                size += part_size
            break
        self._pending_bytes -= size
        self._first_pending_at = time.monotonic() if self._segments else None
        return batch

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await connect_async(self.conninfo, application_name=self.application_name)
            await self._conn.execute(QUERIES["log_batch_create"])
            await self._conn.execute(QUERIES["log_batch_share"])
            # A worker connected as the restricted worker role may not write
            # job_logs itself, so its batches always take the staged path.
            cursor = await self._conn.execute(QUERIES["log_direct_allowed"])
            row = await cursor.fetchone()
            self._direct_allowed = bool(row and row["allowed"])
        return self._conn

    async def _send(self, segments: list[_Segment]) -> None:
        lines = sum(len(segment.rows) for segment in segments)
        delay = 0.05
        failures = 0
        while True:
            try:
                conn = await self._connection()
                results = None
                if (self._direct_allowed
                        and sum(segment.size for segment in segments) >= DIRECT_COPY_MIN_BYTES):
                    results = await self._store_direct(conn, segments)
                if results is None:
                    results = await self._store_staged(conn, segments)
                stored = sum(row["stored"] for row in results)
                self.lines_stored += stored
                self.lines_rejected += lines - stored
                if failures:
                    logger.info("log shipping resumed", extra={
                        "action": "log_ship_resume", "lines": lines, "failures": failures})
                return
            except TRANSIENT_ERRORS as exc:
                failures += 1
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                if failures == 1 or failures % 20 == 0:
                    logger.warning("log batch not sent; retrying", extra={
                        "action": "log_ship_retry", "lines": lines, "failures": failures,
                        "error": str(exc).strip()})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
            except psycopg.Error as exc:
                # Not a connection problem: sending the same rows again would
                # fail the same way, so they are dropped and counted.
                logger.error("log batch rejected by the database; lines dropped", extra={
                    "action": "log_ship_error", "lines": lines, "error": str(exc).strip()})
                self.lines_rejected += lines
                if self._conn is not None and not self._conn.closed:
                    await self._conn.close()
                self._conn = None
                return

    async def _store_direct(self, conn: psycopg.AsyncConnection,
                            segments: list[_Segment]) -> list[dict[str, int]] | None:
        """COPY the batch straight into job_logs; None when it must take the staged path."""
        ranges = _attempt_ranges(segments)
        try:
            async with conn.transaction():
                cursor = await conn.execute(QUERIES["log_direct_check"], {
                    "job_ids": [item.job_id for item in ranges],
                    "attempts": [item.attempt for item in ranges],
                    "lease_tokens": [item.lease_token for item in ranges],
                    "first_seqs": [item.first_seq for item in ranges]})
                checks = await cursor.fetchall()
                if not all(row["direct"] for row in checks):
                    return None
                days = {(row["job_id"], row["attempt"]): row["day"] for row in checks}

                payload = "".join(segment.copy_text(days[segment.job_id, segment.attempt])
                                  for segment in segments).encode("utf-8")
                async with conn.cursor().copy(QUERIES["log_direct_copy"]) as copy:
                    await copy.write(payload)

                cursor = await conn.execute(QUERIES["log_direct_finish"], {
                    "job_ids": [item.job_id for item in ranges],
                    "attempts": [item.attempt for item in ranges],
                    "days": [days[item.job_id, item.attempt] for item in ranges],
                    "first_seqs": [item.first_seq for item in ranges],
                    "last_seqs": [item.last_seq for item in ranges],
                    "counts": [item.lines for item in ranges]})
                return await cursor.fetchall()
        except psycopg.errors.UniqueViolation:
            # Another session stored some of these lines after the check;
            # the staged path skips them.
            return None

    async def _store_staged(self, conn: psycopg.AsyncConnection,
                            segments: list[_Segment]) -> list[dict[str, int]]:
        """COPY the batch into the staging table; mj_logs_flush_v1() stores what is valid and new."""
        payload = "".join(segment.copy_text(segment.lease_token)
                          for segment in segments).encode("utf-8")
        async with conn.transaction():
            async with conn.cursor().copy(QUERIES["log_batch_copy"]) as copy:
                await copy.write(payload)
            cursor = await conn.execute(QUERIES["log_batch_flush"])
            return await cursor.fetchall()
