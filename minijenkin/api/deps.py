"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
from fastapi import Request
from psycopg_pool import PoolTimeout

from minijenkin.errors import DatabaseUnavailableError

POOL_WAIT_SECONDS = 10.0


async def db_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection in autocommit mode for the duration of the request."""
    async with pooled_connection(request) as conn:
        yield conn


@contextlib.asynccontextmanager
async def pooled_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection for one block, for handlers that must not hold one throughout
    (a streaming response would keep it for as long as the client stays)."""
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
