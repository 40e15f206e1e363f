"""A real worker loads the secrets a job references, and only those."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

SECRET = "worker-secret-hook"
PIPELINE = """\
jobs:
  deploy:
    env:
      TOKEN: ${{ secrets.DEPLOY_TOKEN }}
    steps:
      - run: echo deploying
  lint:
    steps:
      - run: echo linting
"""


def test_worker_loads_referenced_secrets(api_server: ApiServer, db: psycopg.Connection,
                                         git_repo: GitRepo,
                                         start_worker: Callable[..., WorkerProcess]) -> None:
    commit = git_repo.commit({".minijenkin.yml": PIPELINE}, "Add pipeline")
    worker = start_worker()
    with api_server.client() as client:
        repo_id = client.post("/api/repos", json={"name": "acme/deploy", "url": git_repo.url,
                                                  "webhook_secret": SECRET}).json()["id"]
        client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN", json={"value": "s3cr3t-token"})
        client.put(f"/api/repos/{repo_id}/secrets/UNUSED", json={"value": "never-loaded"})
        body = encode(push_payload(full_name="acme/deploy", clone_url=git_repo.url, after=commit))
        run_id = client.post("/hooks/github", content=body,
                             headers=signed_headers(SECRET, body)).json()["run_id"]

        def finished() -> dict | None:
            run = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] not in ("pending", "queued", "running") else None

        try:
            run = wait_for(finished, timeout=90, interval=0.2, message="the run to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None

    assert run["status"] == "succeeded", worker.output()
    loaded = [line for line in worker.output().splitlines() if "action=job_secrets" in line]
    assert len(loaded) == 1
    assert "secrets=DEPLOY_TOKEN" in loaded[0]
    assert "s3cr3t-token" not in worker.output()
    assert "never-loaded" not in worker.output()
