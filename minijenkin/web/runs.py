"""Dashboard pages of runs: the filtered runs list, a run with its job graph, the manual-run form."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from minijenkin import runs, triggers
from minijenkin.api.auth import principal_for_token
from minijenkin.api.errors import status_for
from minijenkin.api.params import RowId
from minijenkin.errors import InvalidInputError, MiniJenkinError, NotFoundError, PermissionDeniedError
from minijenkin.sql import QUERIES
from minijenkin.web import graph
from minijenkin.web import session as web_session
from minijenkin.web.deps import Conn, PagePrincipal, PageRoute, SignInRequired, page_context
from minijenkin.web.templating import render

logger = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RUNS_PAGE_SIZE = 50
REPO_CHOICES_MAX = 500
FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled", "skipped", "timed_out"})
RERUNNABLE_JOB_STATUSES = frozenset({"failed", "cancelled", "skipped", "timed_out", "superseded"})
MANUAL_INPUTS_MAX_CHARS = 100_000


def _optional(value: str | None) -> str | None:
    """Empty form fields mean "no filter"."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _check_choice(field: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise InvalidInputError(f"{field}: invalid value {value!r}; use one of {', '.join(choices)}",
                                field=field)


async def _repo_names(conn: Conn) -> list[str]:
    cursor = await conn.execute(QUERIES["dashboard_repo_names"], {"limit": REPO_CHOICES_MAX})
    return [row["name"] for row in await cursor.fetchall()]


