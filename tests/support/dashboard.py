"""Helpers for dashboard tests: runs with chosen text, tokens, and signed-in browser sessions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from tests.support.api import ApiServer
from tests.support.factories import COMMIT
from tests.support.waiting import wait_for

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_SIGNIN_NONCE = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


def create_run(db: psycopg.Connection, repo_id: int, *, message: str = "message",
               ref: str = "refs/heads/main", event: str = "push", author: str = "author",
               commit: str = COMMIT, trigger: dict[str, Any] | None = None) -> int:
    """Create a run through mj_run_create_v1 with the given commit message, ref and event."""
    row = db.execute(
        "SELECT mj_run_create_v1(%s, %s, %s, %s, NULL, %s, %s, %s::jsonb) AS id",
        (repo_id, event, ref, commit, message, author, json.dumps(trigger or {}))).fetchone()
    return row["id"]


def create_token(api_server: ApiServer, scope: str, name: str | None = None) -> str:
    """Create an API token through the API and return its value."""
    with api_server.client() as client:
        response = client.post("/api/tokens", json={"name": name or f"{scope} user", "scope": scope})
    assert response.status_code == 201, response.text
    return response.json()["token"]


@dataclass
class BrowserSession:
    """An httpx client that signed in through the sign-in form, like a browser does."""

    client: httpx.Client
    csrf_token: str

    def post_action(self, path: str, **headers: str) -> httpx.Response:
        return self.client.post(path, headers={"X-CSRF-Token": self.csrf_token, **headers})

    def __enter__(self) -> BrowserSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()


def sign_in(api_server: ApiServer, token: str) -> BrowserSession:
    """Sign in through the form; use the result in a `with` block, which closes its client."""
    client = httpx.Client(base_url=api_server.url, timeout=30)
    form = client.get("/signin")
    assert form.status_code == 200, form.text
    nonce = _SIGNIN_NONCE.search(form.text)
    assert nonce is not None
    response = client.post("/signin", data={"csrf_token": nonce.group(1), "token": token,
                                            "next": "/"})
    assert response.status_code == 303, response.text
    page = client.get("/")
    assert page.status_code == 200, page.text
    csrf = _CSRF_META.search(page.text)
    assert csrf is not None and csrf.group(1)
    return BrowserSession(client=client, csrf_token=csrf.group(1))


def wait_for_log_partitions(db: psycopg.Connection) -> None:
    """Wait until the API's maintenance loop has created today's log partition.

    A flush creates a missing partition itself, and doing so at the same
    moment as the maintenance loop fails with a duplicate table name, so
    tests that store lines beside a starting API wait for the loop first.
    """
    wait_for(lambda: db.execute(
        "SELECT to_regclass(mj_logs_partition_name((now() AT TIME ZONE 'UTC')::date)) AS p"
    ).fetchone()["p"], timeout=30, message="today's job_logs partition")
