"""Repositories, health and run listing through the REST API and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import psycopg
import pytest

from minijenkin import runs
from minijenkin.api import schemas
from minijenkin.crypto import load_keyring
from tests.support.api import ApiServer
from tests.support.factories import create_repo, create_run
from tests.support.workers import scrubbed_environment


def test_create_repository(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        response = client.post("/api/repos", json={
            "name": "acme/web", "url": "file:///srv/git/web.git", "webhook_secret": "abcdefgh1"})

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "acme/web"
    assert body["url"] == "file:///srv/git/web.git"
    assert body["has_webhook_secret"] is True
    assert "webhook_secret" not in body
    stored = db.execute("SELECT name, url FROM repositories").fetchall()
    assert stored == [{"name": "acme/web", "url": "file:///srv/git/web.git"}]


def test_duplicate_repository_is_409(api_server: ApiServer) -> None:
    payload = {"name": "acme/web", "url": "https://github.com/acme/web.git"}
    with api_server.client() as client:
        first = client.post("/api/repos", json=payload)
        second = client.post("/api/repos", json=payload)

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json() == {"detail": "repository 'acme/web' already exists", "field": "name"}


@pytest.mark.parametrize(("payload", "field"), [
    ({"name": "../etc", "url": "https://x/y.git"}, "name"),
    ({"name": "", "url": "https://x/y.git"}, "name"),
    ({"name": "acme/web", "url": "ext::sh -c touch% /tmp/pwned"}, "url"),
    ({"name": "acme/web", "url": "--upload-pack=touch /tmp/pwned"}, "url"),
    ({"name": "acme/web", "url": "ftp://example.com/x.git"}, "url"),
    ({"name": "acme/web", "url": "https://x/y.git", "webhook_secret": "short"}, "webhook_secret"),
    ({"name": "acme/web", "url": "https://x/y.git", "extra": 1}, "extra"),
    ({"url": "https://x/y.git"}, "name"),
])
def test_invalid_repository_names_field(api_server: ApiServer, payload: dict, field: str) -> None:
    with api_server.client() as client:
        response = client.post("/api/repos", json=payload)

    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(f"{field}: ")


def test_repository_shows_latest_run(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    create_run(db, repo_id)
    latest = create_run(db, repo_id)
    db.execute("UPDATE pipeline_runs SET status = 'cancelled' WHERE id = %s", (latest,))

    with api_server.client() as client:
        single = client.get(f"/api/repos/{repo_id}")
        listed = client.get("/api/repos")

    assert single.status_code == 200
    assert single.json()["last_run_id"] == latest
    assert single.json()["last_run_status"] == "cancelled"
    assert listed.json()["repos"] == [single.json()]


def test_healthz_reports_database(api_server: ApiServer) -> None:
    with api_server.client(token=None) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


def test_run_list_paginates_newest_first(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    run_ids = [create_run(db, repo_id) for _ in range(5)]

    with api_server.client() as client:
        first = client.get("/api/runs", params={"limit": 2}).json()
        second = client.get("/api/runs", params={"limit": 2, "before": first["next_before"]}).json()
        last = client.get("/api/runs", params={"limit": 2, "before": second["next_before"]}).json()

    assert [run["id"] for run in first["runs"]] == run_ids[::-1][:2]
    assert [run["id"] for run in second["runs"]] == run_ids[::-1][2:4]
    assert [run["id"] for run in last["runs"]] == run_ids[::-1][4:]
    assert last["next_before"] is None


def test_run_list_event_filter(api_server: ApiServer, db: psycopg.Connection) -> None:
    run_id = create_run(db, create_repo(db))

    with api_server.client() as client:
        pushes = client.get("/api/runs", params={"event": "push"}).json()
        manual = client.get("/api/runs", params={"event": "manual"}).json()
        unknown = client.get("/api/runs", params={"event": "pushh"})

    assert [run["id"] for run in pushes["runs"]] == [run_id]
    assert manual["runs"] == []
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "event"
    assert unknown.json()["detail"].startswith("event: Input should be 'push', 'tag'")


def test_run_list_of_unknown_repo_is_404(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, name="acme/quiet")

    with api_server.client() as client:
        quiet = client.get("/api/runs", params={"repo": "acme/quiet"})
        unknown = client.get("/api/runs", params={"repo": "acme/nope"})

    assert quiet.status_code == 200
    assert quiet.json()["runs"] == []
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "repository 'acme/nope' does not exist"


def test_run_event_choices_match_database() -> None:
    assert get_args(schemas.RunEvent) == runs.EVENTS


def test_unknown_run_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/runs/999999")

    assert response.status_code == 404
    assert response.json() == {"detail": "run 999999 does not exist"}


def _repo_add(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `minijenkin repo add acme/cli --url https://github.com/acme/cli.git ARGS`."""
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "minijenkin", "repo", "add", "acme/cli",
         "--url", "https://github.com/acme/cli.git", *args],
        env=env, capture_output=True, text=True, timeout=60)


def test_cli_repo_add_registers(database_url: str, db: psycopg.Connection, data_dir: Path) -> None:
    result = _repo_add(database_url, data_dir, "--secret", "cli-secret-1")
    duplicate = _repo_add(database_url, data_dir)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("registered repository acme/cli (id ")
    assert duplicate.returncode == 1
    assert "repository 'acme/cli' already exists" in duplicate.stderr
    row = db.execute("SELECT id, url, webhook_secret, webhook_secret_encrypted FROM repositories "
                     "WHERE name = 'acme/cli'").fetchone()
    assert row["url"] == "https://github.com/acme/cli.git"
    assert row["webhook_secret"] is None
    keyring = load_keyring(None, data_dir)
    assert keyring.decrypt(row["webhook_secret_encrypted"],
                           purpose=f"repo:{row['id']}:webhook_secret") == "cli-secret-1"


def test_cli_repo_add_names_secret_option(database_url: str, db: psycopg.Connection,
                                          data_dir: Path) -> None:
    result = _repo_add(database_url, data_dir, "--secret", "short")

    assert result.returncode == 1
    # The first command also reports the secret key it generated, on the line before.
    assert result.stderr.splitlines()[-1] == "error: --secret is too short: use at least 8 characters"
    assert db.execute("SELECT count(*) AS n FROM repositories").fetchone()["n"] == 0
