"""SQL of the triggers: heads built once, schedules stored by plan jobs, ticks fired once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg

from tests.support.factories import claim, create_repo, register_worker

A, B, C = "a" * 40, "b" * 40, "c" * 40


def _head_run(db: psycopg.Connection, repo_id: int, commit: str, ref: str = "refs/heads/main",
              source: str = "webhook") -> dict[str, Any]:
    return db.execute("SELECT * FROM mj_run_create_for_head_v1(%s, 'push', %s, %s, NULL, NULL, "
                      "NULL, '{}', %s)", (repo_id, ref, commit, source)).fetchone()


def _plan(db: psycopg.Connection, run_id: int) -> dict[str, Any]:
    worker_id = register_worker(db)
    return [job for job in claim(db, worker_id) if job["run_id"] == run_id][0]


def _replace(db: psycopg.Connection, plan: dict[str, Any], commit: str,
             schedules: list[dict[str, str]], error: str | None = None) -> str:
    return db.execute("SELECT mj_schedules_replace_v1(%s, %s, %s, %s, %s) AS outcome",
                      (plan["job_id"], plan["lease_token"], commit, json.dumps(schedules),
                       error)).fetchone()["outcome"]


def _schedules(db: psycopg.Connection) -> list[tuple[str, str, str, object]]:
    rows = db.execute("SELECT cron, timezone, commit_sha, next_run_at FROM schedules "
                      "ORDER BY cron").fetchall()
    return [(row["cron"], row["timezone"], row["commit_sha"], row["next_run_at"]) for row in rows]


def test_head_starts_one_run(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)

    first = _head_run(db, repo_id, A, source="poll")
    again = _head_run(db, repo_id, A, source="webhook")
    other_ref = _head_run(db, repo_id, A, ref="refs/heads/release")

    assert first["created"] is True
    assert again == {"run_id": first["run_id"], "created": False}
    assert other_ref["created"] is True
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 2
    head = db.execute("SELECT source, run_id FROM ref_heads WHERE ref = 'refs/heads/main'").fetchone()
    assert head == {"source": "poll", "run_id": first["run_id"]}


def test_plan_of_default_branch_head_stores_schedules(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    run = _head_run(db, repo_id, A)
    feature = _head_run(db, repo_id, B, ref="refs/heads/feature")
    claimed = {job["run_id"]: job for job in claim(db, register_worker(db))}
    plan, feature_plan = claimed[run["run_id"]], claimed[feature["run_id"]]

    wanted = db.execute("SELECT mj_schedules_sync_wanted_v1(%s, %s) AS w",
                        (plan["job_id"], plan["lease_token"])).fetchone()["w"]
    feature_wanted = db.execute("SELECT mj_schedules_sync_wanted_v1(%s, %s) AS w",
                                (feature_plan["job_id"], feature_plan["lease_token"])).fetchone()["w"]
    outcome = _replace(db, plan, A, [{"cron": "0 6 * * *", "timezone": "Europe/Berlin"},
                                     {"cron": "@daily"}])

    assert (wanted, feature_wanted, outcome) == (True, False, "stored")
    assert _schedules(db) == [("0 6 * * *", "Europe/Berlin", A, None), ("@daily", "UTC", A, None)]
    repo = db.execute("SELECT schedules_commit, schedules_sync_commit, schedules_error "
                      "FROM repositories").fetchone()
    assert repo == {"schedules_commit": A, "schedules_sync_commit": None, "schedules_error": None}


def test_kept_schedule_keeps_its_next_tick(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    _replace(db, _plan(db, _head_run(db, repo_id, A)["run_id"]), A,
             [{"cron": "0 6 * * *"}, {"cron": "@hourly"}])
    tick = dt.datetime(2026, 12, 5, 6, 0, tzinfo=dt.UTC)
    db.execute("UPDATE schedules SET next_run_at = %s", (tick,))

    outcome = _replace(db, _plan(db, _head_run(db, repo_id, B)["run_id"]), B,
                       [{"cron": "0 6 * * *"}, {"cron": "30 5 * * 1-5"}])

    assert outcome == "stored"
    assert _schedules(db) == [("0 6 * * *", "UTC", B, tick), ("30 5 * * 1-5", "UTC", B, None)]


def test_older_head_cannot_overwrite_newer(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    older = _plan(db, _head_run(db, repo_id, A)["run_id"])
    _head_run(db, repo_id, B)

    assert _replace(db, older, A, [{"cron": "@daily"}]) == "stale"
    assert _schedules(db) == []


def test_invalid_file_keeps_schedules_and_records_error(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    _replace(db, _plan(db, _head_run(db, repo_id, A)["run_id"]), A, [{"cron": "@daily"}])

    outcome = _replace(db, _plan(db, _head_run(db, repo_id, B)["run_id"]), B, [],
                       error=".minijenkin.yml:3:11: on.schedule[0].cron: invalid cron expression")

    assert outcome == "stored"
    assert _schedules(db) == [("@daily", "UTC", A, None)]
    repo = db.execute("SELECT schedules_commit, schedules_error FROM repositories").fetchone()
    assert repo["schedules_commit"] == B
    assert repo["schedules_error"].endswith("invalid cron expression")


def test_schedule_tick_fires_once(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    _replace(db, _plan(db, _head_run(db, repo_id, A)["run_id"]), A, [{"cron": "@daily"}])
    expected = dt.datetime(2026, 12, 4, 0, 0, tzinfo=dt.UTC)
    following = expected + dt.timedelta(days=1)
    schedule_id = db.execute("UPDATE schedules SET next_run_at = %s RETURNING id",
                             (expected,)).fetchone()["id"]

    def fire() -> int | None:
        return db.execute("SELECT mj_schedule_fire_v1(%s, %s, %s, %s) AS run_id",
                          (schedule_id, expected, expected, following)).fetchone()["run_id"]

    first, second = fire(), fire()

    assert first is not None
    assert second is None
    run = db.execute("SELECT event, ref, commit_sha, trigger FROM pipeline_runs WHERE id = %s",
                     (first,)).fetchone()
    assert (run["event"], run["ref"], run["commit_sha"]) == ("schedule", "refs/heads/main", A)
    assert run["trigger"]["source"] == "schedule"
    assert run["trigger"]["schedule"]["cron"] == "@daily"
    row = db.execute("SELECT next_run_at, last_tick_at, last_run_id FROM schedules").fetchone()
    assert row == {"next_run_at": following, "last_tick_at": expected, "last_run_id": first}
