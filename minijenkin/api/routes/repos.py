"""Repositories: POST/GET /api/repos, GET /api/repos/{id}."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response

from minijenkin import repos
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess, ReadAccess, TriggerAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import RowId

router = APIRouter(prefix="/api/repos", tags=["repositories"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


@router.post("", status_code=201, response_model=schemas.Repo,
             responses={409: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}})
async def create_repo(body: schemas.RepoCreate, request: Request, conn: Conn,
                      _: AdminAccess) -> schemas.Repo:
    """Register a repository that webhooks, polling and triggers can start runs for."""
    row = await repos.create_repo(
        conn, name=body.name, url=body.url, webhook_secret=body.webhook_secret,
        keyring=request.app.state.keyring, default_branch=body.default_branch,
        poll_interval_seconds=body.poll_interval_seconds,
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
async def get_repo(repo_id: RowId, conn: Conn, _: ReadAccess) -> schemas.Repo:
    """Fetch one repository."""
    return schemas.Repo(**await repos.get_repo(conn, repo_id))


@router.patch("/{repo_id}", response_model=schemas.Repo,
              responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}})
async def update_repo(repo_id: RowId, body: schemas.RepoUpdate, request: Request, conn: Conn,
                      _: AdminAccess) -> schemas.Repo:
    """Change the webhook secret, default branch or polling interval; omitted fields stay."""
    row = await repos.update_repo(
        conn, repo_id=repo_id, keyring=request.app.state.keyring,
        webhook_secret=body.webhook_secret, default_branch=body.default_branch,
        poll_interval_seconds=body.poll_interval_seconds, disable_polling=body.disable_polling,
    )
    return schemas.Repo(**row)


@router.post("/{repo_id}/poll", status_code=202,
             responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}})
async def poll_repo(repo_id: RowId, conn: Conn, _: TriggerAccess) -> Response:
    """Poll the repository at the next tick of the polling loop instead of waiting its interval."""
    await repos.request_poll(conn, repo_id)
    return Response(status_code=202)
