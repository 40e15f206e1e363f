"""Metrics: Prometheus exposition, the dashboard summary and chart time series."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from minijenkin.api import schemas
from minijenkin.api.auth import ReadAccess
from minijenkin.api.deps import db_connection
from minijenkin.metrics import history, prometheus

router = APIRouter(tags=["metrics"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
SUMMARY_JOBS_MAX = 500

SeriesMetricName = Literal[tuple(history.SERIES_METRICS)]  # type: ignore[valid-type]
SERIES_METRICS_HELP = "What to chart: " + "; ".join(
    f"`{name}` {metric.description}" for name, metric in history.SERIES_METRICS.items())


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Figures in the Prometheus text format."}})
async def metrics(conn: Conn, _: ReadAccess) -> Response:
    """Render every figure, read from the database at scrape time, in the Prometheus text format."""
    return Response(await prometheus.scrape(conn), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/metrics/summary", response_model=schemas.MetricsSummary,
            responses={404: {"model": schemas.ErrorBody}})
async def summary(
    conn: Conn,
    _: ReadAccess,
    repo: Annotated[str | None, Query(min_length=1, max_length=200,
                                      description="Only this repository's runs and jobs.")] = None,
    jobs_limit: Annotated[int, Query(ge=1, le=SUMMARY_JOBS_MAX,
                                     description="Job names listed, flakiest first.")] = 50,
) -> dict[str, Any]:
    """Report the live figures and the last 30 days per repository, job name and label set."""
    # Returned as a dict: FastAPI validates and serializes it once against the
    # response model, which is cheaper than building the models here first.
    return await history.read_summary(conn, repo=repo, jobs_limit=jobs_limit)


@router.get("/api/metrics/timeseries", response_class=Response,
            responses={200: {"model": schemas.MetricsSeries}, 404: {"model": schemas.ErrorBody},
                       422: {"model": schemas.ErrorBody}})
async def timeseries(
    conn: Conn,
    _: ReadAccess,
    metric: Annotated[SeriesMetricName, Query(description=SERIES_METRICS_HELP)],
    repo: Annotated[str | None, Query(min_length=1, max_length=200,
                                      description="Only this repository; all when omitted.")] = None,
    start: Annotated[dt.datetime | None, Query(
        alias="from", description="Start (RFC 3339; UTC when no offset is given). "
                                  "Default: 30 days before `to`.")] = None,
    end: Annotated[dt.datetime | None, Query(
        alias="to", description="End, exclusive (RFC 3339). Default: now.")] = None,
    step: Annotated[str, Query(max_length=8, description="Bucket length: a number and h, d or w, "
                                                         "e.g. 1h, 1d, 1w. Percentiles: 1d.")] = "1d",
) -> Response:
    """Chart one metric: one point per bucket, read from the daily and hourly metrics views."""
    series = await history.read_series(conn, metric=metric, step=step, repo=repo, start=start,
                                       end=end)
    return Response(history.series_json(series), media_type="application/json")
