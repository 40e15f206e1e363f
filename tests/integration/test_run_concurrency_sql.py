"""Pipeline-wide concurrency groups in SQL: one active run per group and repository,
the others waiting as pending runs, cancel-in-progress, queue latest, re-runs, plans
submitted out of order or at once, several workflow files in one run, and the
maintenance sweep."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from minijenkin.pipeline import sources
from minijenkin.pipeline.events import Event
from tests.support.factories import (
    claim,
    create_repo,
    create_run,
    finish,
    register_worker,
    run_status,
    submit_plan,
)
from tests.support.sessions import BackgroundCall

GROUP = "ci-refs/heads/main"
SUBMIT_PLAN = "SELECT mj_plan_submit_v1(%s, %s, %s::jsonb)"


def _graph(*keys: str, group: str | None = GROUP, cancel_in_progress: bool = False,
           queue: str = "all") -> list[dict[str, Any]]:
    """Graph entries as the planner writes them: the group sits in every job's spec."""
    spec: dict[str, Any] = {"steps": []}
    if group is not None:
        spec["workflow_concurrency"] = {"group": group, "cancel_in_progress": cancel_in_progress,
                                        "queue": queue}
    return [{"key": key, "name": key, "needs": [], "labels": ["build"], "spec": spec}
            for key in keys]


def plan_run(db: psycopg.Connection, repo_id: int, graph: list[dict[str, Any]]) -> int:
    """Create a run and plan it as a worker would: claim the plan job, submit `graph`."""
    run_id = create_run(db, repo_id)
    # Script jobs need the label `build`, so a worker without labels claims plan jobs only.
    [plan] = claim(db, register_worker(db))
    assert (plan["run_id"], plan["kind"]) == (run_id, "plan")
    assert submit_plan(db, plan, graph) == "finished"
    return run_id


def _run(db: psycopg.Connection, run_id: int) -> dict[str, Any]:
    row = db.execute("SELECT status, reason, concurrency_group FROM pipeline_runs WHERE id = %s",
                     (run_id,)).fetchone()
    assert row is not None
    return row


def _jobs(db: psycopg.Connection, run_id: int) -> dict[str, str]:
    rows = db.execute("SELECT key, status FROM jobs WHERE run_id = %s AND kind = 'script'",
                      (run_id,)).fetchall()
    return {row["key"]: row["status"] for row in rows}


def _reasons(db: psycopg.Connection, run_id: int) -> set[str | None]:
    rows = db.execute("SELECT reason FROM jobs WHERE run_id = %s AND kind = 'script'",
                      (run_id,)).fetchall()
    return {row["reason"] for row in rows}


def _finish_all(db: psycopg.Connection, builder: uuid.UUID, run_id: int) -> None:
    jobs = claim(db, builder, ["build"])
    assert {job["run_id"] for job in jobs} == {run_id}
    for job in jobs:
        assert finish(db, job) == "finished"


@pytest.fixture
def repo_id(db: psycopg.Connection) -> int:
    return create_repo(db)


@pytest.fixture
def builder(db: psycopg.Connection) -> uuid.UUID:
    """The worker that runs script jobs (they all have the label `build`)."""
    return register_worker(db, ["build"])


