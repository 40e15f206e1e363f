"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
from fastapi import Request
from psycopg_pool import PoolTimeout

from minijenkin.errors import DatabaseUnavailableError

POOL_WAIT_SECONDS = 10.0


async def db_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection in autocommit mode for the duration of the request."""
    pool = request.app.state.pool
    try:
        conn = await pool.getconn(timeout=POOL_WAIT_SECONDS)
    except PoolTimeout as exc:
        raise DatabaseUnavailableError(
            f"no database connection became free within {POOL_WAIT_SECONDS:g} s"
        ) from exc
    try:
        yield conn
    finally:
        # putconn rolls back or discards a connection left in a bad state.
        await pool.putconn(conn)
