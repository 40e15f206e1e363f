"""Cron schedules read from the pipeline files: GET /api/schedules."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query

from minijenkin import schedules
from minijenkin.api import schemas
from minijenkin.api.auth import ReadAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import BIGINT_MAX

router = APIRouter(prefix="/api/schedules", tags=["schedules"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]


@router.get("", response_model=schemas.ScheduleList)
async def list_schedules(
    conn: Conn, _: ReadAccess,
    repo_id: Annotated[int | None, Query(
        ge=1, le=BIGINT_MAX, description="Only this repository's.")] = None,
) -> schemas.ScheduleList:
    """List cron schedules with their next tick."""
    rows = await schedules.list_schedules(conn, repo_id=repo_id)
    return schemas.ScheduleList(schedules=[
        schemas.Schedule(**{key: value for key, value in row.items() if key != "commit_sha"},
                         commit=row["commit_sha"])
        for row in rows])
