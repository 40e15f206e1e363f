"""Deployment environments: settings, lock holders, queues, history and approvals."""

from __future__ import annotations

from typing import Any

import psycopg

from minijenkin.db import translate_errors
from minijenkin.errors import ConflictError, NotFoundError
from minijenkin.secrets import validate_environment
from minijenkin.sql import QUERIES

MAX_ENVIRONMENT_CHARS = 255


async def list_environments(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Read every environment with its lock holder, queue counts and lock failures, by name."""
    cursor = await conn.execute(QUERIES["deploy_environment_list"])
    return list(await cursor.fetchall())


async def get_environment(conn: psycopg.AsyncConnection, name: str) -> dict[str, Any]:
    """Read one environment; raise NotFoundError when no deploy or setting has created it."""
    cursor = await conn.execute(QUERIES["deploy_environment_get"], {"name": name})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"environment {name!r} not found", field="name")
    return row


async def put_environment(conn: psycopg.AsyncConnection, *, name: str,
                          requires_approval: bool) -> dict[str, Any]:
    """Create or update an environment's settings; return the environment.

    Raises InvalidInputError for a name that no job's environment can match.
    """
    validate_environment(name, field="name")
    with translate_errors():
        await conn.execute(QUERIES["deploy_environment_put"], {
            "name": name, "requires_approval": requires_approval})
    return await get_environment(conn, name)


async def environment_queue(conn: psycopg.AsyncConnection, name: str) -> list[dict[str, Any]]:
    """Jobs of the environment that are queued, waiting for its lock or awaiting approval."""
    cursor = await conn.execute(QUERIES["deploy_queue"], {"name": name})
    return list(await cursor.fetchall())


async def deployment_history(conn: psycopg.AsyncConnection, name: str, *,
                             before_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Deployments of the environment, newest first, with ids below `before_id`."""
    cursor = await conn.execute(QUERIES["deploy_history"], {
        "name": name, "before": before_id, "limit": limit})
    return list(await cursor.fetchall())


async def decide(conn: psycopg.AsyncConnection, job_id: int, *, approve: bool, by: str) -> str:
    """Approve or reject a job that awaits approval; return 'approved' or 'rejected'.

    Raises NotFoundError for an unknown job and ConflictError when the job
    is not awaiting approval.
    """
    with translate_errors():
        cursor = await conn.execute(QUERIES["deploy_decide"], {
            "job_id": job_id, "approve": approve, "by": by})
        row = await cursor.fetchone()
    assert row is not None
    outcome = str(row["outcome"])
    if outcome not in ("approved", "rejected"):
        raise ConflictError(f"job {job_id} is not awaiting approval: its status is {outcome!r}",
                            field="job_id")
    return outcome
