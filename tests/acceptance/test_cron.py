"""Cron schedules with two API processes: one run per tick, one run after downtime."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from minijenkin.config import Settings
from tests.support.api import ApiProcess, ApiServer
from tests.support.factories import claim, create_repo, register_worker
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

PIPELINE = """\
on:
  push:
  schedule:
    - cron: "0 6 * * *"
      timezone: Europe/Berlin
jobs:
  nightly:
    steps:
      - run: echo nightly
"""
BERLIN = ZoneInfo("Europe/Berlin")
FAST_LOOPS = {"MINIJENKIN_MAINTENANCE_INTERVAL_SECONDS": "0.2"}


@pytest.fixture
def start_api(database_url: str, data_dir: Path,
              tmp_path: Path) -> Iterator[Callable[[], ApiProcess]]:
    started: list[ApiProcess] = []

    def start() -> ApiProcess:
        process = ApiProcess(database_url, data_dir, tmp_path / f"api-{len(started)}.log",
                             **FAST_LOOPS)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def _next_six_berlin(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(BERLIN)
    candidate = dt.datetime.combine(local.date(), dt.time(6), tzinfo=BERLIN)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(6),
                                        tzinfo=BERLIN)
    return candidate.astimezone(dt.UTC)


def _schedule_runs(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT id, ref, commit_sha, trigger FROM pipeline_runs "
                      "WHERE event = 'schedule' ORDER BY id").fetchall()


def _schedule(db: psycopg.Connection) -> dict | None:
    """The repository's one schedule, once the cron loop has computed its first tick."""
    return db.execute("SELECT id, cron, timezone, ref, commit_sha, next_run_at, last_tick_at "
                      "FROM schedules WHERE next_run_at IS NOT NULL").fetchone()


