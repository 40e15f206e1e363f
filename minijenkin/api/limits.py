"""Request limits enforced before a request reaches a route.

A pure ASGI middleware, so that it sees the request before FastAPI reads or
parses anything:

- headers larger than `http_header_max_bytes` (names and values together)
  or more than HEADER_COUNT_MAX of them: 431;
- a body larger than `http_body_max_bytes` (webhooks: WEBHOOK_BODY_MAX_BYTES),
  whether declared by Content-Length or counted while it streams in: 413;
- a query parameter or path with a NUL character, which no PostgreSQL
  text value can hold: 422 naming the parameter;
- a body that has not arrived whole `http_body_timeout_seconds` after the
  route started reading it: 408.

Each error body is JSON with a `detail` that names the limit. Page sizes
(`limit` parameters) are capped by each route's own validation (422).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minijenkin.api.routes.hooks import WEBHOOK_BODY_MAX_BYTES

logger = logging.getLogger(__name__)

HEADER_COUNT_MAX = 100
WEBHOOK_PATH_PREFIX = "/hooks/"


class RequestLimits:
    def __init__(self, app: ASGIApp, *, header_max_bytes: int, body_max_bytes: int,
                 body_timeout_seconds: float) -> None:
        self.app = app
        self.header_max_bytes = header_max_bytes
        self.body_max_bytes = body_max_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers: list[tuple[bytes, bytes]] = scope["headers"]
        header_bytes = sum(len(name) + len(value) for name, value in headers)
        if len(headers) > HEADER_COUNT_MAX:
            await _reject(scope, send, 431, f"too many request headers: {len(headers)}, "
                                             f"the maximum is {HEADER_COUNT_MAX}")
            return
        if header_bytes > self.header_max_bytes:
            await _reject(scope, send, 431, f"request headers total {header_bytes} bytes, "
                                             f"the maximum is {self.header_max_bytes}")
            return

        problem = _nul_problem(scope)
        if problem is not None:
            await _reject(scope, send, 422, problem, field=problem.split(":")[0])
            return

        limit = self.body_max_bytes
        if scope["path"].startswith(WEBHOOK_PATH_PREFIX):
            limit = max(limit, WEBHOOK_BODY_MAX_BYTES)
        declared = _content_length(headers)
        if declared is not None and declared > limit:
            await _reject(scope, send, 413, f"request body of {declared} bytes exceeds the "
                                             f"maximum of {limit} bytes")
            return

        await self.app(scope, self._limited_receive(receive, limit), send)

    def _limited_receive(self, receive: Receive, limit: int) -> Receive:
        received = 0
        body_done = False
        deadline: float | None = None

        async def limited() -> Message:
            nonlocal received, body_done, deadline
            if body_done:
                # Later calls only wait for the client to disconnect (live log
                # streams wait for hours), so they have no deadline.
                return await receive()
            # One deadline for the whole body, so a client that sends a byte
            # now and then cannot hold the request open either.
            now = asyncio.get_running_loop().time()
            if deadline is None:
                deadline = now + self.body_timeout_seconds
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - now))
            except TimeoutError:
                raise HTTPException(408, f"request body not received within "
                                         f"{self.body_timeout_seconds:g} seconds") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"request body exceeds the maximum of {limit} bytes")
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        return limited


def _nul_problem(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path: must not contain NUL characters"
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                 keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"{name.replace(chr(0), '') or 'query'}: must not contain NUL characters"
    return None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _reject(scope: Scope, send: Send, status: int, detail: str, *,
                  field: str | None = None) -> None:
    logger.info("request rejected by a limit", extra={
        "action": "http_limit", "status": status, "path": scope["path"][:200], "error": detail})
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["field"] = field
    payload = json.dumps(body).encode("utf-8")
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