def test_second_run_of_group_waits_for_the_first(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    first = plan_run(db, repo_id, _graph("lint", "test"))
    second = plan_run(db, repo_id, _graph("lint", "test"))

    assert _run(db, first) == {"status": "running", "reason": None, "concurrency_group": GROUP}
    assert _run(db, second) == {"status": "pending", "concurrency_group": GROUP,
                                "reason": f'waiting for run {first} of concurrency group "{GROUP}"'}
    assert _jobs(db, second) == {"lint": "pending", "test": "pending"}

    _finish_all(db, builder, first)

    assert run_status(db, first) == "succeeded"
    assert _run(db, second) == {"status": "running", "reason": None, "concurrency_group": GROUP}
    assert _jobs(db, second) == {"lint": "queued", "test": "queued"}
    _finish_all(db, builder, second)
    assert run_status(db, second) == "succeeded"


def test_waiting_runs_start_in_order(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    runs = [plan_run(db, repo_id, _graph("build")) for _ in range(3)]
    assert [run_status(db, run_id) for run_id in runs] == ["running", "pending", "pending"]
    assert _run(db, runs[2])["reason"] == f'waiting for run {runs[0]} of concurrency group "{GROUP}"'

    _finish_all(db, builder, runs[0])
    assert [run_status(db, run_id) for run_id in runs] == ["succeeded", "running", "pending"]
    _finish_all(db, builder, runs[1])
    assert [run_status(db, run_id) for run_id in runs] == ["succeeded", "succeeded", "running"]


def test_groups_are_scoped_to_name_and_repository(
    db: psycopg.Connection, repo_id: int,
) -> None:
    other_repo = create_repo(db, "acme/api")
    first = plan_run(db, repo_id, _graph("build"))
    other_group = plan_run(db, repo_id, _graph("build", group="ci-refs/heads/dev"))
    same_name_other_repo = plan_run(db, other_repo, _graph("build"))
    no_group = plan_run(db, repo_id, _graph("build", group=None))

    assert [run_status(db, run_id) for run_id in (first, other_group, same_name_other_repo,
                                                   no_group)] == ["running"] * 4
    assert _run(db, no_group)["concurrency_group"] is None


def test_cancel_in_progress_replaces_older_runs(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    first = plan_run(db, repo_id, _graph("build", "deploy", cancel_in_progress=True))
    [running] = [job for job in claim(db, builder, ["build"], limit=1)]
    # A run without the flag waits; the next run with it cancels both.
    waiting = plan_run(db, repo_id, _graph("build"))
    assert run_status(db, waiting) == "pending"

    newest = plan_run(db, repo_id, _graph("build", cancel_in_progress=True))

    reason = f"cancelled in progress by run {newest}"
    assert run_status(db, waiting) == "cancelled"
    assert _reasons(db, waiting) == {reason}
    # The older run's queued job ended at once; its running job was asked to stop.
    assert _jobs(db, first)[running["key"]] == "running"
    assert db.execute("SELECT cancel_requested_at IS NOT NULL AS asked, reason FROM jobs WHERE id = %s",
                      (running["job_id"],)).fetchone() == {"asked": True, "reason": reason}
    assert _run(db, newest) == {"status": "pending", "concurrency_group": GROUP,
                                "reason": f'waiting for run {first} of concurrency group "{GROUP}"'}

    assert finish(db, running, "cancelled", None, "cancelled") == "finished"

    assert run_status(db, first) == "cancelled"
    assert run_status(db, newest) == "running"
    assert _jobs(db, newest) == {"build": "queued"}


def test_queue_latest_supersedes_waiting_runs_only(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    holder = plan_run(db, repo_id, _graph("build", queue="latest"))
    waiting = plan_run(db, repo_id, _graph("build", queue="latest"))
    latest = plan_run(db, repo_id, _graph("build", queue="latest"))

    assert run_status(db, holder) == "running"
    assert run_status(db, waiting) == "cancelled"
    assert _reasons(db, waiting) == {f"superseded by run {latest}"}
    assert run_status(db, latest) == "pending"

    _finish_all(db, builder, holder)
    assert [run_status(db, run_id) for run_id in (holder, waiting, latest)] == [
        "succeeded", "cancelled", "running"]


def test_cancelling_runs_of_a_group(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    holder = plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))
    third = plan_run(db, repo_id, _graph("build"))

    assert db.execute("SELECT mj_run_cancel_v1(%s, 'by alice') AS n", (waiting,)).fetchone()["n"] == 1
    assert [run_status(db, run_id) for run_id in (holder, waiting, third)] == [
        "running", "cancelled", "pending"]

    # Cancelling the active run starts the next waiting one once it has ended.
    assert db.execute("SELECT mj_run_cancel_v1(%s, 'by bob') AS n", (holder,)).fetchone()["n"] == 1
    assert [run_status(db, run_id) for run_id in (holder, waiting, third)] == [
        "cancelled", "cancelled", "running"]
    _finish_all(db, builder, third)
    assert run_status(db, third) == "succeeded"


def test_rerun_queues_behind_the_active_run(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    first = plan_run(db, repo_id, _graph("build"))
    _finish_all(db, builder, first)
    second = plan_run(db, repo_id, _graph("build"))
    assert run_status(db, second) == "running"

    assert db.execute("SELECT mj_run_rerun_v1(%s, false) AS n", (first,)).fetchone()["n"] == 1
    assert _run(db, first) == {"status": "pending", "concurrency_group": GROUP,
                               "reason": f'waiting for run {second} of concurrency group "{GROUP}"'}
    assert _jobs(db, first) == {"build": "pending"}

    _finish_all(db, builder, second)
    assert run_status(db, first) == "running"
    _finish_all(db, builder, first)
    assert run_status(db, first) == "succeeded"

    # With no other active run, the re-run starts at once.
    assert db.execute("SELECT mj_run_rerun_v1(%s, false) AS n", (second,)).fetchone()["n"] == 1
    assert _run(db, second) == {"status": "running", "reason": None, "concurrency_group": GROUP}
    assert _jobs(db, second) == {"build": "queued"}


def test_group_sweep_starts_run_left_waiting(
    db: psycopg.Connection, database_url: str, repo_id: int, builder: uuid.UUID,
) -> None:
    holder = plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))
    sweep = "SELECT run_id, repo_id, concurrency_group FROM mj_run_group_sweep_v1()"

    with psycopg.connect(database_url, autocommit=True) as other:
        # Another transaction deciding for the group holds its lock while the
        # holder ends: the closing run does not wait for it, and starts nothing.
        with other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(mj_lock_namespace(), "
                          "mj_lock_key(mj_run_group_lock_name(%s, %s)))", (repo_id, GROUP))
            _finish_all(db, builder, holder)
            assert run_status(db, waiting) == "pending"
            assert db.execute(sweep).fetchall() == []

    assert db.execute(sweep).fetchall() == [
        {"run_id": waiting, "repo_id": repo_id, "concurrency_group": GROUP}]
    assert run_status(db, waiting) == "running"
    assert db.execute(sweep).fetchall() == []


def test_reasons_follow_the_active_run(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    runs = [plan_run(db, repo_id, _graph("build")) for _ in range(3)]
    _finish_all(db, builder, runs[0])

    assert _run(db, runs[2])["reason"] == f'waiting for run {runs[1]} of concurrency group "{GROUP}"'


def test_rerun_waits_behind_runs_already_waiting(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    old = plan_run(db, repo_id, _graph("build"))
    _finish_all(db, builder, old)
    active = plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))

    assert db.execute("SELECT mj_run_rerun_v1(%s, false) AS n", (old,)).fetchone()["n"] == 1
    _finish_all(db, builder, active)

    # Runs start in the order they entered the group, not by run id.
    assert [run_status(db, run_id) for run_id in (waiting, old)] == ["running", "pending"]
    assert _run(db, old)["reason"] == f'waiting for run {waiting} of concurrency group "{GROUP}"'


def test_late_older_plan_gives_way(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    older = create_run(db, repo_id)
    newer = create_run(db, repo_id)
    plans = {job["run_id"]: job for job in claim(db, register_worker(db))}
    graph = _graph("build", cancel_in_progress=True)

    # The newer push's plan ends first, as with a faster planner.
    assert submit_plan(db, plans[newer], graph) == "finished"
    assert submit_plan(db, plans[older], graph) == "finished"

    assert (run_status(db, older), run_status(db, newer)) == ("cancelled", "running")
    assert _reasons(db, older) == {f"superseded by run {newer}"}
    _finish_all(db, builder, newer)
    assert (run_status(db, older), run_status(db, newer)) == ("cancelled", "succeeded")


def test_late_older_plan_waits_without_cancel(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    older = create_run(db, repo_id)
    newer = create_run(db, repo_id)
    plans = {job["run_id"]: job for job in claim(db, register_worker(db))}

    assert submit_plan(db, plans[newer], _graph("build")) == "finished"
    assert submit_plan(db, plans[older], _graph("build")) == "finished"

    assert (run_status(db, older), run_status(db, newer)) == ("pending", "running")
    _finish_all(db, builder, newer)
    assert run_status(db, older) == "running"


CI_WORKFLOW = """\
on: push
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: make test
"""

DEPLOY_WORKFLOW = """\
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - run: ./deploy.sh
"""


def _plan_files(files: dict[str, str]) -> sources.Plan:
    results = sources.parse_sources([sources.SourceFile(path, text.encode())
                                     for path, text in files.items()])
    plan = sources.plan_run(results, Event(kind="push", ref="refs/heads/main", commit="a" * 40), ())
    assert plan.errors == []
    for entry in plan.graph:
        entry["labels"] = ["build"]
    return plan


def test_unshared_file_group_not_applied(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    files = {".github/workflows/ci.yml": CI_WORKFLOW, ".github/workflows/deploy.yml": DEPLOY_WORKFLOW}
    plan = _plan_files(files)
    first = plan_run(db, repo_id, plan.graph)
    assert {job["key"] for job in claim(db, builder, ["build"])} == {"ci/test", "deploy/deploy"}

    second = plan_run(db, repo_id, _plan_files(files).graph)

    assert (".github/workflows/ci.yml: concurrency group 'ci-refs/heads/main' not applied: this run "
            "also holds jobs of pipeline files without that same group") in plan.notes
    assert [entry["spec"].get("workflow_concurrency") for entry in plan.graph] == [None, None]
    assert (_run(db, first)["concurrency_group"], run_status(db, first)) == (None, "running")
    assert _jobs(db, first) == {"ci/test": "running", "deploy/deploy": "running"}
    assert _jobs(db, second) == {"ci/test": "queued", "deploy/deploy": "queued"}


def test_disagreeing_entries_get_no_group(
    db: psycopg.Connection, repo_id: int,
) -> None:
    graph = [*_graph("a"), *_graph("b", group="other")]

    run_id = plan_run(db, repo_id, graph)

    assert _run(db, run_id) == {"status": "running", "reason": None, "concurrency_group": None}


def test_worker_role_finish_starts_next_run(
    db: psycopg.Connection, database_url: str, repo_id: int, builder: uuid.UUID,
) -> None:
    holder = plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))
    [job] = claim(db, builder, ["build"])

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as worker:
        worker.execute("SET ROLE minijenkin_worker")
        assert finish(worker, job) == "finished"

    assert [run_status(db, run_id) for run_id in (holder, waiting)] == ["succeeded", "running"]


def test_concurrent_submissions_no_deadlock(
    db: psycopg.Connection, database_url: str, repo_id: int,
) -> None:
    # Found by review: a submission that cancelled the active run took the
    # group's lock as that run closed. It then waited for a waiting run's row,
    # which another submission held while it waited for the group's lock.
    plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))
    plan_run(db, repo_id, _graph("build"))
    n_run = create_run(db, repo_id)
    m_run = create_run(db, repo_id)
    plans = {job["run_id"]: job for job in claim(db, register_worker(db))}

    with psycopg.connect(database_url, autocommit=True) as blocker:
        # A short transaction on the waiting run's row forces the interleaving.
        with blocker.transaction():
            blocker.execute("SELECT 1 FROM pipeline_runs WHERE id = %s FOR UPDATE", (waiting,))
            calls = {}
            for name, run_id, graph in (("M", m_run, _graph("build", queue="latest")),
                                        ("N", n_run, _graph("build", cancel_in_progress=True))):
                plan = plans[run_id]
                calls[name] = BackgroundCall(database_url, SUBMIT_PLAN,
                                             (plan["job_id"], plan["lease_token"], Jsonb(graph)))
                calls[name].wait_until_blocked(db)
            group_locks = db.execute(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = %s AND objid::int = mj_lock_key(mj_run_group_lock_name(%s, %s))",
                (calls["N"].pid, repo_id, GROUP)).fetchone()
            assert group_locks["n"] == 0

    assert [call.join() for call in calls.values()] == [True, True]
    assert calls["M"].result == [("finished",)]
    assert calls["N"].result == [("finished",)]
    # N, the older push, entered second: it cancelled the group's older runs,
    # then gave way to M, which now runs.
    assert (run_status(db, m_run), run_status(db, n_run)) == ("running", "cancelled")
    assert _reasons(db, n_run) == {f"superseded by run {m_run}"}


def test_submission_and_reaper_no_deadlock(
    db: psycopg.Connection, database_url: str, repo_id: int,
) -> None:
    # Found by review: worker X runs the active run's job and the next run's
    # plan job, and is declared lost while it submits that plan. The reaper
    # locks runs in id order, but the submission locked its own (newer) run
    # first and then the older run it cancels in progress.
    active = plan_run(db, repo_id, _graph("build", cancel_in_progress=True))
    worker_x = register_worker(db, ["build"])
    [build] = claim(db, worker_x, ["build"])
    assert build["run_id"] == active
    planned = create_run(db, repo_id)
    [plan] = claim(db, worker_x, ["build"])
    assert (plan["run_id"], plan["kind"]) == (planned, "plan")
    db.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (worker_x,))

    with psycopg.connect(database_url, autocommit=True) as blocker:
        # Holding the active run's job row stops the reaper once it has locked that run.
        with blocker.transaction():
            blocker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (build["job_id"],))
            reaper = BackgroundCall(database_url, "SELECT job_id FROM mj_reap_v1(30, 0.1, 1)")
            reaper.wait_until_blocked(db)
            submission = BackgroundCall(database_url, SUBMIT_PLAN, (
                plan["job_id"], plan["lease_token"], Jsonb(_graph("build", cancel_in_progress=True))))
            submission.wait_until_blocked(db)

    assert [reaper.join(), submission.join()] == [True, True]
    assert sorted(reaper.result) == [(build["job_id"],), (plan["job_id"],)]
    # The reaper took the plan job back first, so the submission's lease is gone.
    assert submission.result == [("stale",)]


