"""Manual runs with inputs: POST /api/runs and `minijenkin trigger`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg

from minijenkin import auth
from minijenkin.db import connect_async
from tests.support.api import ApiServer
from tests.support.gitrepo import GitRepo
from tests.support.workers import scrubbed_environment


def _token(database_url: str, scope: str) -> str:
    async def create() -> str:
        conn = await connect_async(database_url, application_name="test")
        try:
            value, _ = await auth.create_token(conn, name=f"{scope} token", scope=scope)
            return value
        finally:
            await conn.close()

    return asyncio.run(create())


def _register(api_server: ApiServer, repo: GitRepo, name: str = "acme/manual") -> None:
    with api_server.client() as client:
        response = client.post("/api/repos", json={"name": name, "url": repo.url})
    assert response.status_code == 201, response.text


def test_post_runs_starts_manual_run_with_inputs(api_server: ApiServer, db: psycopg.Connection,
                                                 git_repo: GitRepo, database_url: str) -> None:
    head = git_repo.commit({"README.md": "hi\n"}, "First")
    git_repo.git("tag", "-a", "v1.0", "-m", "Release 1.0")
    _register(api_server, git_repo)
    token = _token(database_url, "trigger")

    with api_server.client(token=token) as client:
        response = client.post("/api/runs", json={
            "repo": "acme/manual", "ref": "main",
            "inputs": {"environment": "staging", "dry_run": True, "replicas": 3}})
        tag = client.post("/api/runs", json={"repo": "acme/manual", "ref": "v1.0"})

    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["event"], run["ref"], run["commit"], run["status"]) == (
        "manual", "refs/heads/main", head, "queued")
    assert run["trigger"] == {"source": "api", "actor": "trigger token", "branch": "main",
                              "tag": None,
                              "inputs": {"environment": "staging", "dry_run": True, "replicas": 3}}
    assert [job["kind"] for job in run["jobs"]] == ["plan"]
    assert tag.status_code == 201
    assert (tag.json()["ref"], tag.json()["commit"]) == ("refs/tags/v1.0", head)


def test_post_runs_with_explicit_commit(api_server: ApiServer, git_repo: GitRepo) -> None:
    first = git_repo.commit({"a": "1"}, "First")
    git_repo.commit({"a": "2"}, "Second")
    _register(api_server, git_repo)

    with api_server.client() as client:
        response = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                  "commit": first.upper()})

    assert response.status_code == 201, response.text
    assert response.json()["commit"] == first
    assert response.json()["trigger"]["actor"] == "MINIJENKIN_ADMIN_TOKEN"


def test_post_runs_rejects_bad_input(api_server: ApiServer, git_repo: GitRepo,
                                     tmp_path: Path) -> None:
    git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    _register(api_server, GitRepo(tmp_path / "gone"), name="acme/gone")
    (tmp_path / "gone" / ".git").rename(tmp_path / "gone" / "moved")

    with api_server.client() as client:
        no_ref = client.post("/api/runs", json={"repo": "acme/manual", "ref": "nope"})
        no_repo = client.post("/api/runs", json={"repo": "acme/missing", "ref": "main"})
        bad_input = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                   "inputs": {"bad name": "x"}})
        nested = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                "inputs": {"list": [1, 2]}})
        unreachable = client.post("/api/runs", json={"repo": "acme/gone", "ref": "main"})
        option_like = client.post("/api/runs", json={"repo": "acme/manual", "ref": "--upload-pack=x"})
        with_nul = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main\u0000"})

    assert no_ref.status_code == 422
    assert no_ref.json() == {"detail": "repository 'acme/manual' has no branch or tag 'nope'",
                             "field": "ref"}
    assert no_repo.status_code == 404
    assert no_repo.json() == {"detail": "repository 'acme/missing' does not exist"}
    assert bad_input.status_code == 422
    assert "invalid input name 'bad name'" in bad_input.json()["detail"]
    assert nested.status_code == 422
    assert nested.json()["field"].startswith("inputs.list")
    assert unreachable.status_code == 502
    assert unreachable.json()["detail"].startswith("cannot read the refs of file://")
    assert option_like.status_code == 422
    assert option_like.json()["field"] == "ref"
    assert with_nul.status_code == 422
    assert with_nul.json()["field"] == "ref"



def test_post_runs_rejects_unstorable_values(api_server: ApiServer, db: psycopg.Connection,
                                             git_repo: GitRepo) -> None:
    git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    bodies = {
        "nul in repo": b'{"repo": "acme/manual\\u0000", "ref": "main"}',
        "nul in input": b'{"repo": "acme/manual", "ref": "main", "inputs": {"who": "a\\u0000"}}',
        "nan input": b'{"repo": "acme/manual", "ref": "main", "inputs": {"who": NaN}}',
        "infinite input": b'{"repo": "acme/manual", "ref": "main", "inputs": {"who": -Infinity}}',
    }

    with api_server.client() as client:
        responses = {case: client.post("/api/runs", content=body,
                                       headers={"Content-Type": "application/json"})
                     for case, body in bodies.items()}

    assert responses["nul in repo"].status_code == 422
    assert responses["nul in repo"].json()["detail"] == (
        "repo: Value error, must not contain NUL characters")
    assert responses["nul in repo"].json()["field"] == "repo"
    assert responses["nul in input"].status_code == 422
    assert responses["nul in input"].json()["detail"] == (
        "inputs: Value error, input 'who' must not contain NUL characters")
    assert responses["nul in input"].json()["field"] == "inputs"
    assert responses["nan input"].status_code == 422
    assert responses["nan input"].json()["detail"] == (
        "inputs: Value error, input 'who' must be a finite number, not nan")
    assert responses["infinite input"].status_code == 422
    assert responses["infinite input"].json()["detail"] == (
        "inputs: Value error, input 'who' must be a finite number, not -inf")
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0

COMMIT_FORMAT = "give the full commit id, 40 or 64 hex digits (`git rev-parse HEAD` prints it)"


def test_post_runs_rejects_partial_commit(api_server: ApiServer, db: psycopg.Connection,
                                          git_repo: GitRepo) -> None:
    head = git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)

    with api_server.client() as client:
        short = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main", "commit": head[:6]})
        not_hex = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                 "commit": "g" * 40})
        between = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                 "commit": head + "0"})
        too_long = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main",
                                                  "commit": "0" * 65})

    assert short.status_code == 422
    assert short.json() == {"detail": f"invalid commit {head[:6]!r}: {COMMIT_FORMAT}", "field": "commit"}
    assert not_hex.status_code == 422
    assert not_hex.json() == {"detail": f"invalid commit {'g' * 40!r}: {COMMIT_FORMAT}",
                              "field": "commit"}
    assert between.status_code == 422
    assert between.json() == {"detail": f"invalid commit {head + '0'!r}: {COMMIT_FORMAT}",
                              "field": "commit"}
    assert too_long.status_code == 422
    assert too_long.json()["field"] == "commit"
    assert too_long.json()["detail"] == "commit: String should have at most 64 characters"
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0


def test_read_token_cannot_trigger_or_cancel(api_server: ApiServer, db: psycopg.Connection,
                                             git_repo: GitRepo, database_url: str) -> None:
    git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    with api_server.client() as client:
        run_id = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main"}).json()["id"]
        job_id = client.get(f"/api/runs/{run_id}").json()["jobs"][0]["id"]
    token = _token(database_url, "read")

    with api_server.client(token=token) as client:
        triggered = client.post("/api/runs", json={"repo": "acme/manual", "ref": "main"})
        cancelled = client.post(f"/api/runs/{run_id}/cancel")
        job_cancelled = client.post(f"/api/jobs/{job_id}/cancel")
        polled = client.post("/api/repos/1/poll")
        readable = client.get(f"/api/runs/{run_id}")

    for response in (triggered, cancelled, job_cancelled, polled):
        assert response.status_code == 403
        assert response.json() == {"detail": "token 'read token' has scope 'read'; this needs 'trigger'"}
    assert readable.status_code == 200
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 1
    assert db.execute("SELECT status FROM pipeline_runs").fetchone()["status"] == "queued"


def test_cli_trigger_with_inputs(api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
                                 database_url: str, data_dir: Path) -> None:
    head = git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir)}

    result = subprocess.run(
        [sys.executable, "-m", "minijenkin", "trigger", "acme/manual", "--ref", "main",
         "--input", "environment=production", "--input", "note=a=b"],
        env=env, capture_output=True, text=True, timeout=60)
    broken = subprocess.run(
        [sys.executable, "-m", "minijenkin", "trigger", "acme/manual", "--ref", "main",
         "--input", "novalue"], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    run = db.execute("SELECT id, event, ref, commit_sha, trigger FROM pipeline_runs").fetchone()
    assert result.stdout.strip() == (f"started run {run['id']} of acme/manual at refs/heads/main "
                                     f"({head[:12]}); see its jobs with `minijenkin show {run['id']}`")
    assert (run["event"], run["ref"], run["commit_sha"]) == ("manual", "refs/heads/main", head)
    assert run["trigger"]["inputs"] == {"environment": "production", "note": "a=b"}
    assert run["trigger"]["source"] == "cli"
    assert run["trigger"]["actor"].startswith("cli:")
    assert broken.returncode == 1
    assert "invalid --input 'novalue': use name=value" in broken.stderr


def test_cli_trigger_rejects_partial_commit(api_server: ApiServer, db: psycopg.Connection,
                                            git_repo: GitRepo, database_url: str,
                                            data_dir: Path) -> None:
    git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir)}

    result = subprocess.run(
        [sys.executable, "-m", "minijenkin", "trigger", "acme/manual", "--ref", "main",
         "--commit", "9bdad4"], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"error: invalid --commit '9bdad4': {COMMIT_FORMAT}\n"
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0


def test_cli_show_lists_job_ids(api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
                                database_url: str, data_dir: Path) -> None:
    head = git_repo.commit({"a": "1"}, "First")
    _register(api_server, git_repo)
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
           "MINIJENKIN_DATA_DIR": str(data_dir)}
    subprocess.run([sys.executable, "-m", "minijenkin", "trigger", "acme/manual", "--ref", "main"],
                   env=env, capture_output=True, text=True, timeout=60, check=True)
    run_id = db.execute("SELECT id FROM pipeline_runs").fetchone()["id"]
    plan_id = db.execute("SELECT id FROM jobs WHERE run_id = %s", (run_id,)).fetchone()["id"]

    show_result = subprocess.run([sys.executable, "-m", "minijenkin", "show", str(run_id)],
                           env=env, capture_output=True, text=True, timeout=60)
    missing = subprocess.run([sys.executable, "-m", "minijenkin", "show", "999999"],
                             env=env, capture_output=True, text=True, timeout=60)

    assert show_result.returncode == 0, show_result.stderr
    lines = show_result.stdout.splitlines()
    assert lines[0] == f"run {run_id} of acme/manual: queued (-)"
    assert lines[1].startswith(f"  manual refs/heads/main at {head[:12]} ")
    job_rows = [line for line in lines if line.strip().startswith(f"│ {plan_id} ")
                or line.strip().startswith(f"{plan_id} ")]
    assert len(job_rows) == 1
    assert "plan" in job_rows[0]
    assert "queued" in job_rows[0]
    assert missing.returncode == 1
    assert "run 999999 does not exist" in missing.stderr
