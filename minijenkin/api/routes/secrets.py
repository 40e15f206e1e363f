"""Secrets of a repository and its environments: names only, values never leave.

PUT /api/repos/{id}/secrets/{name}, GET /api/repos/{id}/secrets,
DELETE /api/repos/{id}/secrets/{name}.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response

from minijenkin import repos, secrets
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import RowId

router = APIRouter(prefix="/api/repos/{repo_id}/secrets", tags=["secrets"],
                   responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
EnvironmentQuery = Annotated[str | None, Query(
    min_length=1, max_length=255, description="Environment; omit for a repository secret.")]


@router.put("/{name}", response_model=schemas.Secret,
            responses={201: {"model": schemas.Secret}, 404: {"model": schemas.ErrorBody},
                       422: {"model": schemas.ErrorBody}})
async def set_secret(repo_id: RowId, name: str, body: schemas.SecretSet, request: Request,
                     response: Response, conn: Conn, _: AdminAccess) -> schemas.Secret:
    """Create or replace a secret; the response never contains the value."""
    await repos.get_repo(conn, repo_id)
    row = await secrets.set_secret(conn, request.app.state.keyring, repo_id=repo_id, name=name,
                                   value=body.value, environment=body.environment)
    response.status_code = 201 if row["created"] else 200
    return schemas.Secret(**{key: value for key, value in row.items() if key != "created"})


@router.get("", response_model=schemas.SecretList, responses={404: {"model": schemas.ErrorBody}})
async def list_secrets(repo_id: RowId, conn: Conn, _: AdminAccess) -> schemas.SecretList:
    """List the names of a repository's secrets and their environments (no values)."""
    await repos.get_repo(conn, repo_id)
    return schemas.SecretList(secrets=[schemas.Secret(**row)
                                       for row in await secrets.list_secrets(conn, repo_id)])


@router.delete("/{name}", status_code=204, responses={404: {"model": schemas.ErrorBody}})
async def delete_secret(repo_id: RowId, name: str, conn: Conn, _: AdminAccess,
                        environment: EnvironmentQuery = None) -> Response:
    """Delete a secret; jobs that start afterwards no longer get it."""
    await secrets.delete_secret(conn, repo_id=repo_id, name=name, environment=environment)
    return Response(status_code=204)
