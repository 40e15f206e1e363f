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
    return [
        {"seq": row["seq"], "stream": STREAM_NAMES.get(row["stream"], "stdout"), "ts": row["ts"],
         "text": row["line"]}
        for row in await cursor.fetchall()
    ]
