"""Deployment environments: GET /api/environments[/{name}], their deployments, settings."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Path, Query

from minijenkin import deploys
from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess, ReadAccess
from minijenkin.api.deps import db_connection

router = APIRouter(prefix="/api/environments", tags=["environments"],
                   responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
EnvironmentName = Annotated[str, Path(min_length=1, max_length=schemas.ENVIRONMENT_NAME_MAX)]
DEPLOYMENT_PAGE_MAX = 200


def environment_model(row: dict[str, Any]) -> schemas.Environment:
    holder = None
    if row["holder_job_id"] is not None:
        holder = schemas.LockHolder(job_id=row["holder_job_id"], run_id=row["holder_run_id"],
                                    job_name=row["holder_job_name"], since=row["holder_since"])
    return schemas.Environment(
        name=row["name"], requires_approval=row["requires_approval"],
        lock_failures=row["lock_failures"], waiting=row["waiting"],
        awaiting_approval=row["awaiting_approval"], holder=holder,
        created_at=row["created_at"], updated_at=row["updated_at"])


@router.get("", response_model=schemas.EnvironmentList)
async def list_environments(conn: Conn, _: ReadAccess) -> schemas.EnvironmentList:
    """List environments with their current lock holder and the number of waiting deploys."""
    rows = await deploys.list_environments(conn)
    return schemas.EnvironmentList(environments=[environment_model(row) for row in rows])


@router.get("/{name}", response_model=schemas.EnvironmentDetail,
            responses={404: {"model": schemas.ErrorBody}})
async def get_environment(name: EnvironmentName, conn: Conn,
                          _: ReadAccess) -> schemas.EnvironmentDetail:
    """Fetch one environment with its lock holder and the deploys queued for it."""
    environment = environment_model(await deploys.get_environment(conn, name))
    queue = await deploys.environment_queue(conn, name)
    return schemas.EnvironmentDetail(**environment.model_dump(),
                                     queue=[schemas.QueuedDeploy(**row) for row in queue])


@router.put("/{name}", response_model=schemas.Environment)
async def put_environment(name: EnvironmentName, body: schemas.EnvironmentSettings, conn: Conn,
                          _: AdminAccess) -> schemas.Environment:
    """Create an environment or change its settings (whether deploys need approval)."""
    row = await deploys.put_environment(conn, name=name, requires_approval=body.requires_approval)
    return environment_model(row)


@router.get("/{name}/deployments", response_model=schemas.DeploymentList,
            responses={404: {"model": schemas.ErrorBody}})
async def list_deployments(
    name: EnvironmentName,
    conn: Conn,
    _: ReadAccess,
    before: Annotated[int | None, Query(ge=1, description="Return deployments with a smaller id.")] = None,
    limit: Annotated[int, Query(ge=1, le=DEPLOYMENT_PAGE_MAX)] = 50,
) -> schemas.DeploymentList:
    """List the environment's deployments, newest first, with its holder and queue."""
    environment = environment_model(await deploys.get_environment(conn, name))
    rows = await deploys.deployment_history(conn, name, before_id=before, limit=limit)
    queue = await deploys.environment_queue(conn, name)
    return schemas.DeploymentList(
        environment=environment,
        deployments=[schemas.Deployment(**row) for row in rows],
        queue=[schemas.QueuedDeploy(**row) for row in queue],
        next_before=rows[-1]["id"] if len(rows) == limit else None,
    )
