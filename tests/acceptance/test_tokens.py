"""API tokens through the REST API and the CLI: shown once, stored hashed, revocable."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from minijenkin import auth
from tests.support.api import ApiServer
from tests.support.workers import scrubbed_environment


def test_token_api_create_list_revoke(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        created = client.post("/api/tokens", json={"name": "deploy bot", "scope": "trigger",
                                                   "expires_days": 30})
        token = created.json()["token"]
        listed = client.get("/api/tokens")
    with api_server.client(token=token) as bot:
        allowed = bot.get("/api/runs")
        denied = bot.get("/api/tokens")
    with api_server.client() as client:
        revoked = client.delete(f"/api/tokens/{created.json()['id']}")
        unknown = client.delete("/api/tokens/999999")
    with api_server.client(token=token) as bot:
        after = bot.get("/api/runs")

    assert created.status_code == 201
    assert token.startswith("mjt_")
    assert created.json()["scope"] == "trigger"
    assert created.json()["expires_at"] is not None
    assert [(item["name"], item["scope"]) for item in listed.json()["tokens"]] == [
        ("deploy bot", "trigger")]
    assert token not in listed.text
    assert allowed.status_code == 200
    assert denied.status_code == 403
    assert revoked.status_code == 204
    assert unknown.status_code == 404
    assert after.status_code == 401
    stored = db.execute("SELECT token_hash FROM api_tokens").fetchone()
    assert bytes(stored["token_hash"]) == auth.hash_token(token)


def test_token_api_rejects_unknown_scope(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.post("/api/tokens", json={"name": "x", "scope": "root"})

    assert response.status_code == 422
    assert response.json()["field"] == "scope"



def test_token_api_rejects_nul_in_name(api_server: ApiServer, db: psycopg.Connection) -> None:
    count_before = db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"]

    with api_server.client() as client:
        response = client.post("/api/tokens", json={"name": "ci\u0000bot", "scope": "read"})

    assert response.status_code == 422
    assert response.json()["detail"] == "name: Value error, must not contain NUL characters"
    assert response.json()["field"] == "name"
    assert db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"] == count_before

def test_cli_token_create_rejects_unknown_scope(database_url: str, db: psycopg.Connection) -> None:
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url, "COLUMNS": "200"}

    result = subprocess.run([sys.executable, "-m", "minijenkin", "token", "create", "--name",
                             "x", "--scope", "root"], env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 2
    assert "'root' is not one of 'read', 'trigger', 'admin'" in result.stderr
    assert db.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"] == 0


def test_cli_token_create_prints_value_once(database_url: str, db: psycopg.Connection) -> None:
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url}

    created = subprocess.run([sys.executable, "-m", "minijenkin", "token", "create", "--name",
                              "release bot", "--scope", "read"], env=env, capture_output=True,
                             text=True, timeout=60)
    listed = subprocess.run([sys.executable, "-m", "minijenkin", "token", "list"], env=env,
                            capture_output=True, text=True, timeout=60)

    assert created.returncode == 0, created.stderr
    value = created.stdout.strip()
    assert value.startswith("mjt_")
    assert "it is shown only once" in created.stderr
    assert "release bot" in listed.stdout
    assert value not in listed.stdout
    row = db.execute("SELECT name, scope, token_hash FROM api_tokens").fetchone()
    assert (row["name"], row["scope"]) == ("release bot", "read")
    assert bytes(row["token_hash"]) == auth.hash_token(value)
