"""The FastAPI application and its lifespan (pool, maintenance loops)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from minijenkin import __version__
from minijenkin.api.errors import describe_common_responses, install_error_handlers
from minijenkin.api.limits import RequestLimits
from minijenkin.api.routes import (
    docs,
    environments,
    health,
    hooks,
    jobs,
    metrics,
    notifications,
    repos,
    runs,
    schedules,
    search,
    secrets,
    tokens,
    variables,
    webhook_deliveries,
)
from minijenkin.config import Settings
from minijenkin.crypto import Keyring, load_keyring
from minijenkin.db import create_pool
from minijenkin.logs.live import LogHub
from minijenkin.maintenance import run_maintenance
from minijenkin.notify.dispatcher import Dispatcher
from minijenkin.secrets import encrypt_legacy_webhook_secrets
from minijenkin.web.site import install_dashboard

logger = logging.getLogger(__name__)

API_POOL_MIN = 2
API_POOL_MAX = 20
LEGACY_ENCRYPT_WAIT_SECONDS = 5.0
# Longest wait for each part of the API to stop. A part still running then
# is left behind, so that a stuck part cannot keep the process from exiting
# (and `minijenkin up` from stopping its workers and database). The
# maintenance loops used to reach this limit when cancelled during
# start-up. run_loop now stops, and its comment explains the cause.
SHUTDOWN_STEP_SECONDS = 10.0


async def _wait_stopped(name: str, task: asyncio.Future[None]) -> None:
    """Wait up to SHUTDOWN_STEP_SECONDS for a stopping part of the API; log if it does not end."""
    done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_STEP_SECONDS)
    if not done:
        logger.warning("part of the API did not stop in time; leaving it", extra={
            "action": "api_stop_timeout", "part": name, "timeout_seconds": SHUTDOWN_STEP_SECONDS})
    elif not task.cancelled() and task.exception() is not None:
        logger.error("part of the API failed while stopping", extra={
            "action": "api_stop_error", "part": name, "error": repr(task.exception())})


def create_app(settings: Settings, conninfo: str, *, maintenance: bool = True) -> FastAPI:
    """Build the API. With `maintenance`, this process also takes part in the leader-elected loops.

    Raises ConfigurationError when MINIJENKIN_SECRET_KEY is invalid.
    """
    keyring = load_keyring(settings.secret_key, settings.data_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_pool(conninfo, application_name="minijenkin-api",
                           min_size=API_POOL_MIN, max_size=API_POOL_MAX)
        await pool.open(wait=False)
        app.state.pool = pool
        app.state.settings = settings
        app.state.keyring = keyring
        await _encrypt_legacy_secrets(pool, keyring)
        app.state.log_hub = LogHub(conninfo)
        await app.state.log_hub.start()
        background: asyncio.Task[None] | None = None
        dispatcher: Dispatcher | None = None
        dispatching: asyncio.Task[None] | None = None
        if maintenance:
            background = asyncio.create_task(run_maintenance(pool, settings), name="maintenance")
            # Not leader-elected: dispatchers share the outbox through SKIP LOCKED.
            dispatcher = Dispatcher(pool, settings, conninfo)
            dispatching = asyncio.create_task(dispatcher.run(), name="outbox-dispatcher")
        logger.info("API started", extra={"action": "api_start", "version": __version__})
        try:
            yield
        finally:
            if dispatcher is not None and dispatching is not None:
                dispatcher.stop()
                await _wait_stopped("outbox dispatcher", dispatching)
            if background is not None:
                background.cancel()
                await _wait_stopped("maintenance loops", background)
            await _wait_stopped("log LISTEN connection",
                                asyncio.ensure_future(app.state.log_hub.close()))
            await pool.close(timeout=SHUTDOWN_STEP_SECONDS)
            logger.info("API stopped", extra={"action": "api_stop"})

    app = FastAPI(
        title="Mini-Jenkin",
        version=__version__,
        summary="CI/CD orchestrator whose only infrastructure is PostgreSQL.",
        lifespan=lifespan,
        # Both of FastAPI's pages load their scripts from a CDN; routes/docs.py
        # serves Swagger UI itself.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(RequestLimits, header_max_bytes=settings.http_header_max_bytes,
                       body_max_bytes=settings.http_body_max_bytes,
                       body_timeout_seconds=settings.http_body_timeout_seconds)
    for module in (docs, health, hooks, repos, runs, jobs, notifications, metrics, search):
        app.include_router(module.router)
    for module in (secrets, variables, tokens, webhook_deliveries, schedules, environments):
        app.include_router(module.router)
    install_dashboard(app)
    describe_common_responses(app)
    return app


async def _encrypt_legacy_secrets(pool: AsyncConnectionPool, keyring: Keyring) -> None:
    """Encrypt webhook secrets stored in clear by releases before encryption existed.

    A failure (the database is not up yet) only delays this: the webhook
    handler encrypts such a secret on its first use.
    """
    try:
        async with pool.connection(timeout=LEGACY_ENCRYPT_WAIT_SECONDS) as conn:
            await encrypt_legacy_webhook_secrets(conn, keyring)
    except (psycopg.Error, PoolTimeout) as exc:
        logger.warning("could not encrypt legacy webhook secrets at start-up", extra={
            "action": "webhook_secrets_encrypt_error", "error": str(exc)})
