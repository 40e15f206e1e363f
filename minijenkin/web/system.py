"""Dashboard pages around the runs: workers, metrics charts, log search, environments, deliveries."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from minijenkin import deploys
from minijenkin.errors import InvalidInputError, NotFoundError, PermissionDeniedError
from minijenkin.logs.search import search_logs
from minijenkin.metrics import history
from minijenkin.metrics.figures import read_figures
from minijenkin.notify import deliveries
from minijenkin.sql import QUERIES
from minijenkin.web.deps import Conn, PagePrincipal, PageRoute, page_context
from minijenkin.web.templating import render

logger = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

WORKERS_MAX = 200
# Stopped and lost workers stay listed this long after their last heartbeat.
WORKERS_RECENT_SECONDS = 24 * 3600.0
# A live worker whose heartbeat is older than this is shown as late.
HEARTBEAT_LATE_SECONDS = 30.0
SEARCH_HITS = 50
DELIVERIES_PAGE_SIZE = 50
# Latest deployments shown per environment on the environments page.
ENVIRONMENT_HISTORY_ROWS = 20
CHART_RANGES_DAYS = (7, 30, 90)
QUEUE_DEPTH_HOURS = 24
QUEUE_DEPTH_STEP = dt.timedelta(minutes=10)
DELIVERY_STATES = ("pending", "delivering", "delivered", "dead")


@router.get("/workers")
async def workers_page(request: Request, conn: Conn, principal: PagePrincipal) -> Response:
    """Live workers with their labels, heartbeat age and running jobs; recently stopped ones below."""
    cursor = await conn.execute(QUERIES["dashboard_workers"], {
        "recent_seconds": WORKERS_RECENT_SECONDS, "limit": WORKERS_MAX})
    workers = await cursor.fetchall()
    cursor = await conn.execute(QUERIES["dashboard_workers_running_jobs"], {
        "worker_ids": [worker["id"] for worker in workers]})
    running: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for job in await cursor.fetchall():
        running[job["worker_id"]].append(job)
    live = [worker for worker in workers if worker["status"] in ("active", "stopping")]
    return render("workers.html", {
        **page_context(request, principal, section="workers", title="Workers"),
        "live": live,
        "gone": [worker for worker in workers if worker["status"] not in ("active", "stopping")],
        "running": running,
        "slots": sum(worker["concurrency"] for worker in live),
        "busy": sum(len(running[worker["id"]]) for worker in live),
        "heartbeat_late_seconds": HEARTBEAT_LATE_SECONDS,
        "recent_hours": int(WORKERS_RECENT_SECONDS // 3600),
    })


def _series_values(points_json: str) -> tuple[list[float], list[float | None]]:
    points = json.loads(points_json)
    times = [dt.datetime.fromisoformat(point["t"].replace("Z", "+00:00")).timestamp()
             for point in points]
    return times, [point["value"] for point in points]


async def _history_chart(conn: psycopg.AsyncConnection, *, chart_id: str, title: str, unit: str,
                         metrics: list[tuple[str, str]], step: str, repo: str | None,
                         start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    times: list[float] = []
    series = []
    for metric, label in metrics:
        read = await history.read_series(conn, metric=metric, step=step, repo=repo, start=start,
                                         end=end)
        times, values = _series_values(read["points_json"])
        series.append({"label": label, "values": values})
    return {"id": chart_id, "title": title, "unit": unit, "times": times, "series": series}


async def _queue_depth_chart(conn: psycopg.AsyncConnection, end: dt.datetime) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["dashboard_queue_depth_series"], {
        "from": end - dt.timedelta(hours=QUEUE_DEPTH_HOURS), "to": end, "step": QUEUE_DEPTH_STEP})
    rows = await cursor.fetchall()
    return {
        "id": "queue-depth", "title": f"Queue depth, last {QUEUE_DEPTH_HOURS} hours", "unit": "jobs",
        "times": [dt.datetime.fromisoformat(row["t"].replace("Z", "+00:00")).timestamp()
                  for row in rows],
        "series": [
            {"label": "queued (max)", "values": [row["queued_max"] for row in rows]},
            {"label": "queued (mean)", "values": [row["queued_avg"] for row in rows]},
            {"label": "running (mean)", "values": [row["running_avg"] for row in rows]},
        ],
    }


@router.get("/charts")
async def metrics_page(
    request: Request,
    conn: Conn,
    principal: PagePrincipal,
    repo: Annotated[str | None, Query(max_length=200)] = None,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> Response:
    """Charts of queue depth, queue wait, run duration, success rate and throughput, and live figures."""
    repo = (repo or "").strip() or None
    cursor = await conn.execute(QUERIES["metrics_clock"])
    clock = await cursor.fetchone()
    assert clock is not None
    end = clock["now"]
    start = end - dt.timedelta(days=days)
    common = {"step": "1d", "repo": repo, "start": start, "end": end}
    charts = [
        await _queue_depth_chart(conn, end),
        await _history_chart(conn, chart_id="queue-wait", title="Queue wait per day", unit="seconds",
                             metrics=[("queue_wait_p50", "median"), ("queue_wait_p95", "95th percentile")],
                             **common),
        await _history_chart(conn, chart_id="run-duration", title="Run duration per day",
                             unit="seconds",
                             metrics=[("run_duration_p50", "median"),
                                      ("run_duration_p95", "95th percentile")], **common),
        await _history_chart(conn, chart_id="success-rate", title="Success rate per day",
                             unit="ratio", metrics=[("success_rate", "succeeded / decided")],
                             **common),
        await _history_chart(conn, chart_id="throughput", title="Jobs finished per day",
                             unit="jobs", metrics=[("jobs_succeeded", "succeeded"),
                                                   ("jobs_failed", "failed")], **common),
    ]
    figures = await read_figures(conn, live_only=True)
    cursor = await conn.execute(QUERIES["metrics_refreshes"])
    refreshes = await cursor.fetchall()
    return render("charts.html", {
        **page_context(request, principal, section="charts", title="Metrics"),
        "charts": charts,
        "figures": [reading for reading in figures
                    if reading.figure.name in ("queue_depth", "queue_oldest_age", "worker_slots",
                                               "worker_utilisation", "runs_active",
                                               "log_ingest_rate", "outbox_messages")],
        "refreshed_at": min((row["refreshed_at"] for row in refreshes), default=None),
        "repo": repo or "",
        "days": days,
        "ranges": CHART_RANGES_DAYS,
    })


@router.get("/search")
async def search_page(
    request: Request,
    conn: Conn,
    principal: PagePrincipal,
    q: Annotated[str | None, Query(max_length=500)] = None,
    repo: Annotated[str | None, Query(max_length=200)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """Full-text search over stored log lines, best matches first."""
    query = (q or "").strip()
    repo = (repo or "").strip() or None
    branch = (branch or "").strip() or None
    hits = []
    error = None
    if query:
        try:
            hits = await search_logs(conn, query=query, repo=repo, branch=branch, limit=SEARCH_HITS)
        except NotFoundError as exc:
            error = str(exc)
    return render("search.html", {
        **page_context(request, principal, section="search", title="Search logs"),
        "q": query, "repo": repo or "", "branch": branch or "", "hits": hits, "error": error,
        "searched": bool(query),
    })


@router.get("/environments")
async def environments_page(request: Request, conn: Conn, principal: PagePrincipal) -> Response:
    """Deployment environments: lock holder, waiting deploys and history."""
    environments = await deploys.list_environments(conn)
    for environment in environments:
        environment["queue"] = await deploys.environment_queue(conn, environment["name"])
        environment["history"] = await deploys.deployment_history(
            conn, environment["name"], before_id=None, limit=ENVIRONMENT_HISTORY_ROWS)
    return render("environments.html", {
        **page_context(request, principal, section="environments", title="Environments"),
        "environments": environments,
    })


@router.get("/deliveries")
async def deliveries_page(
    request: Request,
    conn: Conn,
    principal: PagePrincipal,
    state: Annotated[str | None, Query(max_length=16)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Notification deliveries, newest first, with a redeliver action (admin tokens only)."""
    if not principal.allows("admin"):
        raise PermissionDeniedError(
            "notification deliveries need an admin token: they show receivers' error responses")
    state = (state or "").strip() or None
    if state is not None and state not in DELIVERY_STATES:
        raise InvalidInputError(f"state: invalid value {state!r}; use one of "
                                f"{', '.join(DELIVERY_STATES)}", field="state")
    rows = await deliveries.list_deliveries(conn, state=state, before_id=before,
                                            limit=DELIVERIES_PAGE_SIZE + 1)
    next_before = rows[DELIVERIES_PAGE_SIZE - 1]["id"] if len(rows) > DELIVERIES_PAGE_SIZE else None
    return render("deliveries.html", {
        **page_context(request, principal, section="deliveries", title="Notifications"),
        "deliveries": rows[:DELIVERIES_PAGE_SIZE], "state": state or "", "states": DELIVERY_STATES,
        "next_before": next_before,
    })
