"""Jinja2 rendering of the dashboard pages, with the filters the templates share.

Autoescaping is on for every template, so any text that comes from a
repository, a webhook or a log (commit messages, branch names, job names,
log lines) is HTML-escaped where it is inserted. The only markup inserted
unescaped is HTML that Mini-Jenkin escaped itself (log lines rendered by
logs/render.py, search snippets) and the SVG of the job graph, whose text
goes through the same escaping in graph.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from minijenkin import __version__

# Scripts only from this server, never inline; styles also inline, because
# ANSI colours of log lines and uPlot's charts are inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def format_duration(seconds: float | None) -> str:
    """Render a duration the way CI pages do: `45s`, `3m 05s`, `2h 04m`."""
    if seconds is None:
        return ""
    if seconds < 0:
        seconds = 0.0
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def elapsed_seconds(start: dt.datetime | None, end: dt.datetime | None,
                    now: dt.datetime) -> float | None:
    """Seconds from `start` to `end`, or to `now` while `end` is unknown; None before a start."""
    if start is None:
        return None
    return ((end or now) - start).total_seconds()


def ref_name(ref: str | None) -> str:
    """`refs/heads/main` as `main`, `refs/tags/v1` as `v1`; other refs unchanged."""
    if not ref:
        return ""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def iso_time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def utc_text(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def safe_link(url: object) -> str | None:
    """Return `url` when it is an http(s) URL fit for an href; None otherwise (javascript: ...)."""
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 2048:
        return url
    return None


def format_number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.{digits}f}"


@cache
def _static_versions() -> Mapping[str, str]:
    """Content hashes of the static files, appended to their URLs so browsers refetch changes."""
    versions: dict[str, str] = {}

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, name + "/")
            else:
                versions[name] = hashlib.sha256(entry.read_bytes()).hexdigest()[:12]

    walk(resources.files("minijenkin.web") / "static", "")
    return versions


def static_url(path: str) -> str:
    version = _static_versions().get(path)
    if version is None:
        raise ValueError(f"no static file {path!r} in minijenkin/web/static")
    return f"/static/{path}?v={version}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("minijenkin.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({
        "duration": format_duration,
        "ref_name": ref_name,
        "first_line": first_line,
        "iso": iso_time,
        "utc": utc_text,
        "safe_link": safe_link,
        "number": format_number,
    })
    env.globals.update({"static_url": static_url, "version": __version__})
    return env


def render(template: str, context: Mapping[str, Any], *, status_code: int = 200,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """Render a page template to a response with the dashboard's security headers."""
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})
