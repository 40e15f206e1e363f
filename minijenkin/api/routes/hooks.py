"""Forge webhooks: POST /hooks/{forge}.

The body is read raw (the signature covers the exact bytes) and capped in
size before it is read whole.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from minijenkin import webhooks
from minijenkin.api import schemas
from minijenkin.api.deps import db_connection
from minijenkin.forges.registry import FORGES, get_forge

router = APIRouter(prefix="/hooks", tags=["webhooks"])

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
WEBHOOK_BODY_MAX_BYTES = 25 * 1024 * 1024


class BodyTooLargeError(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, raising BodyTooLargeError past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


_RESPONSES = {
    200: {"model": schemas.RunCreated, "description": "Ping, or a replayed delivery."},
    201: {"model": schemas.RunCreated, "description": "A run was created."},
    202: {"model": schemas.RunCreated, "description": "Valid delivery that starts no run."},
    400: {"model": schemas.ErrorBody}, 401: {"model": schemas.ErrorBody},
    404: {"model": schemas.ErrorBody}, 413: {"model": schemas.ErrorBody},
}


@router.post("/{forge}", responses=_RESPONSES, response_model=None)
async def receive_webhook(forge: str, request: Request, conn: Conn) -> JSONResponse:
    """Receive a forge webhook: github, gitlab, gitea, forgejo or bitbucket.

    GitHub signs with X-Hub-Signature-256, GitLab sends X-Gitlab-Token, Gitea
    and Forgejo sign with X-Gitea-Signature / X-Forgejo-Signature, Bitbucket
    Cloud with X-Hub-Signature.
    """
    spec = get_forge(forge)
    if spec is None:
        return JSONResponse({"detail": f"unknown forge {forge[:40]!r}: use {', '.join(FORGES)}"},
                            status_code=404)
    try:
        body = await read_body(request, WEBHOOK_BODY_MAX_BYTES)
    except BodyTooLargeError:
        return JSONResponse(
            {"detail": f"request body exceeds {WEBHOOK_BODY_MAX_BYTES} bytes"}, status_code=413
        )
    headers = {name.lower(): value for name, value in request.headers.items()}
    result = await webhooks.handle_delivery(conn, spec, headers=headers, body=body,
                                            keyring=request.app.state.keyring)
    return JSONResponse(result.body, status_code=result.status_code)
