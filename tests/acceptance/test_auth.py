"""API tokens and scopes over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from minijenkin import auth
from minijenkin.config import Settings
from minijenkin.db import connect_async
from tests.support.api import ApiServer
from tests.support.factories import create_repo, create_run


def _token(database_url: str, scope: str) -> str:
    async def create() -> str:
        conn = await connect_async(database_url, application_name="test")
        try:
            value, _ = await auth.create_token(conn, name=f"{scope} token", scope=scope)
            return value
        finally:
            await conn.close()

    return asyncio.run(create())


def test_request_without_token_is_401(api_server: ApiServer) -> None:
    with api_server.client(token=None) as client:
        response = client.get("/api/runs")

    assert response.status_code == 401
    assert response.json()["detail"].startswith("authentication required")
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_token_is_401(api_server: ApiServer) -> None:
    with api_server.client(token="mjt_not-a-real-token") as client:
        response = client.get("/api/runs")

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid API token: it is unknown, revoked or expired"}


def test_read_token_reads_but_cannot_cancel(api_server: ApiServer, db: psycopg.Connection,
                                            database_url: str) -> None:
    run_id = create_run(db, create_repo(db))
    token = _token(database_url, "read")

    with api_server.client(token=token) as client:
        listed = client.get("/api/runs")
        cancelled = client.post(f"/api/runs/{run_id}/cancel")
        rerun = client.post(f"/api/runs/{run_id}/rerun")

    assert listed.status_code == 200
    assert [run["id"] for run in listed.json()["runs"]] == [run_id]
    assert cancelled.status_code == 403
    assert cancelled.json() == {"detail": "token 'read token' has scope 'read'; this needs 'trigger'"}
    assert rerun.status_code == 403
    status = db.execute("SELECT status FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()
    assert status["status"] == "queued"


def test_trigger_token_cannot_register_repository(api_server: ApiServer, database_url: str) -> None:
    token = _token(database_url, "trigger")

    with api_server.client(token=token) as client:
        response = client.post("/api/repos", json={"name": "acme/x", "url": "https://x/y.git"})

    assert response.status_code == 403


def test_revoked_token_stops_working(api_server: ApiServer, db: psycopg.Connection,
                                     database_url: str) -> None:
    token = _token(database_url, "admin")
    with api_server.client(token=token) as client:
        before = client.get("/api/repos")
        db.execute("UPDATE api_tokens SET revoked_at = now()")
        after = client.get("/api/repos")

    assert before.status_code == 200
    assert after.status_code == 401


def test_token_hash_stored_not_value(db: psycopg.Connection, database_url: str) -> None:
    token = _token(database_url, "read")

    row = db.execute("SELECT token_hash, scope FROM api_tokens").fetchone()

    assert row["scope"] == "read"
    assert bytes(row["token_hash"]) == auth.hash_token(token)
    assert token.encode() not in bytes(row["token_hash"])


@pytest.fixture
def anonymous_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"anonymous_read": True})


def test_anonymous_read_when_enabled(anonymous_settings: Settings, database_url: str,
                                     db: psycopg.Connection, tmp_path: Path) -> None:
    server = ApiServer(anonymous_settings, database_url).start()
    try:
        create_run(db, create_repo(db))
        with server.client(token=None) as client:
            listed = client.get("/api/runs")
            cancel = client.post("/api/runs/1/cancel")
    finally:
        server.stop()

    assert listed.status_code == 200
    assert cancel.status_code == 401
