"""Storing and reading log lines in tests, through the product's own queries and routes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import httpx
import psycopg
from httpx_sse import connect_sse

from minijenkin.sql import QUERIES

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def store_lines(db: psycopg.Connection, job: dict[str, Any], lines: Iterable[str], *,
                first_seq: int = 1, stream: int = 1) -> list[dict[str, Any]]:
    """Ship `lines` for a claimed job exactly as a worker does: COPY, then mj_logs_flush_v1()."""
    ts = dt.datetime.now(dt.UTC).isoformat()
    rows = "".join(
        f"{job['job_id']}\t{job['attempt']}\t{job['lease_token']}\t{seq}\t{stream}\t{ts}\t"
        f"{text.translate(_COPY_ESCAPES)}\n"
        for seq, text in enumerate(lines, start=first_seq))
    db.execute(QUERIES["log_batch_create"])
    with db.transaction():
        with db.cursor().copy(QUERIES["log_batch_copy"]) as copy:
            copy.write(rows.encode("utf-8"))
        return db.execute(QUERIES["log_batch_flush"]).fetchall()


def stored_lines(db: psycopg.Connection, job_id: int, attempt: int = 1) -> list[tuple[int, str]]:
    rows = db.execute("SELECT seq, line FROM job_logs WHERE job_id = %s AND attempt = %s ORDER BY seq",
                      (job_id, attempt)).fetchall()
    return [(row["seq"], row["line"]) for row in rows]


def read_events(client: httpx.Client, job_id: int, *, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None,
                stop_after: int | None = None) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Read an SSE log stream as (event, id, data) until its `end` event or `stop_after` events."""
    events: list[tuple[str, str | None, dict[str, Any]]] = []
    with connect_sse(client, "GET", f"/api/jobs/{job_id}/logs", params=params or {},
                     headers={"Accept": "text/event-stream", **(headers or {})}) as source:
        assert source.response.status_code == 200, source.response.read()
        for event in source.iter_sse():
            if event.event not in ("line", "end"):
                continue  # keep-alive ping
            events.append((event.event, event.id or None, json.loads(event.data)))
            if event.event == "end" or (stop_after is not None and len(events) >= stop_after):
                break
    return events
