"""Liveness and readiness: GET /healthz."""

from __future__ import annotations

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from minijenkin import __version__
from minijenkin.api import schemas

router = APIRouter(tags=["health"])

HEALTH_DB_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", response_model=schemas.Health,
            responses={503: {"model": schemas.Health}})
async def healthz(request: Request) -> JSONResponse:
    """Report whether the API can reach the database (503 when it cannot)."""
    database = "ok"
    try:
        async with request.app.state.pool.connection(timeout=HEALTH_DB_TIMEOUT_SECONDS) as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout):
        database = "unavailable"
    body = schemas.Health(
        status="ok" if database == "ok" else "degraded", database=database, version=__version__
    )
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)
