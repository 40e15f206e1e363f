"""A git push becomes a finished run: real repository, signed webhook, two worker processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.queue import worker_ids
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

SECRET = "end-to-end-secret"
REPO = "acme/e2e"

PIPELINE = """\
name: e2e
env:
  GREETING: hello
jobs:
  lint:
    steps:
      - name: Lint
        run: |
          echo "lint $GREETING"
          echo "to stderr" >&2
  test:
    env:
      SUITE: unit
    steps:
      - name: Prepare
        run: echo "prepare $SUITE"
      - name: Run
        run: |
          sleep 0.5
          echo "tests passed on $GITHUB_REF_NAME"
  package:
    needs: [lint, test]
    steps:
      - run: echo "package ${GITHUB_SHA:0:7} $CI"
"""


def _register(client: httpx.Client, repo: GitRepo) -> None:
    response = client.post("/api/repos", json={"name": REPO, "url": repo.url,
                                                "webhook_secret": SECRET})
    assert response.status_code == 201, response.text


def _push(client: httpx.Client, repo: GitRepo, after: str, message: str) -> int:
    body = encode(push_payload(full_name=REPO, clone_url=repo.url, after=after, message=message))
    response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))
    assert response.status_code == 201, response.text
    return int(response.json()["run_id"])


def _wait_finished(client: httpx.Client, run_id: int, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] not in ("pending", "queued", "running") else None

    return wait_for(finished, timeout=timeout, interval=0.2, message=f"run {run_id} to finish")


def _log_lines(client: httpx.Client, job_id: int) -> list[tuple[str, str]]:
    page = client.get(f"/api/jobs/{job_id}/logs").json()
    return [(line["stream"], line["text"]) for line in page["lines"]]


def test_push_runs_pipeline_on_two_workers(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": PIPELINE, "README.md": "hi\n"}, "Add pipeline")
    workers = [start_worker(MINIJENKIN_WORKER_CONCURRENCY="1") for _ in range(2)]
    # On a loaded machine one worker could otherwise run the whole pipeline
    # before the other has started.
    for worker in workers:
        wait_for(lambda worker=worker: worker_ids(db, worker.pid), timeout=30,
                 message=f"worker {worker.pid} to register")

    with api_server.client() as client:
        _register(client, git_repo)
        run_id = _push(client, git_repo, commit, "Add pipeline")
        run = _wait_finished(client, run_id)
        jobs = {job["key"]: job for job in run["jobs"]}
        logs = {key: _log_lines(client, job["id"]) for key, job in jobs.items()}

    assert run["status"] == "succeeded", [w.output() for w in workers]
    assert run["commit"] == commit
    assert {key: job["status"] for key, job in jobs.items()} == {
        "plan": "succeeded", "lint": "succeeded", "test": "succeeded", "package": "succeeded"}
    assert {key: job["exit_code"] for key, job in jobs.items()} == {
        "plan": 0, "lint": 0, "test": 0, "package": 0}
    assert jobs["package"]["needs"] == ["lint", "test"]

    # `needs` ordering, from database timestamps.
    times = {row["key"]: row for row in db.execute(
        "SELECT key, started_at, finished_at FROM jobs WHERE run_id = %s", (run_id,))}
    assert times["package"]["started_at"] >= times["lint"]["finished_at"]
    assert times["package"]["started_at"] >= times["test"]["finished_at"]
    assert times["lint"]["started_at"] >= times["plan"]["finished_at"]

    # Both worker processes took part (each runs one job at a time, and
    # lint and test were queued together).
    workers_used = db.execute(
        "SELECT count(DISTINCT a.worker_id) AS n FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
        "WHERE j.run_id = %s", (run_id,)).fetchone()["n"]
    assert workers_used == 2

    assert logs["lint"][1:] == [
        ("system", "▶ Lint"),
        ("stdout", "lint hello"),
        ("stderr", "to stderr"),
        ("system", "Job succeeded"),
    ]
    assert logs["test"][1:] == [
        ("system", "▶ Prepare"),
        ("stdout", "prepare unit"),
        ("system", "▶ Run"),
        ("stdout", "tests passed on main"),
        ("system", "Job succeeded"),
    ]
    assert logs["package"][1:] == [
        ("system", "▶ Run echo \"package ${GITHUB_SHA:0:7} $CI\""),
        ("stdout", f"package {commit[:7]} true"),
        ("system", "Job succeeded"),
    ]
    assert logs["lint"][0][0] == "system"
    assert logs["lint"][0][1].startswith("Running job lint (attempt 1) on ")


def test_failing_step_fails_run_and_skips_dependents(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = """\
jobs:
  build:
    steps:
      - run: |
          echo compiling
          exit 3
  deploy:
    needs: build
    steps:
      - run: echo never
"""
    commit = git_repo.commit({".minijenkin.yml": pipeline}, "Break the build")
    start_worker()

    with api_server.client() as client:
        _register(client, git_repo)
        run = _wait_finished(client, _push(client, git_repo, commit, "Break the build"))
        jobs = {job["key"]: job for job in run["jobs"]}
        build_log = _log_lines(client, jobs["build"]["id"])

    assert run["status"] == "failed"
    assert run["reason"] == "job build failed"
    assert jobs["build"]["status"] == "failed"
    assert jobs["build"]["exit_code"] == 3
    assert jobs["build"]["reason"] == "step 'Run echo compiling' failed with exit code 3"
    assert jobs["deploy"]["status"] == "skipped"
    assert build_log[-2:] == [
        ("stdout", "compiling"),
        ("system", "step 'Run echo compiling' failed with exit code 3"),
    ]


def test_invalid_pipeline_fails_run_with_position(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = "jobs:\n  build:\n    need: [lint]\n    steps:\n      - run: make\n"
    commit = git_repo.commit({".minijenkin.yml": pipeline}, "Typo")
    start_worker()

    with api_server.client() as client:
        _register(client, git_repo)
        run = _wait_finished(client, _push(client, git_repo, commit, "Typo"))
        plan_log = _log_lines(client, run["jobs"][0]["id"])

    expected = ".minijenkin.yml:3:5: jobs.build: unknown key 'need'; did you mean 'needs'?"
    assert run["status"] == "failed"
    assert run["reason"] == expected
    assert [job["key"] for job in run["jobs"]] == ["plan"]
    assert plan_log[-1] == ("system", expected)


def test_missing_pipeline_file_fails_run(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({"README.md": "no pipeline\n"}, "Init")
    start_worker()

    with api_server.client() as client:
        _register(client, git_repo)
        run = _wait_finished(client, _push(client, git_repo, commit, "Init"))

    assert run["status"] == "failed"
    assert run["reason"] == (f".minijenkin.yml: the pipeline file does not exist at commit "
                             f"{commit[:12]}, and .github/workflows holds no workflow (*.yml)")
