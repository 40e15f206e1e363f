"""Runs: listing, details, cancel and re-run."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query, Request

from minijenkin import repos, runs, triggers
from minijenkin.api import convert, schemas
from minijenkin.api.auth import ReadAccess, TriggerAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import BIGINT_MAX, RowId

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
RUN_PAGE_MAX = 200


@router.get("", response_model=schemas.RunList, responses={404: {"model": schemas.ErrorBody}})
async def list_runs(
    conn: Conn,
    _: ReadAccess,
    repo: Annotated[str | None, Query(max_length=200, description="Repository name.")] = None,
    status: Annotated[schemas.RunStatus | None, Query()] = None,
    event: Annotated[schemas.RunEvent | None, Query()] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    before: Annotated[int | None, Query(
        ge=1, le=BIGINT_MAX, description="Return runs with a smaller id.")] = None,
    limit: Annotated[int, Query(ge=1, le=RUN_PAGE_MAX)] = 50,
) -> schemas.RunList:
    """List runs, newest first; 404 when `repo` names no repository."""
    ref = f"refs/heads/{branch}" if branch else None
    rows = await runs.list_runs(conn, repo=repo, status=status, event=event, ref=ref,
                                before_id=before, limit=limit)
    if not rows and repo is not None:
        # An empty page for a misspelt name would read as "no runs yet".
        await repos.get_repo_by_name(conn, repo)
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return schemas.RunList(runs=[convert.run_summary(row) for row in rows], next_before=next_before)


@router.post("", status_code=201, response_model=schemas.Run,
             responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody},
                        502: {"model": schemas.ErrorBody}})
async def create_run(body: schemas.RunCreate, request: Request, conn: Conn,
                     principal: TriggerAccess) -> schemas.Run:
    """Start a manual run of a branch or tag (its current head, or `commit`) with inputs."""
    run = await triggers.create_manual_run(
        conn, repo_name=body.repo, ref=body.ref, commit=body.commit, inputs=body.inputs,
        actor=principal.name, source="api", data_dir=request.app.state.settings.data_dir,
    )
    return convert.run_detail(run)


@router.get("/{run_id}", response_model=schemas.Run,
            responses={404: {"model": schemas.ErrorBody}})
async def get_run(run_id: RowId, conn: Conn, _: ReadAccess) -> schemas.Run:
    """Fetch a run with its jobs."""
    return convert.run_detail(await runs.get_run(conn, run_id))


@router.post("/{run_id}/cancel", response_model=schemas.CancelResult,
             responses={404: {"model": schemas.ErrorBody}})
async def cancel_run(run_id: RowId, conn: Conn, _: TriggerAccess) -> schemas.CancelResult:
    """Cancel the run's jobs that have not ended; running steps are stopped by their worker."""
    affected = await runs.cancel_run(conn, run_id, reason="cancelled by a user")
    return schemas.CancelResult(affected=affected)


@router.post("/{run_id}/rerun", response_model=schemas.RerunResult,
             responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}})
async def rerun_run(
    run_id: RowId,
    conn: Conn,
    _: TriggerAccess,
    failed_only: Annotated[bool, Query(description="Only jobs that did not succeed, "
                                                   "and the jobs that need them.")] = False,
) -> schemas.RerunResult:
    """Queue new attempts for the jobs of a finished run."""
    return schemas.RerunResult(reset=await runs.rerun_run(conn, run_id, failed_only=failed_only))
