"""Full-text search over job logs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query

from minijenkin.api import schemas
from minijenkin.api.auth import ReadAccess
from minijenkin.api.deps import db_connection
from minijenkin.logs.search import search_logs

router = APIRouter(prefix="/api/search", tags=["search"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
SEARCH_LIMIT_MAX = 200


@router.get("", response_model=schemas.SearchResults,
            responses={404: {"model": schemas.ErrorBody}})
async def search(
    conn: Conn,
    _: ReadAccess,
    q: Annotated[str, Query(
        min_length=1, max_length=500,
        description='Words to find, all of them unless joined by `or`, web-search style: '
                    '`"exact phrase"`, `-excluded`, `word or word`.')],
    repo: Annotated[str | None, Query(max_length=200, description="Repository name.")] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[dt.datetime | None, Query(
        description="Only lines of blocks written at or after this time (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=SEARCH_LIMIT_MAX)] = 50,
) -> schemas.SearchResults:
    """Search stored log lines; hits are ranked, best first, with highlighted snippets."""
    result = await search_logs(conn, query=q, repo=repo, branch=branch, since=since, limit=limit)
    return schemas.SearchResults(query=q, truncated=result.truncated, hits=[
        schemas.SearchHit(
            **dataclasses.asdict(hit),
            job_url=f"/api/jobs/{hit.job_id}",
            log_url=f"/api/jobs/{hit.job_id}/logs?attempt={hit.attempt}&after={hit.seq - 1}",
        )
        for hit in result.hits
    ])