def test_rerun_after_failed_plan_goes_ahead(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    older = create_run(db, repo_id)
    newer = create_run(db, repo_id)
    planner = register_worker(db)
    plans = {job["run_id"]: job for job in claim(db, planner)}
    assert finish(db, plans[older], "failed", 1, "cannot fetch the repository") == "finished"
    graph = _graph("build", cancel_in_progress=True)
    assert submit_plan(db, plans[newer], graph) == "finished"
    _finish_all(db, builder, newer)

    assert db.execute("SELECT mj_run_rerun_v1(%s, false) AS n", (older,)).fetchone()["n"] == 1
    [plan] = claim(db, planner)
    assert plan["run_id"] == older
    assert submit_plan(db, plan, graph) == "finished"

    # The newer run has ended, so the re-run older one is not superseded.
    assert _run(db, older) == {"status": "running", "reason": None, "concurrency_group": GROUP}
    assert _jobs(db, older) == {"build": "queued"}


def test_rerun_of_unplanned_cancelled_run_goes_ahead(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    # Cancelled while its plan job was still queued, so no attempt was ever made.
    older = create_run(db, repo_id)
    assert db.execute("SELECT mj_run_cancel_v1(%s, 'cancelled by a user') AS n",
                      (older,)).fetchone()["n"] == 1
    newer = create_run(db, repo_id)
    planner = register_worker(db)
    [plan] = claim(db, planner)
    assert plan["run_id"] == newer
    graph = _graph("build", cancel_in_progress=True)
    assert submit_plan(db, plan, graph) == "finished"
    _finish_all(db, builder, newer)

    assert db.execute("SELECT mj_run_rerun_v1(%s, false) AS n", (older,)).fetchone()["n"] == 1
    [plan] = claim(db, planner)
    assert plan["run_id"] == older
    assert submit_plan(db, plan, graph) == "finished"

    # A user re-ran it, so the newer run of the group does not supersede it.
    assert _run(db, older) == {"status": "running", "reason": None, "concurrency_group": GROUP}
    assert _jobs(db, older) == {"build": "queued"}


def test_worker_role_cycle_starts_next_run(
    db: psycopg.Connection, database_url: str, repo_id: int, builder: uuid.UUID,
) -> None:
    holder = plan_run(db, repo_id, _graph("build"))
    waiting = plan_run(db, repo_id, _graph("build"))
    [job] = claim(db, builder, ["build"])

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as worker:
        worker.execute("SET ROLE minijenkin_worker")
        rows = worker.execute(
            "SELECT * FROM mj_job_finish_and_claim_v1(%s, %s, 4, %s, %s, %s, %s, %s, 0.1, 1)",
            (builder, ["build"], [job["job_id"]], [job["lease_token"]], ["succeeded"], [0],
             [None])).fetchall()
        assert [row["outcome"] for row in rows] == ["finished"]
        # The next run started at that commit: the following claim gets its job.
        claimed = worker.execute(
            "SELECT * FROM mj_job_finish_and_claim_v1(%s, %s, 4, '{}', '{}', '{}', '{}', '{}', 0.1, 1)",
            (builder, ["build"])).fetchall()

    assert [run_status(db, run_id) for run_id in (holder, waiting)] == ["succeeded", "running"]
    assert [row["run_id"] for row in claimed] == [waiting]


def test_late_older_plan_yields_to_ended_run(
    db: psycopg.Connection, repo_id: int, builder: uuid.UUID,
) -> None:
    older = create_run(db, repo_id)
    newer = create_run(db, repo_id)
    plans = {job["run_id"]: job for job in claim(db, register_worker(db))}
    graph = _graph("build", cancel_in_progress=True)
    assert submit_plan(db, plans[newer], graph) == "finished"
    _finish_all(db, builder, newer)

    assert submit_plan(db, plans[older], graph) == "finished"

    assert run_status(db, older) == "cancelled"
    assert _reasons(db, older) == {f"superseded by run {newer}"}


def test_stale_submission_and_rerun_no_deadlock(
    db: psycopg.Connection, database_url: str, repo_id: int, builder: uuid.UUID,
) -> None:
    # Found by review: a worker declared lost while it planned the run submits
    # late, just as a user re-runs the run (planned again and ended since).
    # The re-run holds the run's row and waits for the group's lock, so the
    # late submission must not hold that lock while it waits for the row.
    run_id = create_run(db, repo_id)
    worker_x = register_worker(db)
    [stale_plan] = claim(db, worker_x)
    db.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (worker_x,))
    assert [row["outcome"] for row in db.execute("SELECT * FROM mj_reap_v1(30, 0.1, 1)")] == ["retrying"]
    db.execute("UPDATE jobs SET run_after = now() WHERE id = %s", (stale_plan["job_id"],))
    [plan] = claim(db, register_worker(db))
    assert submit_plan(db, plan, _graph("build")) == "finished"
    _finish_all(db, builder, run_id)

    with psycopg.connect(database_url, autocommit=True) as blocker:
        with blocker.transaction():
            blocker.execute("SELECT mj_lock_xact_v1(mj_run_group_lock_name(%s, %s))", (repo_id, GROUP))
            # The re-run locks the run and waits for the group's lock.
            rerun = BackgroundCall(database_url, "SELECT mj_run_rerun_v1(%s, false)", (run_id,))
            rerun.wait_until_blocked(db)
            submission = BackgroundCall(database_url, SUBMIT_PLAN, (
                stale_plan["job_id"], stale_plan["lease_token"], Jsonb(_graph("build"))))
            assert submission.join()

    assert rerun.join()
    assert submission.result == [("stale",)]
    assert rerun.result == [(1,)]
