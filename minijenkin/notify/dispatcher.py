"""The outbox dispatcher: claims due deliveries and sends them over HTTP.

Any number of dispatchers may run, in API processes or as `minijenkin
dispatcher`: each claims rows with FOR UPDATE SKIP LOCKED under a lease,
so a row is sent by one dispatcher at a time. A dispatcher that dies
mid-delivery leaves its rows to be claimed again once their lease ends, so
the receiver may get the same Idempotency-Key twice.

Outcomes: 2xx is delivered. 408, 409, 425, 429, 5xx, time-outs and network
errors are retried with exponential backoff and jitter, or after the
receiver's Retry-After. Other statuses are permanent failures (redirects are
not followed, because they would carry tokens to another address). A row
still failing when its retry schedule ends goes to the dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import logging
import os
import signal
import socket
import time
from typing import Any, Literal

import httpx
import psycopg
from psycopg import sql as pg_sql
from psycopg_pool import AsyncConnectionPool

from minijenkin.config import Settings
from minijenkin.crypto import DecryptionError, Keyring, load_keyring
from minijenkin.db import TRANSIENT_ERRORS, connect_async, create_pool
from minijenkin.notify import OUTBOX_CHANNEL
from minijenkin.notify.render import Endpoints, OutboundRequest, RenderError, build_request
from minijenkin.notify.targets import secret_purpose, url_purpose
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "failed"]

# Client errors that may succeed when sent again; every other 4xx is permanent.
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 425, 429})
# Bytes of a response body read (and characters kept) for the delivery record.
RESPONSE_READ_MAX_BYTES = 4096
ERROR_TEXT_MAX = 1000
# A claim lease covers the request (cut off after the timeout) plus the time
# to record its outcome: twice the timeout plus this margin.
LEASE_MARGIN_SECONDS = 5.0
LISTEN_CHECK_SECONDS = 5.0
# Pooled connections one dispatcher uses at once: in an API process it
# shares the pool with requests, which must not wait behind a burst of
# delivery reports.
DB_CONNECTIONS_MAX = 2
RECONNECT_DELAY_MIN_SECONDS = 0.2
RECONNECT_DELAY_MAX_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    error: str | None
    retry_after_seconds: float | None = None


def classify(status_code: int) -> Outcome:
    """Map an HTTP status to delivered, retry or failed (permanent)."""
    if 200 <= status_code < 300:
        return "delivered"
    if status_code in RETRYABLE_CLIENT_STATUSES or status_code >= 500:
        return "retry"
    return "failed"


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    # RFC 9110 delay-seconds is ASCII digits only. str.isdigit() also accepts
    # characters such as "²" that float() rejects, and a receiver's header
    # must not crash the delivery.
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - current).total_seconds())


def error_text(text: str, secrets: list[str]) -> str:
    """Prepare an error for the delivery record: secrets redacted, NULs replaced, length capped.

    PostgreSQL text cannot hold NUL characters, which a receiver's body may contain.
    """
    for value in secrets:
        if value:
            text = text.replace(value, "[redacted]")
    return text.replace("\x00", "\ufffd")[:ERROR_TEXT_MAX]


class Dispatcher:
    """Delivers outbox rows until `stop()`; one per process is enough."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings, conninfo: str, *,
                 keyring: Keyring | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.conninfo = conninfo
        self._keyring = keyring
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = settings.notify_concurrency
        # Slots one target may hold, so that a receiver that hangs until the
        # timeout leaves three quarters of them to the other targets.
        self.per_target = max(1, self.concurrency // 4)
        self.timeout = settings.notify_timeout_seconds
        self.lease_seconds = 2 * self.timeout + LEASE_MARGIN_SECONDS
        self.endpoints = Endpoints(settings.base_url, settings.github_api_url,
                                   settings.gitlab_api_url)
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.saturated = False
        self.client: httpx.AsyncClient | None = None
        self.db_slots = asyncio.Semaphore(DB_CONNECTIONS_MAX)

    @property
    def keyring(self) -> Keyring:
        # Loaded on first use: a process that never delivers never creates a key file.
        if self._keyring is None:
            self._keyring = load_keyring(self.settings.secret_key, self.settings.data_dir)
        return self._keyring

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"dispatcher": self.name}

    def stop(self) -> None:
        """Stop claiming; `run()` returns once the deliveries in flight have ended."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout),
                                        follow_redirects=False)
        listener = asyncio.create_task(self._listen_loop(), name="outbox-listen")
        logger.info("dispatcher started", extra={
            **self.log_extra, "action": "dispatcher_start", "concurrency": self.concurrency})
        try:
            await self._claim_loop()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._drain()
            await self.client.aclose()
            logger.info("dispatcher stopped", extra={**self.log_extra, "action": "dispatcher_stop"})

    async def _drain(self) -> None:
        # Requests end within the timeout; recording their outcome may take
        # a little longer. Whatever is still running after that is cancelled
        # and delivered again once its lease ends.
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=self.timeout + LEASE_MARGIN_SECONDS)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- claiming -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        delay = RECONNECT_DELAY_MIN_SECONDS
        while not self.stopping.is_set():
            self.wake.clear()
            free = self.concurrency - len(self.tasks)
            claimed: list[dict[str, Any]] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                    delay = RECONNECT_DELAY_MIN_SECONDS
                except TRANSIENT_ERRORS as exc:
                    logger.warning("outbox claim failed; retrying", extra={
                        **self.log_extra, "action": "outbox_claim_retry", "error": str(exc)})
                    await self._sleep_unless_stopping(delay)
                    delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
                    continue
                except Exception:
                    logger.exception("outbox claim failed unexpectedly; retrying", extra={
                        **self.log_extra, "action": "outbox_claim_error"})
                    await self._sleep_unless_stopping(RECONNECT_DELAY_MAX_SECONDS)
                    continue
                for row in claimed:
                    self._start(row)
            # Every free slot was filled, so more rows may be due: claim again
            # as soon as a slot frees up.
            self.saturated = free > 0 and len(claimed) == free
            if self.saturated and len(self.tasks) < self.concurrency:
                continue
            await self._sleep_unless_woken(self.settings.notify_poll_seconds)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        async with self.db_slots, self.pool.connection() as conn:
            cursor = await conn.execute(QUERIES["outbox_claim"], {
                "dispatcher": self.name, "limit": limit, "lease_seconds": self.lease_seconds,
                "horizon_seconds": self.settings.notify_dead_letter_seconds,
                "per_target": self.per_target,
            })
            return await cursor.fetchall()

    def _start(self, row: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(row), name=f"delivery-{row['id']}")
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.saturated:
            self.wake.set()

    async def _sleep_unless_woken(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    # -- delivering -----------------------------------------------------------

    async def _deliver(self, row: dict[str, Any]) -> None:
        extra = {**self.log_extra, "delivery_id": row["id"], "target_id": row["target_id"],
                 "run_id": row["run_id"], "event": row["event"], "kind": row["kind"],
                 "attempt": row["attempts"]}
        try:
            await self._attempt(row, extra)
        except Exception:
            # The row stays claimed and is tried again when its lease ends.
            logger.exception("delivery failed unexpectedly", extra={
                **extra, "action": "delivery_error"})

    async def _attempt(self, row: dict[str, Any], extra: dict[str, Any]) -> None:
        try:
            url, secret = self._decrypt(row)
        except DecryptionError as exc:
            # Another dispatcher may hold the key; the schedule gives time to fix the setting.
            logger.error("cannot decrypt a notification target", extra={
                **extra, "action": "delivery_decrypt_error", "error": str(exc)})
            result = AttemptResult("retry", None, f"cannot decrypt the target: {exc}")
        else:
            try:
                request = build_request(
                    delivery_id=row["id"], kind=row["kind"], event=row["event"],
                    payload=row["payload"], idempotency_key=str(row["idempotency_key"]),
                    options=row["options"], repo_name=row["repo_name"], url=url, secret=secret,
                    endpoints=self.endpoints)
            except RenderError as exc:
                result = AttemptResult("failed", None, str(exc))
            except Exception as exc:
                # A payload this code cannot render will not render on a retry either.
                logger.exception("cannot build a notification", extra={
                    **extra, "action": "delivery_render_error"})
                result = AttemptResult("failed", None, f"cannot build the notification: "
                                                       f"{type(exc).__name__}: {exc}")
            else:
                result = await self._send(request, [value for value in (url, secret) if value])

        state = await self._report(row, result, extra)
        self._log_outcome(state, result, extra)

    def _decrypt(self, row: dict[str, Any]) -> tuple[str | None, str | None]:
        url = secret = None
        if row["url_encrypted"] is not None:
            url = self.keyring.decrypt(row["url_encrypted"], purpose=url_purpose(row["target_id"]))
        if row["secret_encrypted"] is not None:
            secret = self.keyring.decrypt(row["secret_encrypted"],
                                          purpose=secret_purpose(row["target_id"]))
        return url, secret

    async def _send(self, request: OutboundRequest, secrets: list[str]) -> AttemptResult:
        assert self.client is not None
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream(request.method, request.url, headers=request.headers,
                                              content=request.body) as response:
                    excerpt = await _read_excerpt(response)
        except TimeoutError:
            return AttemptResult("retry", None, f"timed out after {self.timeout:g} s")
        except (httpx.InvalidURL, UnicodeError) as exc:
            # idna raises UnicodeError subclasses for invalid host names; targets
            # stored before their URLs were checked with httpx may have one.
            return AttemptResult("failed", None, error_text(f"invalid URL: {exc}", secrets))
        except httpx.HTTPError as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return AttemptResult("retry", None, error_text(text, secrets))

        status = response.status_code
        outcome = classify(status)
        if outcome == "delivered":
            return AttemptResult(outcome, status, None)
        error = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
        error = error_text(error, secrets)
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        retry_after = None
        if outcome == "retry":
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return AttemptResult(outcome, status, error, retry_after)

    async def _report(self, row: dict[str, Any], result: AttemptResult,
                      extra: dict[str, Any]) -> str | None:
        delay = RECONNECT_DELAY_MIN_SECONDS
        deadline = time.monotonic() + self.lease_seconds
        while True:
            try:
                async with self.db_slots, self.pool.connection() as conn:
                    cursor = await conn.execute(QUERIES["outbox_report"], {
                        "id": row["id"], "lease_token": row["lease_token"],
                        "outcome": result.outcome, "status_code": result.status_code,
                        "error": result.error, "retry_after_seconds": result.retry_after_seconds,
                        "backoff_base_seconds": self.settings.notify_backoff_seconds,
                        "backoff_max_seconds": self.settings.notify_backoff_max_seconds,
                        "horizon_seconds": self.settings.notify_dead_letter_seconds,
                    })
                    reported = await cursor.fetchone()
                assert reported is not None
                return str(reported["state"])
            except TRANSIENT_ERRORS as exc:
                if time.monotonic() > deadline:
                    logger.error("cannot record a delivery's outcome; it is sent again after "
                                 "its lease ends", extra={
                                     **extra, "action": "delivery_report_error", "error": str(exc)})
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)

    def _log_outcome(self, state: str | None, result: AttemptResult, extra: dict[str, Any]) -> None:
        extra = {**extra, "status_code": result.status_code}
        if state == "delivered":
            logger.info("notification delivered", extra={**extra, "action": "delivery_sent"})
        elif state == "pending":
            logger.warning("notification not delivered; retrying later", extra={
                **extra, "action": "delivery_retry", "error": result.error,
                "retry_after": result.retry_after_seconds})
        elif state == "dead":
            logger.error("notification moved to the dead letter", extra={
                **extra, "action": "delivery_dead", "error": result.error})
        elif state == "stale":
            # mj_outbox_report_v1 returns 'stale' for a deleted row too.
            logger.warning("delivery outcome ignored: the delivery was deleted with its target, "
                           "or another dispatcher took over the row after this one's lease ended",
                           extra={**extra, "action": "delivery_stale"})

    # -- notifications --------------------------------------------------------

    async def _listen_loop(self) -> None:
        delay = RECONNECT_DELAY_MIN_SECONDS
        while True:
            conn: psycopg.AsyncConnection | None = None
            try:
                conn = await connect_async(self.conninfo,
                                           application_name="minijenkin-dispatcher-listen")
                await conn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(OUTBOX_CHANNEL)))
                delay = RECONNECT_DELAY_MIN_SECONDS
                # Rows enqueued while this dispatcher was not listening are due: claim now.
                self.wake.set()
                while True:
                    async for _ in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                        self.wake.set()
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=LISTEN_CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except (*TRANSIENT_ERRORS, TimeoutError) as exc:
                logger.warning("outbox LISTEN connection lost; reconnecting", extra={
                    **self.log_extra, "action": "dispatcher_listen_reconnect",
                    "error": str(exc) or "timeout"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()


async def _read_excerpt(response: httpx.Response) -> str:
    """Read the start of the response body without loading a huge body whole."""
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= RESPONSE_READ_MAX_BYTES:
            break
    return bytes(data[:RESPONSE_READ_MAX_BYTES]).decode("utf-8", "replace").strip()


async def run_dispatcher(settings: Settings, conninfo: str) -> None:
    """Run one dispatcher with its own pool until SIGTERM or SIGINT (`minijenkin dispatcher`)."""
    pool = create_pool(conninfo, application_name="minijenkin-dispatcher", min_size=1,
                       max_size=4)
    await pool.open(wait=False)
    dispatcher = Dispatcher(pool, settings, conninfo)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop)
    try:
        await dispatcher.run()
    finally:
        await pool.close()
