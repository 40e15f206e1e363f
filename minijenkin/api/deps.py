"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
from fastapi import Request

from minijenkin.db import pooled

POOL_WAIT_SECONDS = 10.0


async def db_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection in autocommit mode for the duration of the request."""
    async with pooled_connection(request) as conn:
        yield conn


@contextlib.asynccontextmanager
async def pooled_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection for one block, for handlers that must not hold one throughout
    (a streaming response would keep it for as long as the client stays)."""
    async with pooled(request.app.state.pool, wait_seconds=POOL_WAIT_SECONDS) as conn:
        yield conn
