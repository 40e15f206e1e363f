"""Reading stored log lines of one job attempt, in sequence order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin.errors import NotFoundError
from minijenkin.sql import QUERIES

STREAM_NAMES = {1: "stdout", 2: "stderr", 3: "system"}
STREAM_CODES = {name: code for code, name in STREAM_NAMES.items()}
# seq is a PostgreSQL integer.
SEQ_MAX = 2**31 - 1


@dataclass(frozen=True)
class AttemptInfo:
    day: dt.date
    finished: bool
    status: str
    exit_code: int | None
    reason: str | None


async def attempt_info(conn: psycopg.AsyncConnection, job_id: int, attempt: int) -> AttemptInfo:
    """Partition day and completion of an attempt; NotFoundError when it never started."""
    cursor = await conn.execute(QUERIES["log_attempt_day"], {"job_id": job_id, "attempt": attempt})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"job {job_id} has no attempt {attempt}")
    return AttemptInfo(day=row["day"], finished=row["status"] != "running", status=row["status"],
                       exit_code=row["exit_code"], reason=row["reason"])


async def read_lines(
    conn: psycopg.AsyncConnection,
    *,
    job_id: int,
    attempt: int,
    day: dt.date,
    after: int = 0,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Lines with seq > `after`, at most `limit`, as {seq, stream, ts, text}."""
    cursor = await conn.execute(QUERIES["log_lines_after"], {
        "job_id": job_id, "attempt": attempt, "day": day, "after": after, "limit": limit,
    })
    return [_line(row) for row in await cursor.fetchall()]


def _line(row: dict[str, Any]) -> dict[str, Any]:
    return {"seq": row["seq"], "stream": STREAM_NAMES.get(row["stream"], "stdout"), "ts": row["ts"],
            "text": row["line"]}


async def read_tail(
    conn: psycopg.AsyncConnection,
    *,
    job_id: int,
    attempt: int,
    day: dt.date,
    limit: int,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """The last `limit` lines with seq < `before` (every line when None), in order."""
    cursor = await conn.execute(QUERIES["log_lines_tail"], {
        "job_id": job_id, "attempt": attempt, "day": day,
        "before": SEQ_MAX + 1 if before is None else before, "limit": limit,
    })
    return [_line(row) for row in await cursor.fetchall()]


async def last_seq(conn: psycopg.AsyncConnection, *, job_id: int, attempt: int, day: dt.date) -> int:
    """The highest stored seq of an attempt, 0 when it has no line yet."""
    cursor = await conn.execute(QUERIES["log_last_seq"],
                                {"job_id": job_id, "attempt": attempt, "day": day})
    row = await cursor.fetchone()
    return int(row["last_seq"]) if row else 0


# Lines one find request reads at most. A request over a whole 1,000,000-line
# log took about 400 ms on the benchmark machine (2 cores, PostgreSQL 15). A
# window of this size kept each request near 100 ms there, and the caller
# continues from `continue_from`.
FIND_WINDOW_LINES = 200_000


async def find_line(
    conn: psycopg.AsyncConnection,
    *,
    job_id: int,
    attempt: int,
    day: dt.date,
    needle: str,
    start: int,
    backwards: bool = False,
) -> tuple[int | None, int | None]:
    """Find the nearest line after `start` (before it when `backwards`) containing
    `needle`, ignoring case, among the next FIND_WINDOW_LINES seqs.

    Returns (seq, continue_from): seq is None when the window has no match,
    and continue_from is then the seq to search from next, or None when the
    log has no lines beyond the window.
    """
    if backwards:
        # Searching up from the end starts at the last stored line, not at
        # SEQ_MAX, so that the first window contains the log's tail.
        if start == SEQ_MAX:
            start = await last_seq(conn, job_id=job_id, attempt=attempt, day=day) + 1
        until = max(start - FIND_WINDOW_LINES, 0)
        cursor = await conn.execute(QUERIES["log_find_previous"], {
            "job_id": job_id, "attempt": attempt, "day": day, "before": start, "until": until,
            "needle": needle})
    else:
        until = min(start + FIND_WINDOW_LINES, SEQ_MAX)
        cursor = await conn.execute(QUERIES["log_find_next"], {
            "job_id": job_id, "attempt": attempt, "day": day, "after": start, "until": until,
            "needle": needle})
    row = await cursor.fetchone()
    if row is not None and row["seq"] is not None:
        return int(row["seq"]), None
    return None, (until if row is not None and row["more"] else None)
