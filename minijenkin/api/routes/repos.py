"""Repositories: POST/GET /api/repos, GET /api/repos/{id}."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query

from minijenkin import repos
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess, ReadAccess
from minijenkin.api.deps import db_connection

router = APIRouter(prefix="/api/repos", tags=["repositories"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


@router.post("", status_code=201, response_model=schemas.Repo,
             responses={409: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}})
async def create_repo(body: schemas.RepoCreate, conn: Conn, _: AdminAccess) -> schemas.Repo:
    """Register a repository that webhooks and triggers can start runs for."""
    row = await repos.create_repo(
        conn, name=body.name, url=body.url, webhook_secret=body.webhook_secret
    )
    return schemas.Repo(**row)


@router.get("", response_model=schemas.RepoList)
async def list_repos(
    conn: Conn,
    _: ReadAccess,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> schemas.RepoList:
    """List registered repositories by name, each with its latest run's status."""
    rows = await repos.list_repos(conn, limit=limit, offset=offset)
    return schemas.RepoList(repos=[schemas.Repo(**row) for row in rows])


@router.get("/{repo_id}", response_model=schemas.Repo,
            responses={404: {"model": schemas.ErrorBody}})
async def get_repo(repo_id: int, conn: Conn, _: ReadAccess) -> schemas.Repo:
    """Fetch one repository."""
    return schemas.Repo(**await repos.get_repo(conn, repo_id))
