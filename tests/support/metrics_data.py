"""A small history with known metrics, written straight into the tables.

Timestamps are explicit so that every figure has one right answer. Day D is
three UTC days ago (inside the 30-day windows), and every run starts and
ends between 10:00 and 15:00 of its day, so nothing crosses midnight.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field

import psycopg

C1, C2, C3, C9 = ("1" * 40, "2" * 40, "3" * 40, "9" * 40)


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont, with the same float arithmetic (float8 lerp)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    first = math.floor(position)
    low = ordered[first]
    if first + 1 >= len(ordered):
        return low
    high = ordered[first + 1]
    return low + (high - low) * (position - first)


@dataclass
class Attempt:
    status: str
    # Seconds from the run's creation to when the attempt was queued, or None
    # when the attempt has no queued_at (the wait then counts from the job's
    # creation, which is the run's creation here).
    queued: float | None
    wait: float
    duration: float


@dataclass
class Seeded:
    day: dt.date
    repo_ids: dict[str, int] = field(default_factory=dict)
    run_ids: dict[str, int] = field(default_factory=dict)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _run(db: psycopg.Connection, repo_id: int, *, status: str, created: dt.datetime,
         duration: float, commit: str) -> int:
    started = created + dt.timedelta(seconds=5)
    row = db.execute(
        """
        INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at, started_at,
                                   finished_at)
        VALUES (%s, %s, 'push', 'refs/heads/main', %s, %s, %s, %s) RETURNING id
        """,
        (repo_id, status, commit, created, started, started + dt.timedelta(seconds=duration)),
    ).fetchone()
    return row["id"]


def _job(db: psycopg.Connection, run_id: int, repo_id: int, created: dt.datetime, *, key: str,
         kind: str = "script", labels: list[str] | None = None,
         attempts: list[Attempt]) -> int:
    """Insert a finished job whose status and times are those of its last attempt."""
    worker_id = uuid.uuid4()
    rows = []
    for number, attempt in enumerate(attempts, start=1):
        queued = None if attempt.queued is None else created + dt.timedelta(seconds=attempt.queued)
        started = (queued or created) + dt.timedelta(seconds=attempt.wait)
        finished = started + dt.timedelta(seconds=attempt.duration)
        rows.append((number, attempt.status, queued, started, finished))
    last = rows[-1]
    job_status = "failed" if last[1] == "lost" else last[1]
    job_id = db.execute(
        """
        INSERT INTO jobs (run_id, repo_id, kind, key, name, status, labels, attempt, created_at,
                          queued_at, started_at, finished_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (run_id, repo_id, kind, key, key, job_status, labels or [], len(rows), created, last[2],
         last[3], last[4]),
    ).fetchone()["id"]
    for number, status, queued, started, finished in rows:
        db.execute(
            """
            INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, queued_at,
                                      started_at, finished_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (job_id, number, worker_id, uuid.uuid4(), status, queued, started, finished),
        )
    return job_id


def seed_history(db: psycopg.Connection, today: dt.date) -> Seeded:
    """Write the dataset whose expected figures the EXPECTED_* constants below state."""
    day = today - dt.timedelta(days=3)
    next_day = day + dt.timedelta(days=1)
    seeded = Seeded(day=day)
    for name in ("acme/web", "acme/api"):
        seeded.repo_ids[name] = db.execute(
            "INSERT INTO repositories (name, url) VALUES (%s, 'file:///nowhere') RETURNING id",
            (name,)).fetchone()["id"]
    web, api = seeded.repo_ids["acme/web"], seeded.repo_ids["acme/api"]

    runs = {
        # name: (repo, status, created, duration, commit)
        "r0": (web, "succeeded", at(today - dt.timedelta(days=40), 10), 5000, C9),
        "r1": (web, "succeeded", at(day, 10), 100, C1),
        "r2": (web, "failed", at(day, 11), 200, C2),
        "r3": (web, "succeeded", at(day, 12), 300, C2),
        "r4": (web, "timed_out", at(day, 13), 400, C3),
        "r5": (web, "cancelled", at(day, 14), 50, C3),
        "r6": (web, "failed", at(next_day, 10), 60, C3),
        "r7": (api, "succeeded", at(day, 10, 30), 1000, C1),
    }
    created = {}
    for name, (repo_id, status, when, duration, commit) in runs.items():
        seeded.run_ids[name] = _run(db, repo_id, status=status, created=when, duration=duration,
                                    commit=commit)
        created[name] = (repo_id, when)

    def job(run: str, key: str, attempts: list[Attempt], **extra: object) -> None:
        repo_id, when = created[run]
        _job(db, seeded.run_ids[run], repo_id, when, key=key, attempts=attempts, **extra)

    linux = ["linux"]
    # Outside the 30-day window: must not change the windowed figures.
    job("r0", "test", [Attempt("failed", 0, 7, 700)], labels=linux)
    # C1: failed, then succeeded on the automatic retry: flaky.
    job("r1", "test", [Attempt("failed", 0, 5, 30), Attempt("succeeded", 40, 15, 40)], labels=linux)
    job("r1", "lint", [Attempt("succeeded", 0, 2, 10)])
    job("r1", "plan", [Attempt("succeeded", None, 1, 3)], kind="plan")
    # C2: failed in r2, succeeded in r3, a later run of the same commit: flaky.
    job("r2", "test", [Attempt("failed", 0, 25, 50)], labels=linux)
    # A lost attempt is neither a failure nor a duration.
    job("r2", "lint", [Attempt("lost", 0, 4, 999), Attempt("succeeded", 1010, 6, 20)])
    job("r3", "test", [Attempt("succeeded", 0, 35, 60)], labels=linux)
    # C3: succeeded in r4, then failed in r6: not flaky (no success after the failure).
    job("r4", "test", [Attempt("succeeded", 0, 45, 70)], labels=linux)
    job("r6", "test", [Attempt("failed", 0, 55, 80)], labels=linux)
    job("r7", "build", [Attempt("succeeded", 0, 3, 900)], labels=["docker", "linux"])
    return seeded


# Durations of the succeeded, failed or timed-out runs.
RUN_DURATIONS_WEB_DAY = [100.0, 200.0, 300.0, 400.0]
RUN_DURATIONS_ALL_DAY = [100.0, 200.0, 300.0, 400.0, 1000.0]
RUN_DURATIONS_WEB_WINDOW = [100.0, 200.0, 300.0, 400.0, 60.0]

# Attempt durations and (job key, commit) pairs of job "test" in the window.
TEST_DURATIONS = [30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
LINT_DURATIONS = [10.0, 20.0]

# Queue waits of every attempt, by the day it started.
WAITS_ALL_DAY = [5.0, 15.0, 2.0, 1.0, 25.0, 4.0, 6.0, 35.0, 45.0, 3.0]
WAITS_ALL_NEXT_DAY = [55.0]
WAITS_WEB_DAY = [5.0, 15.0, 2.0, 1.0, 25.0, 4.0, 6.0, 35.0, 45.0]
# Queue waits in the window, by label set.
WAITS_LINUX = [5.0, 15.0, 25.0, 35.0, 45.0, 55.0]
WAITS_NO_LABELS = [2.0, 1.0, 4.0, 6.0]
WAITS_DOCKER_LINUX = [3.0]
