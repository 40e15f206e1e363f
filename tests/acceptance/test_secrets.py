"""Secrets: stored encrypted, never returned, absent from a database dump, rotated by command."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from minijenkin.config import Settings
from minijenkin.crypto import Keyring, generate_key, load_keyring
from minijenkin.db.embedded import pg_commands
from tests.support.api import ApiServer
from tests.support.factories import create_repo
from tests.support.github import encode, push_payload, signed_headers
from tests.support.workers import scrubbed_environment

DEPLOY_TOKEN = "dpl-7f3a9c1e5b2d4f6a"
STAGING_PASSWORD = "stg-Q8wLr2ZkTn5Vx"
WEBHOOK_SECRET = "whk-9Jd3Ls8Pq2Rt"


def _repo_id(api_server: ApiServer, name: str = "acme/app") -> int:
    with api_server.client() as client:
        response = client.post("/api/repos", json={
            "name": name, "url": "https://github.com/acme/app.git",
            "webhook_secret": WEBHOOK_SECRET})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_secret_values_are_never_returned(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = _repo_id(api_server)

    with api_server.client() as client:
        created = client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN",
                             json={"value": DEPLOY_TOKEN})
        updated = client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN",
                             json={"value": DEPLOY_TOKEN + "-2"})
        staging = client.put(f"/api/repos/{repo_id}/secrets/DB_PASSWORD",
                             json={"value": STAGING_PASSWORD, "environment": "staging"})
        listed = client.get(f"/api/repos/{repo_id}/secrets")
        repo = client.get(f"/api/repos/{repo_id}")
        openapi = client.get("/openapi.json")

    assert (created.status_code, updated.status_code, staging.status_code) == (201, 200, 201)
    assert set(created.json()) == {"id", "repo_id", "environment", "name", "created_at",
                                   "updated_at"}
    assert [(item["name"], item["environment"]) for item in listed.json()["secrets"]] == [
        ("DEPLOY_TOKEN", None), ("DB_PASSWORD", "staging")]
    for response in (created, updated, staging, listed, repo):
        for value in (DEPLOY_TOKEN, STAGING_PASSWORD, WEBHOOK_SECRET):
            assert value not in response.text
    assert repo.json()["has_webhook_secret"] is True
    assert openapi.status_code == 200
    stored = db.execute("SELECT value_encrypted FROM secrets ORDER BY id").fetchall()
    assert all(row["value_encrypted"].startswith("mj1:") for row in stored)


def test_secret_set_logs_at_info_level(api_server: ApiServer,
                                       caplog: pytest.LogCaptureFixture) -> None:
    # `minijenkin up` and `minijenkin api` log at INFO, where each stored
    # secret gets a log record.
    repo_id = _repo_id(api_server)
    caplog.set_level(logging.INFO, logger="minijenkin.secrets")

    with api_server.client() as client:
        created = client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN",
                             json={"value": DEPLOY_TOKEN})
        updated = client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN",
                             json={"value": DEPLOY_TOKEN + "-2"})

    assert created.status_code == 201, created.text
    assert updated.status_code == 200, updated.text
    records = [record for record in caplog.records if getattr(record, "action", None) == "secret_set"]
    assert [(record.secret, record.new_secret) for record in records] == [
        ("DEPLOY_TOKEN", True), ("DEPLOY_TOKEN", False)]
    assert DEPLOY_TOKEN not in caplog.text


def test_invalid_secrets_are_rejected(api_server: ApiServer) -> None:
    repo_id = _repo_id(api_server)

    with api_server.client() as client:
        short = client.put(f"/api/repos/{repo_id}/secrets/PIN", json={"value": "123"})
        bad_name = client.put(f"/api/repos/{repo_id}/secrets/1BAD", json={"value": "long enough"})
        unknown_repo = client.put("/api/repos/999/secrets/TOKEN", json={"value": "long enough"})
        missing = client.delete(f"/api/repos/{repo_id}/secrets/NOPE")

    assert short.status_code == 422
    assert short.json()["field"] == "value"
    assert bad_name.status_code == 422
    assert bad_name.json() == {
        "detail": "invalid secret name '1BAD': use letters, digits and '_', not starting with a "
                  "digit, at most 100 characters", "field": "name"}
    assert unknown_repo.status_code == 404
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"secret 'NOPE' does not exist in repository {repo_id}"}


def test_delete_secret_of_environment(api_server: ApiServer) -> None:
    repo_id = _repo_id(api_server)

    with api_server.client() as client:
        client.put(f"/api/repos/{repo_id}/secrets/KEY", json={"value": "repo-level"})
        client.put(f"/api/repos/{repo_id}/secrets/KEY",
                   json={"value": "prod-level", "environment": "production"})
        deleted = client.delete(f"/api/repos/{repo_id}/secrets/KEY",
                                params={"environment": "production"})
        listed = client.get(f"/api/repos/{repo_id}/secrets").json()["secrets"]

    assert deleted.status_code == 204
    assert [(item["name"], item["environment"]) for item in listed] == [("KEY", None)]


def test_secrets_need_admin_scope(api_server: ApiServer) -> None:
    repo_id = _repo_id(api_server)

    with api_server.client() as admin:
        token = admin.post("/api/tokens", json={"name": "ci bot", "scope": "trigger"}).json()["token"]
    with api_server.client(token=token) as client:
        listed = client.get(f"/api/repos/{repo_id}/secrets")
        stored = client.put(f"/api/repos/{repo_id}/secrets/KEY", json={"value": "abcdef"})

    assert listed.status_code == 403
    assert stored.status_code == 403


def test_database_dump_contains_no_secret_in_clear(api_server: ApiServer, db: psycopg.Connection,
                                                   database_url: str) -> None:
    repo_id = _repo_id(api_server)
    legacy_repo = create_repo(db, "acme/legacy", "https://github.com/acme/legacy.git",
                              "legacy-webhook-secret")
    with api_server.client() as client:
        client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN", json={"value": DEPLOY_TOKEN})
        client.put(f"/api/repos/{repo_id}/secrets/DB_PASSWORD",
                   json={"value": STAGING_PASSWORD, "environment": "staging"})
        token = client.post("/api/tokens", json={"name": "deploy bot", "scope": "trigger"}).json()[
            "token"]
        # A webhook for the repository registered in clear encrypts its secret on first use.
        body = encode(push_payload(full_name="acme/legacy",
                                   clone_url="https://github.com/acme/legacy.git", after="b" * 40))
        delivered = client.post("/hooks/github", content=body,
                                headers=signed_headers("legacy-webhook-secret", body))
        body = encode(push_payload(full_name="acme/app", clone_url="https://github.com/acme/app.git",
                                   after="c" * 40))
        client.post("/hooks/github", content=body, headers=signed_headers(WEBHOOK_SECRET, body))
    with api_server.client(token=token) as client:
        assert client.get("/api/runs").status_code == 200

    dump = subprocess.run([str(pg_commands.POSTGRES_BIN_PATH / "pg_dump"),
                           f"--dbname={database_url}", "--no-owner"],
                          capture_output=True, text=True, timeout=120, check=True).stdout

    assert delivered.status_code == 201, delivered.text
    assert "COPY public.secrets" in dump
    assert "mj1:" in dump
    for value in (DEPLOY_TOKEN, STAGING_PASSWORD, WEBHOOK_SECRET, "legacy-webhook-secret", token,
                  api_server.admin_token):
        assert value not in dump
    legacy = db.execute("SELECT webhook_secret, webhook_secret_encrypted FROM repositories "
                        "WHERE id = %s", (legacy_repo,)).fetchone()
    assert legacy["webhook_secret"] is None
    assert legacy["webhook_secret_encrypted"].startswith("mj1:")


def test_legacy_webhook_secrets_are_encrypted_at_start(settings: Settings, database_url: str,
                                                      db: psycopg.Connection) -> None:
    repo_id = create_repo(db, "acme/old", "https://github.com/acme/old.git", "old-secret-value")

    server = ApiServer(settings, database_url, maintenance=False).start()
    server.stop()

    row = db.execute("SELECT webhook_secret, webhook_secret_encrypted FROM repositories "
                     "WHERE id = %s", (repo_id,)).fetchone()
    assert row["webhook_secret"] is None
    keyring = load_keyring(None, settings.data_dir)
    assert keyring.decrypt(row["webhook_secret_encrypted"],
                           purpose=f"repo:{repo_id}:webhook_secret") == "old-secret-value"


def test_rotate_key_command_reencrypts_everything(api_server: ApiServer, db: psycopg.Connection,
                                                  database_url: str, data_dir: Path) -> None:
    repo_id = _repo_id(api_server)
    with api_server.client() as client:
        client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN", json={"value": DEPLOY_TOKEN})
        client.put(f"/api/repos/{repo_id}/secrets/DB_PASSWORD",
                   json={"value": STAGING_PASSWORD, "environment": "staging"})
    old_key = (data_dir / "secret.key").read_text().strip()
    new_key = generate_key()
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir), "MINIJENKIN_SECRET_KEY": f"{new_key},{old_key}"}

    first = subprocess.run([sys.executable, "-m", "minijenkin", "secret", "rotate-key"], env=env,
                           capture_output=True, text=True, timeout=60)
    again = subprocess.run([sys.executable, "-m", "minijenkin", "secret", "rotate-key"], env=env,
                           capture_output=True, text=True, timeout=60)

    new_only = Keyring.from_text(new_key)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(
        f"re-encrypted 2 secrets and 1 webhook secret with key {new_only.active_id};")
    assert again.stdout.startswith("re-encrypted 0 secrets and 0 webhook secrets")
    rows = db.execute("SELECT repo_id, environment, name, value_encrypted FROM secrets "
                      "ORDER BY id").fetchall()
    values = [new_only.decrypt(row["value_encrypted"], purpose=(
        f"secret:{row['repo_id']}:{row['environment'] or ''}:{row['name']}")) for row in rows]
    assert values == [DEPLOY_TOKEN, STAGING_PASSWORD]
    webhook = db.execute("SELECT webhook_secret_encrypted FROM repositories").fetchone()
    assert new_only.decrypt(webhook["webhook_secret_encrypted"],
                            purpose=f"repo:{repo_id}:webhook_secret") == WEBHOOK_SECRET


def test_cli_secret_set_reads_stdin(api_server: ApiServer, database_url: str,
                                    data_dir: Path) -> None:
    _repo_id(api_server)
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir)}

    stored = subprocess.run([sys.executable, "-m", "minijenkin", "secret", "set", "acme/app",
                             "NPM_TOKEN", "--env", "release"], input="npm-secret-value\n",
                            env=env, capture_output=True, text=True, timeout=60)
    listed = subprocess.run([sys.executable, "-m", "minijenkin", "secret", "list", "acme/app"],
                            env=env, capture_output=True, text=True, timeout=60)
    short = subprocess.run([sys.executable, "-m", "minijenkin", "secret", "set", "acme/app", "PIN"],
                           input="123", env=env, capture_output=True, text=True, timeout=60)

    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == "created secret NPM_TOKEN of acme/app (environment release)"
    assert "NPM_TOKEN" in listed.stdout
    assert "npm-secret-value" not in listed.stdout + listed.stderr
    assert short.returncode == 1
    assert "values shorter than 4 characters cannot be masked in logs safely" in short.stderr
