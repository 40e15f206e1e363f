"""Mounting the dashboard on the API application: pages, page events and static files."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from minijenkin.web import events, jobs, runs, signin, system


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes and its static files (served by the API, never a CDN)."""
    for module in (signin, runs, jobs, system, events):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(packages=[("minijenkin.web", "static")]), name="static")
