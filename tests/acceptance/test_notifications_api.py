"""Notification targets through the REST API and the CLI: validation, encryption, scopes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from minijenkin import auth
from minijenkin.config import Settings
from minijenkin.crypto import load_keyring
from tests.support.api import ApiServer
from tests.support.factories import create_repo
from tests.support.workers import scrubbed_environment

SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnop"


def _read_token(db: psycopg.Connection) -> str:
    value = auth.new_token_value()
    db.execute("INSERT INTO api_tokens (name, token_hash, scope) VALUES ('reader', %s, 'read')",
               (auth.hash_token(value),))
    return value


def test_create_target_stores_url_encrypted(api_server: ApiServer, db: psycopg.Connection,
                                            settings: Settings) -> None:
    repo_id = create_repo(db)

    with api_server.client() as client:
        response = client.post(f"/api/repos/{repo_id}/notifications", json={
            "kind": "slack", "url": SLACK_URL, "events": ["run.fixed", "run.failed"]})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "slack"
    assert body["url"] == "https://hooks.slack.com"
    assert body["events"] == ["run.failed", "run.fixed"]
    assert body["has_secret"] is False
    assert SLACK_URL not in response.text
    stored = db.execute("SELECT url_encrypted, secret_encrypted FROM notification_targets").fetchone()
    assert stored["url_encrypted"].startswith("mj1:")
    assert "hooks.slack.com" not in stored["url_encrypted"]
    assert stored["secret_encrypted"] is None
    keyring = load_keyring(settings.secret_key, settings.data_dir)
    assert keyring.decrypt(stored["url_encrypted"],
                           purpose=f"notification:{body['id']}:url") == SLACK_URL


def test_webhook_secret_is_encrypted(api_server: ApiServer, db: psycopg.Connection,
                                     settings: Settings) -> None:
    repo_id = create_repo(db)

    with api_server.client() as client:
        response = client.post(f"/api/repos/{repo_id}/notifications", json={
            "kind": "webhook", "url": "https://hooks.example.com/ci", "secret": "hmac-secret-1"})

    assert response.status_code == 201, response.text
    assert response.json()["has_secret"] is True
    assert response.json()["events"] == ["run.succeeded", "run.failed", "run.fixed",
                                         "run.cancelled", "deploy.started", "deploy.finished"]
    assert "hmac-secret-1" not in response.text
    stored = db.execute("SELECT secret_encrypted FROM notification_targets").fetchone()
    keyring = load_keyring(settings.secret_key, settings.data_dir)
    target_id = response.json()["id"]
    assert keyring.decrypt(stored["secret_encrypted"],
                           purpose=f"notification:{target_id}:secret") == "hmac-secret-1"


def test_status_target_defaults(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db)

    with api_server.client() as client:
        response = client.post(f"/api/repos/{repo_id}/notifications", json={
            "kind": "github-status", "secret": "ghp_0123456789"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["url"] == "https://api.github.com"
    assert body["events"] == ["run.succeeded", "run.failed", "run.fixed", "run.cancelled"]
    assert (body["project"], body["context"]) == (None, None)
    stored = db.execute("SELECT url_encrypted FROM notification_targets").fetchone()
    assert stored["url_encrypted"] is None


def test_list_and_delete_targets(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    with api_server.client() as client:
        first = client.post(f"/api/repos/{repo_id}/notifications",
                            json={"kind": "discord", "url": "https://discord.com/api/webhooks/1/x"})
        second = client.post(f"/api/repos/{repo_id}/notifications", json={
            "kind": "gitlab-status", "secret": "glpat-0123456789", "project": "group/web",
            "context": "ci"})

        listed = client.get(f"/api/repos/{repo_id}/notifications")
        deleted = client.delete(f"/api/repos/{repo_id}/notifications/{first.json()['id']}")
        deleted_again = client.delete(f"/api/repos/{repo_id}/notifications/{first.json()['id']}")
        remaining = client.get(f"/api/repos/{repo_id}/notifications")

    assert listed.status_code == 200
    assert [(target["kind"], target["url"]) for target in listed.json()["targets"]] == [
        ("discord", "https://discord.com"), ("gitlab-status", "https://gitlab.com")]
    assert listed.json()["targets"][1]["project"] == "group/web"
    assert listed.json()["targets"][1]["context"] == "ci"
    assert deleted.status_code == 204
    assert deleted_again.status_code == 404
    assert deleted_again.json() == {
        "detail": f"repository {repo_id} has no notification target {first.json()['id']}"}
    assert [target["id"] for target in remaining.json()["targets"]] == [second.json()["id"]]


@pytest.mark.parametrize(("payload", "field"), [
    ({"kind": "email", "url": "https://x.example"}, "kind"),
    ({"kind": "slack"}, "url"),
    ({"kind": "slack", "url": "ftp://hooks.example.com/x"}, "url"),
    ({"kind": "slack", "url": "https:///no-host"}, "url"),
    ({"kind": "slack", "url": "https://[::1/hook"}, "url"),
    ({"kind": "slack", "url": "https://[not-an-address]/hook"}, "url"),
    ({"kind": "webhook", "url": "https://xn--zz.example/hook"}, "url"),
    ({"kind": "slack", "url": "https://x.example", "events": ["run.exploded"]}, "events.0"),
    ({"kind": "slack", "url": "https://x.example", "events": []}, "events"),
    ({"kind": "webhook", "url": "https://x.example", "secret": "short"}, "secret"),
    ({"kind": "github-status"}, "secret"),
    ({"kind": "github-status", "secret": "ghp_0123456789", "events": ["deploy.started"]}, "events"),
    ({"kind": "github-status", "secret": "ghp_0123456789", "project": "no-slash"}, "project"),
    ({"kind": "github-status", "secret": "ghp_0123\n456789"}, "secret"),
    ({"kind": "gitlab-status", "secret": "glpat-t\u00f6ken123"}, "secret"),
    ({"kind": "gitlab-status", "secret": "glpat token123"}, "secret"),
    ({"kind": "slack", "url": "https://x.example", "project": "acme/web"}, "project"),
    ({"kind": "slack", "url": "https://x.example", "colour": "red"}, "colour"),
])
def test_invalid_target_names_field(api_server: ApiServer, db: psycopg.Connection,
                                    payload: dict, field: str) -> None:
    repo_id = create_repo(db)

    with api_server.client() as client:
        response = client.post(f"/api/repos/{repo_id}/notifications", json=payload)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert db.execute("SELECT count(*) AS n FROM notification_targets").fetchone()["n"] == 0


def test_target_for_unknown_repository_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.post("/api/repos/4242/notifications",
                               json={"kind": "slack", "url": SLACK_URL})

    assert response.status_code == 404
    assert response.json() == {"detail": "repository 4242 does not exist"}


def test_targets_need_admin_scope(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    token = _read_token(db)

    with api_server.client(token=token) as client:
        created = client.post(f"/api/repos/{repo_id}/notifications",
                              json={"kind": "slack", "url": SLACK_URL})
        listed = client.get(f"/api/repos/{repo_id}/notifications")
        deliveries = client.get("/api/deliveries")
    with api_server.client(token=None) as client:
        anonymous = client.get(f"/api/repos/{repo_id}/notifications")

    assert [created.status_code, listed.status_code, deliveries.status_code] == [403, 403, 403]
    assert created.json() == {"detail": "token 'reader' has scope 'read'; this needs 'admin'"}
    assert anonymous.status_code == 401


def test_unknown_delivery_redeliver_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.post("/api/deliveries/777/redeliver")

    assert response.status_code == 404
    assert response.json() == {"detail": "delivery 777 does not exist"}


def test_deliveries_state_filter_is_checked(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/deliveries", params={"state": "lost"})

    assert response.status_code == 422
    assert response.json()["field"] == "state"


def test_cli_notify_add_list_remove(database_url: str, db: psycopg.Connection,
                                    data_dir: Path) -> None:
    create_repo(db, name="acme/cli")
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir), "MINIJENKIN_NOTIFY_URL": SLACK_URL,
           "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "minijenkin", "notify", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    added = cli("add", "acme/cli", "--kind", "slack", "--events", "run.failed,run.fixed")
    invalid = cli("add", "acme/cli", "--kind", "slack", "--events", "run.exploded")
    listed = cli("list", "acme/cli")
    target_id = db.execute("SELECT id FROM notification_targets").fetchone()["id"]
    removed = cli("remove", "acme/cli", str(target_id))

    assert added.returncode == 0, added.stderr
    assert added.stdout == f"added slack target {target_id} to acme/cli for run.failed, run.fixed\n"
    assert invalid.returncode == 1
    assert "unknown event 'run.exploded' in events" in invalid.stderr
    assert listed.returncode == 0, listed.stderr
    assert "https://hooks.slack.com" in listed.stdout
    assert "abcdefghijklmnop" not in listed.stdout
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"removed notification target {target_id} from acme/cli\n"
    assert db.execute("SELECT count(*) AS n FROM notification_targets").fetchone()["n"] == 0