def test_cron_one_run_per_tick_two_processes(
    start_api: Callable[[], ApiProcess], db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": PIPELINE}, "Add nightly schedule")
    first, second = start_api(), start_api()
    worker = start_worker()
    with first.client() as client:
        # The first poll builds the default branch; its plan job reads the schedule.
        response = client.post("/api/repos", json={"name": "acme/nightly", "url": git_repo.url,
                                                   "poll_interval_seconds": 3600})
        assert response.status_code == 201, response.text

    schedule = wait_for(lambda: _schedule(db), timeout=60, message="the schedule to be read")
    assert "action=schedule_read" in worker.output()
    now = db.execute("SELECT now() AS now").fetchone()["now"]
    assert (schedule["cron"], schedule["timezone"], schedule["ref"], schedule["commit_sha"]) == (
        "0 6 * * *", "Europe/Berlin", "refs/heads/main", commit)
    assert schedule["next_run_at"] == _next_six_berlin(now)
    with second.client() as client:
        listed = client.get("/api/schedules").json()["schedules"]
    assert [(item["cron"], item["repo_name"], item["commit"]) for item in listed] == [
        ("0 6 * * *", "acme/nightly", commit)]

    # Downtime: both processes stop and three daily ticks pass unseen.
    first.stop()
    second.stop()
    upcoming = schedule["next_run_at"]
    db.execute("UPDATE schedules SET next_run_at = %s", (upcoming - dt.timedelta(days=3),))
    assert _schedule_runs(db) == []
    first, second = start_api(), start_api()

    runs = wait_for(lambda: _schedule_runs(db), timeout=60, message="the missed tick to fire")
    fired = wait_for(lambda: (row := _schedule(db)) and row["next_run_at"] > now and row,
                     timeout=30, message="next_run_at to move on")
    assert len(runs) == 1
    assert runs[0]["ref"] == "refs/heads/main"
    assert runs[0]["commit_sha"] == commit
    latest_missed = upcoming - dt.timedelta(days=1)
    assert dt.datetime.fromisoformat(runs[0]["trigger"]["schedule"]["tick"]) == latest_missed
    assert fired["last_tick_at"] == latest_missed
    assert fired["next_run_at"] == upcoming

    # While both processes run, every tick that comes fires exactly once.
    for round_number in range(1, 4):
        db.execute("UPDATE schedules SET next_run_at = %s",
                   (upcoming - dt.timedelta(days=1, hours=round_number),))
        wait_for(lambda expected=round_number + 1: len(_schedule_runs(db)) >= expected,
                 timeout=60, message=f"tick {round_number} to fire")
        wait_for(lambda: _schedule(db)["next_run_at"] == upcoming, timeout=30,
                 message="next_run_at to move on")
    # Stop both, so that nothing can fire after the count below.
    first.stop()
    second.stop()

    runs = _schedule_runs(db)
    assert len(runs) == 4
    fired_by = [process.output().count("action=schedule_fire") for process in (first, second)]
    assert sum(fired_by) == 4


def test_schedule_list_shows_pending_first_tick(settings: Settings, database_url: str,
                                                db: psycopg.Connection) -> None:
    repo_id = create_repo(db, "acme/nightly")
    run_id = db.execute("SELECT run_id FROM mj_run_create_for_head_v1(%s, 'push', 'refs/heads/main', "
                        "%s, NULL, NULL, NULL, '{}', 'webhook')", (repo_id, "a" * 40)).fetchone()["run_id"]
    plan = [job for job in claim(db, register_worker(db)) if job["run_id"] == run_id][0]
    db.execute("SELECT mj_schedules_replace_v1(%s, %s, %s, %s, NULL)",
               (plan["job_id"], plan["lease_token"], "a" * 40, '[{"cron": "@daily"}]'))
    server = ApiServer(settings, database_url, maintenance=False).start()
    try:
        with server.client() as client:
            listed = client.get("/api/schedules", params={"repo_id": repo_id})
    finally:
        server.stop()

    assert listed.status_code == 200
    assert [(item["cron"], item["timezone"], item["next_run_at"], item["commit"])
            for item in listed.json()["schedules"]] == [("@daily", "UTC", None, "a" * 40)]


NIGHTLY_WORKFLOW = """\
name: Nightly
on:
  schedule:
    - cron: "15 3 * * *"
jobs:
  nightly:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo nightly
"""
WEEKLY_WORKFLOW = """\
name: Weekly
on:
  schedule:
    - cron: "@weekly"
jobs:
  weekly:
    runs-on: ubuntu-latest
    steps:
      - run: echo weekly
"""


def _ready_schedules(db: psycopg.Connection) -> list[dict]:
    """The schedules whose first tick the cron loop has computed, by cron."""
    return db.execute("SELECT id, cron, timezone, commit_sha FROM schedules "
                      "WHERE next_run_at IS NOT NULL ORDER BY cron").fetchall()


def test_cron_reads_github_workflow_schedules(
    start_api: Callable[[], ApiProcess], db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".github/workflows/nightly.yml": NIGHTLY_WORKFLOW,
                              ".github/workflows/weekly.yml": WEEKLY_WORKFLOW},
                             "Add scheduled workflows")
    api = start_api()
    start_worker()
    with api.client() as client:
        response = client.post("/api/repos", json={"name": "acme/gha", "url": git_repo.url,
                                                   "poll_interval_seconds": 3600})
        assert response.status_code == 201, response.text

    listed = wait_for(lambda: len(rows := _ready_schedules(db)) == 2 and rows,
                      timeout=60, message="both workflow schedules to be read")
    assert [(row["cron"], row["timezone"], row["commit_sha"]) for row in listed] == [
        ("15 3 * * *", "UTC", commit), ("@weekly", "UTC", commit)]
    repo = db.execute("SELECT schedules_error FROM repositories").fetchone()
    assert repo["schedules_error"] is None

    # Fire the nightly schedule only: its run holds the nightly workflow's job alone.
    nightly_id = listed[0]["id"]
    db.execute("UPDATE schedules SET next_run_at = now() - interval '1 minute' WHERE id = %s",
               (nightly_id,))
    run = wait_for(lambda: db.execute(
        "SELECT id, status, trigger FROM pipeline_runs WHERE event = 'schedule' "
        "AND status IN ('succeeded', 'failed', 'cancelled', 'skipped')").fetchone(),
        timeout=60, message="the scheduled run to end")
    assert run["status"] == "succeeded"
    assert run["trigger"]["schedule"]["cron"] == "15 3 * * *"
    jobs = db.execute("SELECT key FROM jobs WHERE run_id = %s AND kind = 'script' ORDER BY key",
                      (run["id"],)).fetchall()
    assert [job["key"] for job in jobs] == ["nightly"]
