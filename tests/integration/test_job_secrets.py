"""mj_job_secrets_v1 and the worker step that decrypts a job's secrets."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from minijenkin.crypto import Keyring, generate_key
from minijenkin.db import create_pool
from minijenkin.queue.client import ClaimedJob
from minijenkin.secrets import secret_purpose
from minijenkin.worker.attempt_inputs import AttemptInputUnavailableError
from minijenkin.worker.secrets import load_job_secrets
from tests.support.factories import claim, create_repo, job_entry, register_worker, submit_plan

KEYRING = Keyring.from_text(generate_key())
SPEC = {
    "environment": "production",
    "env": {"TOKEN": "${{ secrets.DEPLOY_TOKEN }}", "PLAIN": "secrets.NOT_AN_EXPRESSION"},
    "steps": [{"name": "deploy", "run": "deploy --password \"${{ secrets['DB_PASSWORD'] }}\" "
                                        "${{ secrets.A_1 || secrets.B_2 }}", "env": {}}],
}


def _store(db: psycopg.Connection, repo_id: int, name: str, value: str,
           environment: str | None = None, keyring: Keyring = KEYRING) -> None:
    db.execute("INSERT INTO secrets (repo_id, environment, name, value_encrypted) "
               "VALUES (%s, %s, %s, %s)", (repo_id, environment, name, keyring.encrypt(
                   value, purpose=secret_purpose(repo_id, environment, name))))


def _script_job(db: psycopg.Connection, repo_id: int, trigger: dict[str, Any] | None = None,
                spec: dict[str, Any] | None = None) -> dict[str, Any]:
    worker_id = register_worker(db)
    run_id = db.execute("SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'm', 'a', "
                        "%s) AS id", (repo_id, "a" * 40, Jsonb(trigger or {}))).fetchone()["id"]
    plan = [job for job in claim(db, worker_id) if job["run_id"] == run_id][0]
    assert submit_plan(db, plan, [job_entry("deploy", spec=spec or SPEC)]) == "finished"
    return [job for job in claim(db, worker_id) if job["run_id"] == run_id][0]


def _secrets(db: psycopg.Connection, job: dict[str, Any]) -> list[tuple[str, str | None]]:
    rows = db.execute("SELECT name, environment FROM mj_job_secrets_v1(%s, %s) ORDER BY name",
                      (job["job_id"], job["lease_token"])).fetchall()
    return [(row["name"], row["environment"]) for row in rows]


def test_only_referenced_secrets_are_returned(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    for name in ("DEPLOY_TOKEN", "DB_PASSWORD", "A_1", "B_2", "UNUSED", "NOT_AN_EXPRESSION"):
        _store(db, repo_id, name, f"value of {name}")
    _store(db, repo_id, "DB_PASSWORD", "production password", environment="production")
    _store(db, repo_id, "DEPLOY_TOKEN", "staging token", environment="staging")
    other_repo = create_repo(db, "acme/other")
    _store(db, other_repo, "DEPLOY_TOKEN", "other repository's token")
    job = _script_job(db, repo_id)

    assert _secrets(db, job) == [("A_1", None), ("B_2", None), ("DB_PASSWORD", "production"),
                                 ("DEPLOY_TOKEN", None)]


def test_secret_references_are_found_in_expressions(db: psycopg.Connection) -> None:
    rows = db.execute("SELECT mj_secret_references(%s) AS name ORDER BY 1",
                      (json.dumps(SPEC),)).fetchall()

    assert [row["name"] for row in rows] == ["A_1", "B_2", "DB_PASSWORD", "DEPLOY_TOKEN"]


def test_stale_lease_gets_no_secrets(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    _store(db, repo_id, "DEPLOY_TOKEN", "token value")
    job = _script_job(db, repo_id)

    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState,
                       match=f"job {job['job_id']} is not running under this lease"):
        db.execute("SELECT * FROM mj_job_secrets_v1(%s, %s)", (job["job_id"], uuid.uuid4()))


def test_pull_request_from_fork_gets_no_secrets(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    _store(db, repo_id, "DEPLOY_TOKEN", "token value")
    fork = _script_job(db, repo_id, trigger={"pull_request": {"number": 1, "fork": True}})
    own = _script_job(db, repo_id, trigger={"pull_request": {"number": 2, "fork": False}})

    assert _secrets(db, fork) == []
    assert _secrets(db, own) == [("DEPLOY_TOKEN", None)]


def _claimed(job: dict[str, Any]) -> ClaimedJob:
    return ClaimedJob(**job)


async def _load(database_url: str, job: ClaimedJob, keyring: Keyring) -> None:
    pool = create_pool(database_url, application_name="test", max_size=1)
    await pool.open()
    try:
        await load_job_secrets(pool, lambda: keyring, job, {})
    finally:
        await pool.close()


def test_worker_step_decrypts_into_context(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    _store(db, repo_id, "DEPLOY_TOKEN", "token value")
    _store(db, repo_id, "DB_PASSWORD", "production password", environment="production")
    job = _claimed(_script_job(db, repo_id))

    asyncio.run(_load(database_url, job, KEYRING))

    assert job.context["secrets"] == {"DEPLOY_TOKEN": "token value",
                                      "DB_PASSWORD": "production password"}


def test_worker_step_reports_a_missing_key(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    _store(db, repo_id, "DEPLOY_TOKEN", "token value")
    job = _claimed(_script_job(db, repo_id))
    other = Keyring.from_text(generate_key())

    with pytest.raises(AttemptInputUnavailableError) as raised:
        asyncio.run(_load(database_url, job, other))

    assert raised.value.reason == (
        f"cannot decrypt secret 'DEPLOY_TOKEN': cannot decrypt a secret sealed with key "
        f"{KEYRING.active_id}: add that key to MINIJENKIN_SECRET_KEY (or the value was tampered with)")


def test_worker_step_gives_plan_jobs_nothing(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    db.execute("SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, NULL, NULL, '{}')",
               (repo_id, "a" * 40))
    plan = _claimed(claim(db, worker_id)[0])

    asyncio.run(_load(database_url, plan, KEYRING))

    assert plan.context["secrets"] == {}
