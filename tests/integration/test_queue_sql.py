"""The queue's SQL functions, called directly: claim, finish, fencing, graph, runs."""

from __future__ import annotations

import psycopg

from minijenkin.queue.client import claimed_jobs
from tests.support.factories import (
    claim,
    create_repo,
    create_run,
    finish,
    job_entry,
    register_worker,
    run_status,
    start_run_with_graph,
    statuses,
    submit_plan,
)


def test_run_create_queues_plan_job(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)

    run_id = create_run(db, repo_id)

    assert statuses(db, run_id) == {"plan": "queued"}
    assert run_status(db, run_id) == "queued"


def test_claim_marks_job_running_with_lease(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    run_id = create_run(db, repo_id)
    worker_id = register_worker(db)

    jobs = claim(db, worker_id)

    assert len(jobs) == 1
    assert jobs[0]["kind"] == "plan"
    assert jobs[0]["attempt"] == 1
    assert jobs[0]["context"]["run"]["commit"] == "a" * 40
    assert jobs[0]["context"]["repo"]["name"] == "acme/web"
    row = db.execute("SELECT status, worker_id, lease_token FROM jobs WHERE id = %s",
                     (jobs[0]["job_id"],)).fetchone()
    assert row["status"] == "running"
    assert row["worker_id"] == worker_id
    assert row["lease_token"] == jobs[0]["lease_token"]
    assert run_status(db, run_id) == "running"
    # The running attempt lives in the job row until it ends, and only then gets a history row.
    recorded = db.execute("SELECT count(*) AS n FROM job_attempts WHERE job_id = %s",
                          (jobs[0]["job_id"],)).fetchone()
    assert recorded == {"n": 0}


def test_finish_records_the_attempt(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    create_run(db, repo_id)
    worker_id = register_worker(db)
    [job] = claim(db, worker_id)

    assert finish(db, job, "failed", exit_code=3) == "finished"

    attempt = db.execute(
        "SELECT attempt, worker_id, lease_token, status, exit_code, started_at IS NOT NULL AS started, "
        "finished_at >= started_at AS ordered FROM job_attempts WHERE job_id = %s",
        (job["job_id"],)).fetchall()
    assert attempt == [{"attempt": 1, "worker_id": worker_id, "lease_token": job["lease_token"],
                        "status": "failed", "exit_code": 3, "started": True, "ordered": True}]


def test_claim_v2_sends_each_run_context_once(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    first, second = create_run(db, repo_id), create_run(db, repo_id)
    plans = claim(db, worker_id)
    assert submit_plan(db, plans[0], [
        job_entry("lint"), job_entry("test"), job_entry("package", ["lint", "test"])]) == "finished"
    assert submit_plan(db, plans[1], [job_entry("build")]) == "finished"

    rows = db.execute("SELECT * FROM mj_job_claim_v2(%s, '{}', 10)", (worker_id,)).fetchall()

    assert [(row["run_id"], row["key"]) for row in rows] == [
        (first, "lint"), (first, "test"), (second, "build")]
    assert [row["run_context"] is not None for row in rows] == [True, False, True]
    assert [row["needs"] for row in rows] == [None, None, None]
    jobs = claimed_jobs(rows)
    run = db.execute("SELECT * FROM pipeline_runs WHERE id = %s", (first,)).fetchone()
    assert jobs[1].context == {
        "repo": {"id": repo_id, "name": "acme/web", "url": "file:///nowhere"},
        "run": {"id": first, "event": "push", "ref": "refs/heads/main", "commit": "a" * 40,
                "before": None, "message": "message", "author": "author",
                "trigger": run["trigger"]},
        "needs": {}}
    assert jobs[2].run["id"] == second
    # Each job has its own context dict: the worker adds the job's secrets to it.
    assert jobs[0].context is not jobs[1].context

    for row in rows[:2]:
        assert finish(db, row) == "finished"
    [package] = db.execute("SELECT * FROM mj_job_claim_v2(%s, '{}', 10)", (worker_id,)).fetchall()
    assert package["key"] == "package"
    assert package["needs"] == {"lint": "succeeded", "test": "succeeded"}
    assert claimed_jobs([package])[0].context["needs"] == {"lint": "succeeded", "test": "succeeded"}


def test_claim_v1_keeps_one_context_per_job(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    other_repo = create_repo(db, name="acme/api")
    worker_id = register_worker(db)
    first, second = create_run(db, repo_id), create_run(db, other_repo)
    plans = {plan["run_id"]: plan for plan in claim(db, worker_id)}
    assert submit_plan(db, plans[first], [job_entry("lint"), job_entry("test", ["lint"])]) == "finished"
    assert submit_plan(db, plans[second], [job_entry("build")]) == "finished"

    jobs = claim(db, worker_id)

    assert [(job["run_id"], job["key"]) for job in jobs] == [(first, "lint"), (second, "build")]
    assert [job["context"]["run"]["id"] for job in jobs] == [first, second]
    assert [job["context"]["repo"]["name"] for job in jobs] == ["acme/web", "acme/api"]
    assert [job["context"]["needs"] for job in jobs] == [{}, {}]
    assert finish(db, jobs[0]) == "finished"
    [test] = claim(db, worker_id)
    assert test["key"] == "test"
    assert test["context"]["needs"] == {"lint": "succeeded"}
    assert test["context"]["run"]["id"] == first


def test_claim_by_unregistered_worker_gets_nothing(db: psycopg.Connection) -> None:
    import uuid

    create_run(db, create_repo(db))

    assert claim(db, uuid.uuid4()) == []


def test_plan_graph_queues_roots_and_holds_dependents(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)

    run_id = start_run_with_graph(db, repo_id, worker_id, [
        job_entry("lint"), job_entry("test"), job_entry("package", ["lint", "test"]),
    ])

    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "queued", "test": "queued",
                                    "package": "pending"}


def test_dependent_queued_only_after_all_needs_succeed(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [
        job_entry("lint"), job_entry("test"), job_entry("package", ["lint", "test"]),
    ])
    jobs = {job["key"]: job for job in claim(db, worker_id)}

    assert finish(db, jobs["lint"]) == "finished"
    assert statuses(db, run_id)["package"] == "pending"
    assert finish(db, jobs["test"]) == "finished"
    assert statuses(db, run_id)["package"] == "queued"

    package = claim(db, worker_id)[0]
    assert finish(db, package) == "finished"
    assert run_status(db, run_id) == "succeeded"


def test_failed_need_skips_dependents_and_fails_run(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [
        job_entry("build"), job_entry("test", ["build"]), job_entry("deploy", ["test"]),
    ])
    build = claim(db, worker_id)[0]

    assert finish(db, build, "failed", 2, "step 'make' failed with exit code 2") == "finished"

    assert statuses(db, run_id) == {"plan": "succeeded", "build": "failed", "test": "skipped",
                                    "deploy": "skipped"}
    run = db.execute("SELECT status, reason, finished_at FROM pipeline_runs WHERE id = %s",
                     (run_id,)).fetchone()
    assert run["status"] == "failed"
    assert run["reason"] == "job build failed"
    assert run["finished_at"] is not None


def test_continue_on_error_counts_as_success(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [
        job_entry("flaky", continue_on_error=True), job_entry("after", ["flaky"]),
    ])
    flaky = claim(db, worker_id)[0]

    finish(db, flaky, "failed", 1)
    after = claim(db, worker_id)[0]
    finish(db, after)

    assert statuses(db, run_id) == {"plan": "succeeded", "flaky": "failed", "after": "succeeded"}
    assert run_status(db, run_id) == "succeeded"


def test_finish_with_wrong_lease_is_stale(db: psycopg.Connection) -> None:
    import uuid

    repo_id = create_repo(db)
    worker_id = register_worker(db)
    create_run(db, repo_id)
    job = claim(db, worker_id)[0]
    forged = {**job, "lease_token": uuid.uuid4()}

    assert finish(db, forged, "failed", 1) == "stale"
    status = db.execute("SELECT status FROM jobs WHERE id = %s", (job["job_id"],)).fetchone()
    assert status["status"] == "running"


def test_finish_twice_second_is_stale(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [job_entry("only")])
    job = claim(db, worker_id)[0]

    assert finish(db, job, "succeeded") == "finished"
    assert finish(db, job, "failed", 1) == "stale"
    assert statuses(db, run_id)["only"] == "succeeded"


def test_plan_with_no_jobs_skips_run(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = create_run(db, repo_id)
    plan = claim(db, worker_id)[0]

    assert submit_plan(db, plan, []) == "finished"

    run = db.execute("SELECT status, reason FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()
    assert run == {"status": "skipped", "reason": "no workflow matches this event"}


def test_failed_plan_fails_run_with_reason(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = create_run(db, repo_id)
    plan = claim(db, worker_id)[0]

    finish(db, plan, "failed", None, ".minijenkin.yml:3:5: jobs.a: unknown key 'need'")

    run = db.execute("SELECT status, reason FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()
    assert run == {"status": "failed", "reason": ".minijenkin.yml:3:5: jobs.a: unknown key 'need'"}


def test_notify_carries_only_ids(db: psycopg.Connection, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN mj_jobs_v1")
        run_id = create_run(db, create_repo(db))
        notes = list(listener.notifies(timeout=2, stop_after=1))

    assert [(note.channel, note.payload) for note in notes] == [("mj_jobs_v1", str(run_id))]
