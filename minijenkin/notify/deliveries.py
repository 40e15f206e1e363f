"""Reading and redelivering outbox rows, the outbox figures, and deploy events."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin.db import translate_errors
from minijenkin.errors import NotFoundError
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxStats:
    """Backlog and dead letters of the outbox, for monitoring."""

    pending: int
    delivering: int
    dead: int
    oldest_due_seconds: float

    @property
    def backlog(self) -> int:
        return self.pending + self.delivering


async def list_deliveries(
    conn: psycopg.AsyncConnection,
    *,
    state: str | None = None,
    repo_id: int | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["outbox_list"], {
        "state": state, "repo_id": repo_id, "before_id": before_id, "limit": limit})
    return await cursor.fetchall()


async def get_delivery(conn: psycopg.AsyncConnection, delivery_id: int) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["outbox_get"], {"id": delivery_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"delivery {delivery_id} does not exist")
    return row


async def redeliver(conn: psycopg.AsyncConnection, delivery_id: int) -> dict[str, Any]:
    """Schedule a delivery again now and return it.

    Raises NotFoundError for an unknown id and ConflictError while the row
    is being delivered.
    """
    with translate_errors():
        await conn.execute(QUERIES["outbox_redeliver"], {"id": delivery_id})
    logger.info("delivery scheduled again", extra={
        "action": "delivery_redeliver", "delivery_id": delivery_id})
    return await get_delivery(conn, delivery_id)


async def outbox_stats(conn: psycopg.AsyncConnection) -> OutboxStats:
    """Read the outbox backlog, dead letters and the oldest due row's wait (mj_outbox_stats_v1)."""
    cursor = await conn.execute(QUERIES["outbox_stats"])
    row = await cursor.fetchone()
    assert row is not None
    return OutboxStats(pending=int(row["pending"]), delivering=int(row["delivering"]),
                       dead=int(row["dead"]), oldest_due_seconds=float(row["oldest_due_seconds"]))


async def enqueue_deploy_event(
    conn: psycopg.AsyncConnection, *, job_id: int, environment: str, event: str, status: str,
) -> int:
    """Enqueue deploy.started or deploy.finished for a deploy job; return the rows inserted.

    Call it on the connection and in the transaction that records the
    deploy's change, so the notification exists exactly when the change does.
    """
    with translate_errors():
        cursor = await conn.execute(QUERIES["outbox_enqueue_deploy"], {
            "job_id": job_id, "environment": environment, "event": event, "status": status})
    row = await cursor.fetchone()
    assert row is not None
    return int(row["inserted"])
