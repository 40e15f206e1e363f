"""API tokens: POST/GET /api/tokens, DELETE /api/tokens/{id} (admin only)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Response

from minijenkin import auth
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import RowId

router = APIRouter(prefix="/api/tokens", tags=["tokens"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


@router.post("", status_code=201, response_model=schemas.TokenCreated,
             responses={422: {"model": schemas.ErrorBody}})
async def create_token(body: schemas.TokenCreate, conn: Conn, _: AdminAccess) -> schemas.TokenCreated:
    """Create a token; its value is in this response only (only a hash is stored)."""
    expires_at = None
    if body.expires_days is not None:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=body.expires_days)
    value, row = await auth.create_token(conn, name=body.name, scope=body.scope,
                                         expires_at=expires_at)
    return schemas.TokenCreated(**row, token=value)


@router.get("", response_model=schemas.TokenList)
async def list_tokens(conn: Conn, _: AdminAccess) -> schemas.TokenList:
    """List tokens, newest first, without their values."""
    return schemas.TokenList(tokens=[schemas.Token(**row) for row in await auth.list_tokens(conn)])


@router.delete("/{token_id}", status_code=204, responses={404: {"model": schemas.ErrorBody}})
async def revoke_token(token_id: RowId, conn: Conn, _: AdminAccess) -> Response:
    """Revoke a token; requests that use it fail from now on."""
    await auth.revoke_token(conn, token_id)
    return Response(status_code=204)
