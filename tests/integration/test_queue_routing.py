"""Which job a claim returns: labels, priorities, fairness and batches; cancel and re-run."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

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


def _plan_runs(db: psycopg.Connection, graphs: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """Create one run per repository name and submit its graph; return {repository: run id}.

    Every plan is claimed before any graph exists, so the planning worker
    claims plan jobs only.
    """
    run_ids = {name: create_run(db, create_repo(db, name)) for name in graphs}
    planner = register_worker(db)
    plans = {job["run_id"]: job for job in claim(db, planner, limit=len(graphs))}
    assert len(plans) == len(graphs)
    for name, graph in graphs.items():
        assert submit_plan(db, plans[run_ids[name]], graph) == "finished"
    return run_ids


def test_labels_must_be_subset_of_worker_labels(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("gpu", labels=["linux", "gpu"]), job_entry("any")])
    linux_only = register_worker(db, ["linux"])
    gpu_box = register_worker(db, ["gpu", "linux", "x64"])

    linux_claims = claim(db, linux_only, ["linux"])
    gpu_claims = claim(db, gpu_box, ["gpu", "linux", "x64"])

    assert [job["key"] for job in linux_claims] == ["any"]
    assert [job["key"] for job in gpu_claims] == ["gpu"]
    assert statuses(db, run_id) == {"plan": "succeeded", "gpu": "running", "any": "running"}


def test_priority_claimed_first_across_repositories(db: psycopg.Connection) -> None:
    _plan_runs(db, {
        "acme/low": [job_entry(f"low{index}") for index in range(3)],
        "acme/high": [job_entry("high", priority=5)],
        "acme/mid": [job_entry("mid", priority=2)],
    })
    worker_id = register_worker(db)

    order = [job["key"] for job in claim(db, worker_id, limit=1)]
    order += [job["key"] for job in claim(db, worker_id, limit=1)]
    order += [job["key"] for job in claim(db, worker_id, limit=3)]

    assert order == ["high", "mid", "low0", "low1", "low2"]


def test_fair_claim_serves_quiet_repository(db: psycopg.Connection) -> None:
    run_ids = _plan_runs(db, {
        "acme/busy": [job_entry(f"job{index:03d}") for index in range(500)],
        "acme/quiet": [job_entry("lonely")],
    })
    busy_run, quiet_run = run_ids["acme/busy"], run_ids["acme/quiet"]
    worker_id = register_worker(db)

    first = claim(db, worker_id, limit=1)
    second = claim(db, worker_id, limit=1)

    # The busy repository's jobs are older (smaller ids) and would all come
    # first in plain FIFO order; once it has a job running, the quiet
    # repository's job takes the next free slot.
    assert [(job["run_id"], job["key"]) for job in first] == [(busy_run, "job000")]
    assert [(job["run_id"], job["key"]) for job in second] == [(quiet_run, "lonely")]


def test_batch_claim_interleaves_repositories(db: psycopg.Connection) -> None:
    run_ids = _plan_runs(db, {
        "acme/busy": [job_entry(f"job{index:03d}") for index in range(500)],
        "acme/quiet": [job_entry("lonely")],
    })
    busy_run, quiet_run = run_ids["acme/busy"], run_ids["acme/quiet"]
    worker_id = register_worker(db)

    batch = claim(db, worker_id, limit=4)

    assert sorted((job["run_id"], job["key"]) for job in batch) == [
        (busy_run, "job000"), (busy_run, "job001"), (busy_run, "job002"), (quiet_run, "lonely")]


def test_batch_claim_returns_at_most_limit(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    start_run_with_graph(db, create_repo(db), planner, [job_entry(f"j{index}") for index in range(7)])
    worker_id = register_worker(db)

    assert len(claim(db, worker_id, limit=5)) == 5
    assert len(claim(db, worker_id, limit=5)) == 2
    assert claim(db, worker_id, limit=5) == []
    assert claim(db, worker_id, limit=0) == []


def test_claim_skips_jobs_waiting_for_backoff(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [job_entry("later")])
    db.execute("UPDATE jobs SET run_after = now() + interval '1 hour' WHERE run_id = %s "
               "AND key = 'later'", (run_id,))

    assert claim(db, register_worker(db)) == []


def test_cancel_queued_job_skips_dependents(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("build"), job_entry("deploy", ["build"])])
    build_id = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'build'",
                          (run_id,)).fetchone()["id"]

    outcome = db.execute("SELECT mj_job_cancel_v1(%s, 'by a user') AS o", (build_id,)).fetchone()

    assert outcome == {"o": "cancelled"}
    assert statuses(db, run_id) == {"plan": "succeeded", "build": "cancelled", "deploy": "skipped"}
    assert run_status(db, run_id) == "cancelled"


def test_cancel_running_job_notifies_its_worker(db: psycopg.Connection, database_url: str) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("build"), job_entry("deploy", ["build"])])
    build = claim(db, register_worker(db))[0]

    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN mj_cancel_v1")
        outcome = db.execute("SELECT mj_job_cancel_v1(%s, 'by a user') AS o",
                             (build["job_id"],)).fetchone()
        notes = list(listener.notifies(timeout=2, stop_after=1))

    assert outcome == {"o": "cancel_requested"}
    assert [(note.channel, note.payload) for note in notes] == [
        ("mj_cancel_v1", str(build["job_id"]))]
    assert statuses(db, run_id)["build"] == "running"

    assert finish(db, build, "cancelled", None, "cancelled") == "finished"
    assert statuses(db, run_id) == {"plan": "succeeded", "build": "cancelled", "deploy": "skipped"}
    assert run_status(db, run_id) == "cancelled"
    second = db.execute("SELECT mj_job_cancel_v1(%s, 'again') AS o", (build["job_id"],)).fetchone()
    assert second == {"o": "already_finished"}


def test_cancel_unknown_job_raises(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NoDataFound, match="job 424242 does not exist"):
        db.execute("SELECT mj_job_cancel_v1(424242, 'x')")


def test_cancel_run_ends_waiting_and_flags_running(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("a"), job_entry("b"), job_entry("c", ["a", "b"])])
    running = claim(db, register_worker(db), limit=1)[0]

    affected = db.execute("SELECT mj_run_cancel_v1(%s, 'by a user') AS n", (run_id,)).fetchone()

    assert affected == {"n": 3}
    assert statuses(db, run_id) == {"plan": "succeeded", running["key"]: "running",
                                    ({"a", "b"} - {running["key"]}).pop(): "cancelled",
                                    "c": "cancelled"}
    assert run_status(db, run_id) == "running"
    finish(db, running, "cancelled", None, "cancelled")
    assert run_status(db, run_id) == "cancelled"


def test_rerun_failed_only_requeues_failed_and_dependents(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("lint"), job_entry("build"), job_entry("deploy", ["build", "lint"])])
    worker_id = register_worker(db)
    jobs = {job["key"]: job for job in claim(db, worker_id)}
    finish(db, jobs["lint"])
    finish(db, jobs["build"], "failed", 1)
    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "succeeded", "build": "failed",
                                    "deploy": "skipped"}

    reset = db.execute("SELECT mj_run_rerun_v1(%s, true) AS n", (run_id,)).fetchone()

    assert reset == {"n": 2}
    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "succeeded", "build": "queued",
                                    "deploy": "pending"}
    assert run_status(db, run_id) == "running"
    build = claim(db, worker_id)
    assert [(job["key"], job["attempt"]) for job in build] == [("build", 2)]
    finish(db, build[0])
    deploy = claim(db, worker_id)
    assert [(job["key"], job["attempt"]) for job in deploy] == [("deploy", 1)]
    finish(db, deploy[0])
    assert run_status(db, run_id) == "succeeded"


def test_rerun_gives_fresh_retry_budget(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("flaky", retry={"max": 1, "script": True, "timeout": True, "infra": True})])
    worker_id = register_worker(db)
    for _ in range(2):
        db.execute("UPDATE jobs SET run_after = now() WHERE run_id = %s", (run_id,))
        finish(db, claim(db, worker_id)[0], "failed", 1)
    assert statuses(db, run_id)["flaky"] == "failed"

    db.execute("SELECT mj_run_rerun_v1(%s, true)", (run_id,))
    third = claim(db, worker_id)[0]

    assert third["attempt"] == 3
    assert finish(db, third, "failed", 1) == "retrying"


def test_rerun_of_active_run_is_rejected(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [job_entry("a")])

    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="is still active"):
        db.execute("SELECT mj_run_rerun_v1(%s, false)", (run_id,))


def test_rerun_drops_outputs_of_unclaimed_jobs(db: psycopg.Connection) -> None:
    planner = register_worker(db)
    run_id = start_run_with_graph(db, create_repo(db), planner, [
        job_entry("build"), job_entry("package", ["build"]),
        job_entry("report", ["package"], condition="always()")])
    worker_id = register_worker(db)
    finish(db, claim(db, worker_id)[0])
    package = claim(db, worker_id)[0]
    stored = db.execute("SELECT mj_job_outputs_set_v1(%s, %s, '{\"version\": \"1.0\"}') AS stored",
                        (package["job_id"], package["lease_token"])).fetchone()
    assert stored == {"stored": True}
    finish(db, package)
    finish(db, claim(db, worker_id)[0])

    db.execute("SELECT mj_run_rerun_v1(%s, false)", (run_id,))
    finish(db, claim(db, worker_id)[0], "failed", 1)
    report = claim(db, worker_id)
    outputs = db.execute("SELECT key, outputs FROM mj_job_needs_outputs_v1(%s, %s)",
                         (report[0]["job_id"], report[0]["lease_token"])).fetchall()

    assert statuses(db, run_id)["package"] == "skipped"
    assert [job["key"] for job in report] == ["report"]
    assert outputs == []
