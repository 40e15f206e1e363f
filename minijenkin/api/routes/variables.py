"""Configuration variables of a repository (`${{ vars.NAME }}` in pipelines).

PUT /api/repos/{id}/variables/{name}, GET /api/repos/{id}/variables,
DELETE /api/repos/{id}/variables/{name}.
"""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Response

from minijenkin import repos, variables
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess, ReadAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import RowId

router = APIRouter(prefix="/api/repos/{repo_id}/variables", tags=["variables"],
                   responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


@router.put("/{name}", response_model=schemas.Variable,
            responses={201: {"model": schemas.Variable}, 404: {"model": schemas.ErrorBody},
                       422: {"model": schemas.ErrorBody}})
async def set_variable(repo_id: RowId, name: str, body: schemas.VariableSet, response: Response,
                       conn: Conn, _: AdminAccess) -> schemas.Variable:
    """Create or replace a variable; runs planned afterwards read the new value."""
    await repos.get_repo(conn, repo_id)
    row = await variables.set_variable(conn, repo_id=repo_id, name=name, value=body.value)
    response.status_code = 201 if row["created"] else 200
    return schemas.Variable(**{key: value for key, value in row.items() if key != "created"})


@router.get("", response_model=schemas.VariableList, responses={404: {"model": schemas.ErrorBody}})
async def list_variables(repo_id: RowId, conn: Conn, _: ReadAccess) -> schemas.VariableList:
    """List a repository's variables with their values."""
    await repos.get_repo(conn, repo_id)
    return schemas.VariableList(variables=[schemas.Variable(**row)
                                           for row in await variables.list_variables(conn, repo_id)])


@router.delete("/{name}", status_code=204, responses={404: {"model": schemas.ErrorBody}})
async def delete_variable(repo_id: RowId, name: str, conn: Conn, _: AdminAccess) -> Response:
    """Delete a variable; runs planned afterwards read it as an empty string."""
    await repos.get_repo(conn, repo_id)
    await variables.delete_variable(conn, repo_id=repo_id, name=name)
    return Response(status_code=204)