@router.get("/")
async def runs_page(
    request: Request,
    conn: Conn,
    principal: PagePrincipal,
    repo: Annotated[str | None, Query(max_length=200)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    trigger: Annotated[str | None, Query(max_length=32)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Render the runs list, newest first, filtered by repository, branch, status and trigger."""
    filters = {"repo": _optional(repo), "branch": _optional(branch), "status": _optional(status),
               "trigger": _optional(trigger)}
    _check_choice("status", filters["status"], runs.RUN_STATUSES)
    _check_choice("trigger", filters["trigger"], runs.EVENTS)
    ref = f"refs/heads/{filters['branch']}" if filters["branch"] else None

    rows = await runs.list_runs(conn, repo=filters["repo"], status=filters["status"],
                                event=filters["trigger"], ref=ref, before_id=before,
                                limit=RUNS_PAGE_SIZE + 1)
    next_before = rows[RUNS_PAGE_SIZE - 1]["id"] if len(rows) > RUNS_PAGE_SIZE else None
    query = {key: value for key, value in filters.items() if value}
    return render("runs.html", {
        **page_context(request, principal, section="runs", title="Runs"),
        "runs": rows[:RUNS_PAGE_SIZE],
        "filters": filters,
        "query": query,
        "before": before,
        "next_before": next_before,
        "repo_names": await _repo_names(conn),
        "statuses": runs.RUN_STATUSES,
        "triggers": runs.EVENTS,
        "now": dt.datetime.now(dt.UTC),
    })


def _trigger_details(run: dict[str, Any]) -> list[tuple[str, Any]]:
    """Return the run's trigger as (label, value) rows, in the order people look for them."""
    trigger = run["trigger"] or {}
    labels = [("source", "Source"), ("forge", "Forge"), ("sender", "Sender"), ("actor", "Started by"),
              ("delivery_id", "Delivery"), ("branch", "Branch"), ("tag", "Tag")]
    details: list[tuple[str, Any]] = [(label, trigger[key]) for key, label in labels
                                      if trigger.get(key) not in (None, "", [])]
    schedule = trigger.get("schedule")
    if isinstance(schedule, dict):
        details.append(("Schedule", f"{schedule.get('cron', '')} ({schedule.get('timezone', 'UTC')})"))
    changed = trigger.get("changed_files")
    if isinstance(changed, list) and changed:
        shown = ", ".join(str(name) for name in changed[:10])
        more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        details.append(("Changed files", shown + more))
    return details


async def _load_run(conn: Conn, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cursor = await conn.execute(QUERIES["run_get"], {"run_id": run_id})
    run = await cursor.fetchone()
    if run is None:
        raise NotFoundError(f"run {run_id} does not exist")
    cursor = await conn.execute(QUERIES["dashboard_run_jobs"], {"run_id": run_id})
    return run, await cursor.fetchall()


@router.get("/runs/new")
async def new_run_page(request: Request, conn: Conn, principal: PagePrincipal,
                       repo: Annotated[str | None, Query(max_length=200)] = None,
                       ref: Annotated[str | None, Query(max_length=255)] = None) -> Response:
    """Render the form that starts a manual run with inputs, filled in from `repo` and `ref`."""
    return _new_run_form(request, principal, repo_names=await _repo_names(conn),
                         values={"repo": repo or "", "ref": ref or "", "commit": "", "inputs": ""})


def _new_run_form(request: Request, principal: Any, *, repo_names: list[str],
                  values: dict[str, str], error: str | None = None,
                  error_field: str | None = None, status_code: int = 200) -> Response:
    return render("new_run.html", {
        **page_context(request, principal, section="runs", title="Start a run"),
        "repo_names": repo_names, "values": values, "error": error, "error_field": error_field,
    }, status_code=status_code)


def parse_inputs(text: str) -> dict[str, str]:
    """Parse the form's inputs, one `name=value` per line; blank lines are ignored."""
    if len(text) > MANUAL_INPUTS_MAX_CHARS:
        raise InvalidInputError(f"inputs: longer than {MANUAL_INPUTS_MAX_CHARS} characters",
                                field="inputs")
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return triggers.parse_input_options(lines)
    except InvalidInputError as exc:
        raise InvalidInputError(str(exc).replace("--input", "input line"), field="inputs") from exc


@router.post("/runs/new")
async def create_run(request: Request, conn: Conn) -> Response:
    """Start a manual run from the form; on success, go to the new run's page."""
    form = await request.form()
    values = {name: str(form.get(name) or "") for name in ("repo", "ref", "commit", "inputs")}
    session = web_session.read_session(request)
    if session is None:
        raise SignInRequired("/runs/new")
    web_session.check_forgery(request, session.csrf_token, str(form.get(web_session.CSRF_FIELD) or ""))
    principal = await principal_for_token(request, conn, session.token)
    if not principal.allows("trigger"):
        raise PermissionDeniedError(
            f"token {principal.name!r} has scope {principal.scope!r}; starting a run needs 'trigger'")

    repo_names = await _repo_names(conn)
    try:
        inputs = parse_inputs(values["inputs"])
        commit = values["commit"].strip() or None
        if commit is not None:
            triggers.validate_commit(commit)
        if not values["repo"].strip():
            raise InvalidInputError("repo: choose a repository", field="repo")
        if not values["ref"].strip():
            raise InvalidInputError("ref: give a branch or tag", field="ref")
        run = await triggers.create_manual_run(
            conn, repo_name=values["repo"].strip(), ref=values["ref"].strip(), commit=commit,
            inputs=inputs, actor=principal.name, source="dashboard",
            data_dir=request.app.state.settings.data_dir)
    except MiniJenkinError as exc:
        return _new_run_form(request, principal, repo_names=repo_names, values=values,
                             error=str(exc), error_field=exc.field, status_code=status_for(exc))
    return RedirectResponse(f"/runs/{run['id']}", status_code=303)


@router.get("/runs/{run_id}")
async def run_page(run_id: RowId, request: Request, conn: Conn, principal: PagePrincipal) -> Response:
    """Render a run: commit and trigger details, the job graph and the jobs table."""
    run, jobs = await _load_run(conn, run_id)
    now = dt.datetime.now(dt.UTC)
    layout = graph.layout(jobs, now=now)
    finished = run["status"] in FINISHED_STATUSES
    return render("run.html", {
        **page_context(request, principal, section="runs", title=f"Run #{run_id}"),
        "run": run,
        "jobs": jobs,
        "job_keys": {job["id"]: job["key"] for job in jobs},
        "layout": layout,
        "trigger_details": _trigger_details(run),
        "inputs": (run["trigger"] or {}).get("inputs") or {},
        "pull_request": (run["trigger"] or {}).get("pull_request"),
        "trigger_json": json.dumps(run["trigger"] or {}, indent=2, sort_keys=True, default=str),
        "active": not finished,
        "can_rerun_failed": finished and any(job["status"] in RERUNNABLE_JOB_STATUSES
                                             for job in jobs),
        "can_rerun": finished,
        "now": now,
    })
