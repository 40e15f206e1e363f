"""Turning database rows into API response models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from minijenkin.api import schemas


def duration_seconds(started: dt.datetime | None, finished: dt.datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started).total_seconds(), 3)


def job_summary(row: Mapping[str, Any]) -> schemas.JobSummary:
    return schemas.JobSummary(
        id=row["id"], run_id=row["run_id"], kind=row["kind"], key=row["key"], name=row["name"],
        status=row["status"], attempt=row["attempt"], exit_code=row["exit_code"],
        reason=row["reason"], labels=list(row["labels"]), needs=list(row["needs"]),
        created_at=row["created_at"], queued_at=row["queued_at"], started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_seconds=duration_seconds(row["started_at"], row["finished_at"]),
        has_capable_worker=row["has_capable_worker"],
    )


def job_detail(row: Mapping[str, Any]) -> schemas.Job:
    summary = job_summary(row).model_dump()
    return schemas.Job(
        **summary,
        repo_id=row["repo_id"], repo_name=row["repo_name"], max_attempts=row["max_attempts"],
        timeout_seconds=row["timeout_seconds"], continue_on_error=row["continue_on_error"],
        priority=row["priority"], run_after=row["run_after"],
        worker_id=str(row["worker_id"]) if row["worker_id"] else None,
        worker_name=row["worker_name"], cancel_requested_at=row["cancel_requested_at"],
        spec=row["spec"],
        attempts=[
            schemas.Attempt(**{**attempt, "worker_id": str(attempt["worker_id"])})
            for attempt in row["attempts"]
        ],
    )


def run_summary(row: Mapping[str, Any]) -> schemas.RunSummary:
    return schemas.RunSummary(
        id=row["id"], repo_id=row["repo_id"], repo_name=row["repo_name"], status=row["status"],
        event=row["event"], ref=row["ref"], commit=row["commit_sha"], message=row["message"],
        author=row["author"], reason=row["reason"], created_at=row["created_at"],
        started_at=row["started_at"], finished_at=row["finished_at"],
        duration_seconds=duration_seconds(row["started_at"], row["finished_at"]),
    )


def run_detail(row: Mapping[str, Any]) -> schemas.Run:
    return schemas.Run(
        **run_summary(row).model_dump(),
        before=row["before_sha"], trigger=row["trigger"],
        concurrency_group=row["concurrency_group"],
        jobs=[job_summary(job) for job in row["jobs"]],
    )
