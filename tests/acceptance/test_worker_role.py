"""Workers connected as the restricted role minijenkin_worker.

A login role in the group role runs a whole pipeline, secrets included,
and a session of that role cannot read secrets, API tokens or other jobs'
rows, nor change runs except through a lease it holds.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests.support.api import ApiServer
from tests.support.factories import claim, create_repo, create_run, register_worker
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.postgres import PgServer
from tests.support.queue import add_repo, job_id, job_status, plan_run, run_finished, script_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

HOOK_SECRET = "worker-role-hook"
PIPELINE = """\
jobs:
  build:
    steps:
      - run: echo building > build.txt
      - run: seq 1 20000
  deploy:
    needs: [build]
    environment: staging
    env:
      TOKEN: ${{ secrets.DEPLOY_TOKEN }}
    steps:
      - run: test "$TOKEN" = "role-s3cret" && echo "token is ${#TOKEN} characters"
"""


@pytest.fixture
def worker_role_url(pg_server: PgServer, database_url: str) -> Iterator[str]:
    """A connection URL for a fresh login role that is a member of minijenkin_worker."""
    role = f"mj_test_worker_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE minijenkin_worker").format(
            sql.Identifier(role)))
    params = conninfo_to_dict(database_url)
    params["user"] = role
    yield make_conninfo("", **params)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                      (role,))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def as_worker(worker_role_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(worker_role_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def test_worker_role_runs_pipeline(api_server: ApiServer, db: psycopg.Connection,
                                   git_repo: GitRepo, worker_role_url: str,
                                   start_worker: Callable[..., WorkerProcess]) -> None:
    commit = git_repo.commit({".minijenkin.yml": PIPELINE}, "Add pipeline")
    role = conninfo_to_dict(worker_role_url)["user"]
    worker = start_worker(MINIJENKIN_WORKER_DATABASE_URL=worker_role_url)
    with api_server.client() as client:
        repo_id = client.post("/api/repos", json={"name": "acme/role", "url": git_repo.url,
                                                  "webhook_secret": HOOK_SECRET}).json()["id"]
        client.put(f"/api/repos/{repo_id}/secrets/DEPLOY_TOKEN", json={"value": "role-s3cret"})
        body = encode(push_payload(full_name="acme/role", clone_url=git_repo.url, after=commit))
        run_id = client.post("/hooks/github", content=body,
                             headers=signed_headers(HOOK_SECRET, body)).json()["run_id"]

        def finished() -> dict | None:
            run = client.get(f"/api/runs/{run_id}").json()
            return run if run["status"] not in ("pending", "queued", "running") else None

        try:
            run = wait_for(finished, timeout=90, interval=0.2, message="the run to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None
        jobs = {job["key"]: job for job in client.get(f"/api/runs/{run_id}").json()["jobs"]}
        deploy_log = client.get(f"/api/jobs/{jobs['deploy']['id']}/logs").json()["lines"]

    assert run["status"] == "succeeded", worker.output()
    assert {key: job["status"] for key, job in jobs.items()} == {
        "plan": "succeeded", "build": "succeeded", "deploy": "succeeded"}
    assert "token is 11 characters" in [line["text"] for line in deploy_log]
    sessions = db.execute(
        "SELECT usename, count(*) AS sessions FROM pg_stat_activity "
        "WHERE application_name LIKE 'minijenkin-worker%%' AND datname = current_database() "
        "GROUP BY usename").fetchall()
    assert [row["usename"] for row in sessions] == [role]
    assert "log_ship_error" not in worker.output()
    # More than 64 KiB of output: the worker role must store it without
    # writing job_logs directly.
    printed = db.execute("SELECT count(*) AS n, count(DISTINCT line) AS distinct_lines "
                         "FROM job_logs WHERE job_id = %s AND line ~ '^[0-9]+$'",
                         (jobs["build"]["id"],)).fetchone()
    assert printed == {"n": 20000, "distinct_lines": 20000}
    deployments = db.execute("SELECT environment, status FROM deployments WHERE job_id = %s",
                             (jobs["deploy"]["id"],)).fetchall()
    assert [(row["environment"], row["status"]) for row in deployments] == [("staging", "succeeded")]


@pytest.fixture
def other_job(db: psycopg.Connection) -> dict:
    """A running job of another worker that references a stored secret."""
    repo_id = create_repo(db, "acme/other")
    db.execute("INSERT INTO secrets (repo_id, name, value_encrypted) VALUES (%s, 'API_KEY', 'v1:x')",
               (repo_id,))
    owner = register_worker(db)
    run_id = create_run(db, repo_id)
    plan = claim(db, owner)[0]
    graph = [{"key": "deploy", "name": "deploy", "needs": [], "labels": [],
              "spec": {"env": {"KEY": "${{ secrets.API_KEY }}"}, "steps": [{"run": "true"}]}}]
    db.execute("SELECT mj_plan_submit_v1(%s, %s, %s::jsonb)",
               (plan["job_id"], plan["lease_token"], json.dumps(graph)))
    job = claim(db, owner)[0]
    assert job["run_id"] == run_id
    return job


TABLE_READS = [
    "SELECT value_encrypted FROM secrets",
    "SELECT token_hash FROM api_tokens",
    "SELECT webhook_secret FROM repositories",
    "SELECT spec FROM jobs",
    "SELECT line FROM job_logs",
    "SELECT payload FROM outbox",
]


@pytest.mark.parametrize("query", TABLE_READS)
def test_worker_role_cannot_read_tables(as_worker: psycopg.Connection, query: str) -> None:
    with pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for table"):
        as_worker.execute(query)


def test_worker_role_cannot_read_other_secrets(as_worker: psycopg.Connection, db: psycopg.Connection,
                                               other_job: dict) -> None:
    # With its lease token the job gets its secret (the owner's view)...
    own = db.execute("SELECT name FROM mj_job_secrets_v1(%s, %s)",
                     (other_job["job_id"], other_job["lease_token"])).fetchall()
    assert [row["name"] for row in own] == ["API_KEY"]

    # ...while a worker without the token gets an error and no row.
    with pytest.raises(pg_errors.ObjectNotInPrerequisiteState, match="is not running under this lease"):
        as_worker.execute("SELECT * FROM mj_job_secrets_v1(%s, %s)",
                          (other_job["job_id"], uuid.uuid4()))


def test_worker_role_cannot_write_other_runs(as_worker: psycopg.Connection, db: psycopg.Connection,
                                             other_job: dict) -> None:
    job_id, run_id = other_job["job_id"], other_job["run_id"]

    with pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for table"):
        as_worker.execute("UPDATE pipeline_runs SET status = 'succeeded' WHERE id = %s", (run_id,))
    with pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for table"):
        as_worker.execute("UPDATE jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
    with pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for function"):
        as_worker.execute("SELECT mj_run_cancel_v1(%s::bigint, NULL)", (run_id,))

    outcome = as_worker.execute(
        "SELECT mj_job_finish_v1(%s, %s, 'succeeded', 0, NULL, 1, 1) AS outcome",
        (job_id, uuid.uuid4())).fetchone()["outcome"]
    assert outcome == "stale"
    plan = as_worker.execute("SELECT mj_plan_submit_v1(%s, %s, '[]'::jsonb) AS outcome",
                             (job_id, uuid.uuid4())).fetchone()["outcome"]
    assert plan == "stale"
    stopped = as_worker.execute("SELECT mj_worker_stop_v1(%s) AS job_id",
                                (uuid.uuid4(),)).fetchall()
    assert stopped == []

    job = db.execute("SELECT status, attempt FROM jobs WHERE id = %s", (job_id,)).fetchone()
    assert job == {"status": "running", "attempt": 1}
    assert db.execute("SELECT status FROM pipeline_runs WHERE id = %s",
                      (run_id,)).fetchone()["status"] == "running"


def test_worker_role_can_only_run_worker_functions(as_worker: psycopg.Connection,
                                                   db: psycopg.Connection) -> None:
    rows = as_worker.execute(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND has_function_privilege(p.oid, 'EXECUTE') "
        "ORDER BY p.proname").fetchall()
    names = db.execute("SELECT mj_worker_function_names() AS names").fetchone()["names"]
    assert [row["proname"] for row in rows] == sorted(names)
    assert "mj_job_claim_v1" in names


def test_forged_cancel_notice_ignored(db: psycopg.Connection, git_repo: GitRepo,
                                      as_worker: psycopg.Connection,
                                      start_worker: Callable[..., WorkerProcess]) -> None:
    repo_id, commit = add_repo(db, git_repo)
    run_id = plan_run(db, repo_id, commit, [script_job("slow", "sleep 2; echo finished")])
    slow = job_id(db, run_id, "slow")
    worker = start_worker()
    wait_for(lambda: job_status(db, slow) == "running", timeout=30, interval=0.05,
             message="the job to start")

    # Any role may NOTIFY; the job is not cancelled in the database.
    as_worker.execute("SELECT pg_notify('mj_cancel_v1', %s)", (str(slow),))

    wait_for(lambda: run_finished(db, run_id), timeout=30, interval=0.1, message="the run to finish")
    assert run_finished(db, run_id) == "succeeded", worker.output()
