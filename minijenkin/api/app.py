"""The FastAPI application and its lifespan (pool, maintenance loops)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from minijenkin import __version__
from minijenkin.api.errors import install_error_handlers
from minijenkin.api.routes import health, hooks, jobs, repos, runs, search
from minijenkin.config import Settings
from minijenkin.db import create_pool
from minijenkin.logs.live import LogHub
from minijenkin.maintenance import run_maintenance

logger = logging.getLogger(__name__)

API_POOL_MIN = 2
API_POOL_MAX = 20


def create_app(settings: Settings, conninfo: str, *, maintenance: bool = True) -> FastAPI:
    """Build the API. With `maintenance`, this process also takes part in the leader-elected loops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_pool(conninfo, application_name="minijenkin-api",
                           min_size=API_POOL_MIN, max_size=API_POOL_MAX)
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.settings = settings
        app.state.log_hub = LogHub(conninfo)
        await app.state.log_hub.start()
        background: asyncio.Task[None] | None = None
        if maintenance:
            background = asyncio.create_task(run_maintenance(pool, settings), name="maintenance")
        logger.info("API started", extra={"action": "api_start", "version": __version__})
        try:
            yield
        finally:
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await app.state.log_hub.close()
            await pool.close()
            logger.info("API stopped", extra={"action": "api_stop"})

    app = FastAPI(
        title="Mini-Jenkin",
        version=__version__,
        summary="CI/CD orchestrator whose only infrastructure is PostgreSQL.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, hooks, repos, runs, jobs, search):
        app.include_router(module.router)
    return app
