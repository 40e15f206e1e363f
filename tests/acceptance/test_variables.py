"""Repository variables: stored and listed in clear, read by pipelines as ${{ vars.NAME }}."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from minijenkin import auth
from minijenkin.db import connect_async
from tests.acceptance.test_pipeline_runs import jobs_by_key, logs, push, register, wait_finished
from tests.support.api import ApiServer
from tests.support.gitrepo import GitRepo
from tests.support.workers import WorkerProcess, scrubbed_environment


def _read_token(database_url: str) -> str:
    async def create() -> str:
        conn = await connect_async(database_url, application_name="test")
        try:
            value, _ = await auth.create_token(conn, name="reader", scope="read")
            return value
        finally:
            await conn.close()

    return asyncio.run(create())


def _repo_id(api_server: ApiServer) -> int:
    with api_server.client() as client:
        response = client.post("/api/repos", json={"name": "acme/vars",
                                                   "url": "https://github.com/acme/vars.git"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_variables_api(api_server: ApiServer, database_url: str) -> None:
    repo_id = _repo_id(api_server)
    base = f"/api/repos/{repo_id}/variables"

    with api_server.client() as client:
        created = client.put(f"{base}/REGION", json={"value": "eu-west-1"})
        updated = client.put(f"{base}/REGION", json={"value": "eu-central-1"})
        empty = client.put(f"{base}/EMPTY", json={"value": ""})
        bad_name = client.put(f"{base}/1REGION", json={"value": "x"})
        reserved = client.put(f"{base}/GITHUB_SHA", json={"value": "x"})
        too_big = client.put(f"{base}/BIG", json={"value": "x" * 49153})
        missing_repo = client.put("/api/repos/999999/variables/REGION", json={"value": "x"})
        listed = client.get(base)
        deleted = client.delete(f"{base}/EMPTY")
        deleted_again = client.delete(f"{base}/EMPTY")
    with api_server.client(token=_read_token(database_url)) as reader:
        read_list = reader.get(base)
        read_set = reader.put(f"{base}/REGION", json={"value": "us-east-1"})

    assert (created.status_code, updated.status_code, empty.status_code) == (201, 200, 201)
    assert updated.json()["value"] == "eu-central-1"
    assert bad_name.status_code == 422
    assert bad_name.json()["detail"] == ("invalid variable name '1REGION': use letters, digits and '_', "
                                         "not starting with a digit, at most 100 characters")
    assert reserved.status_code == 422
    assert reserved.json()["detail"] == "invalid variable name 'GITHUB_SHA': the GITHUB_ prefix is reserved"
    assert too_big.status_code == 422
    assert "value" in too_big.text
    assert missing_repo.status_code == 404
    assert [(item["name"], item["value"]) for item in listed.json()["variables"]] == [
        ("EMPTY", ""), ("REGION", "eu-central-1")]
    assert (deleted.status_code, deleted_again.status_code) == (204, 404)
    assert [item["name"] for item in read_list.json()["variables"]] == ["REGION"]
    assert read_set.status_code == 403


VARS_PIPELINE = """\
name: deploy
jobs:
  deploy:
    name: deploy to ${{ vars.REGION }}
    env:
      TIER: ${{ vars.TIER }}
    steps:
      - run: echo "region ${{ vars.REGION }} tier $TIER unset=[${{ vars.UNSET }}]"
"""


def test_pipeline_reads_variables(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
    db: psycopg.Connection,
) -> None:
    commit = git_repo.commit({".minijenkin.yml": VARS_PIPELINE}, "Deploy")
    worker = start_worker()

    with api_server.client() as client:
        repo_id = register(client, git_repo)
        for name, value in (("REGION", "eu-west-1"), ("TIER", "gold"), ("OTHER", "not copied")):
            response = client.put(f"/api/repos/{repo_id}/variables/{name}", json={"value": value})
            assert response.status_code == 201, response.text
        run = wait_finished(client, push(client, git_repo, commit))
        job = jobs_by_key(run)["deploy"]
        job_logs = logs(client, job)

    assert run["status"] == "succeeded", worker.output()
    assert job["name"] == "deploy to eu-west-1"
    assert ("stdout", "region eu-west-1 tier gold unset=[]") in job_logs
    spec = db.execute("SELECT spec FROM jobs WHERE id = %s", (job["id"],)).fetchone()["spec"]
    assert spec["vars"] == {"REGION": "eu-west-1", "TIER": "gold"}


def test_cli_var_commands(api_server: ApiServer, database_url: str, data_dir: Path) -> None:
    _repo_id(api_server)
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir), "COLUMNS": "200"}

    def var(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "minijenkin", "var", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    created = var("set", "acme/vars", "REGION", "eu-west-1")
    updated = var("set", "acme/vars", "REGION", "eu-central-1")
    listed = var("list", "acme/vars")
    invalid = var("set", "acme/vars", "bad-name", "x")
    deleted = var("delete", "acme/vars", "REGION")
    missing = var("delete", "acme/vars", "REGION")

    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created variable REGION of acme/vars"
    assert updated.stdout.strip() == "updated variable REGION of acme/vars"
    assert "REGION" in listed.stdout
    assert "eu-central-1" in listed.stdout
    assert invalid.returncode == 1
    assert "invalid variable name 'bad-name'" in invalid.stderr
    assert deleted.stdout.strip() == "deleted variable REGION of acme/vars"
    assert missing.returncode == 1
    assert "variable 'REGION' does not exist" in missing.stderr
