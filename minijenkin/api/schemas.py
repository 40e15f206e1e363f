"""Request and response bodies of the REST API (they also shape the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RunStatus = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled", "skipped",
                    "timed_out"]
Stream = Literal["stdout", "stderr", "system"]

_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
# scp-like syntax: [user@]host:path, as in git@github.com:team/project.git
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//)[^\s]+$")


def validate_git_url(url: str) -> str:
    """Accept the URL forms git clones from, and nothing it would run as a command."""
    if any(char.isspace() or ord(char) < 32 for char in url):
        raise ValueError("must not contain whitespace or control characters")
    if url.startswith("-"):
        raise ValueError("must not start with '-'")
    if "::" in url.split("/", 1)[0]:
        raise ValueError("remote helpers such as 'ext::' are not allowed")
    if url.startswith(_URL_SCHEMES) or url.startswith("/") or _SCP_LIKE.match(url):
        return url
    raise ValueError(
        "must be a git URL: https://, http://, ssh://, git://, file://, an absolute path, "
        "or user@host:path"
    )


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoCreate(Model):
    name: str = Field(
        min_length=1, max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$",
        description="Unique name, usually the forge's `owner/project`.",
        examples=["acme/web"],
    )
    url: str = Field(min_length=1, max_length=2048, description="Git URL the workers clone.",
                     examples=["https://github.com/acme/web.git"])
    webhook_secret: str | None = Field(
        default=None, min_length=8, max_length=256,
        description="Shared secret of the forge webhook; without one, webhooks are refused.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return validate_git_url(value)


class Repo(BaseModel):
    id: int
    name: str
    url: str
    has_webhook_secret: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    last_run_id: int | None = None
    last_run_status: RunStatus | None = None


class RepoList(BaseModel):
    repos: list[Repo]


class Attempt(BaseModel):
    attempt: int
    worker_id: str | None
    worker_name: str | None
    status: str
    exit_code: int | None
    reason: str | None
    queued_at: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class JobSummary(BaseModel):
    id: int
    run_id: int
    kind: Literal["plan", "script"]
    key: str
    name: str
    status: RunStatus
    attempt: int
    exit_code: int | None
    reason: str | None
    labels: list[str]
    needs: list[str]
    created_at: dt.datetime
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None


class Job(JobSummary):
    repo_id: int
    repo_name: str
    max_attempts: int
    timeout_seconds: int | None
    continue_on_error: bool
    priority: int
    run_after: dt.datetime
    worker_id: str | None
    worker_name: str | None
    cancel_requested_at: dt.datetime | None
    has_capable_worker: bool = Field(
        description="False when no live worker offers every label in `labels`."
    )
    spec: dict[str, Any]
    attempts: list[Attempt]


class RunSummary(BaseModel):
    id: int
    repo_id: int
    repo_name: str
    status: RunStatus
    event: str
    ref: str
    commit: str
    message: str | None
    author: str | None
    reason: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None


class Run(RunSummary):
    before: str | None
    trigger: dict[str, Any]
    jobs: list[JobSummary]


class RunList(BaseModel):
    runs: list[RunSummary]
    next_before: int | None = Field(
        description="Pass as `before` to fetch the next page; null on the last page."
    )


class RunCreated(BaseModel):
    run_id: int | None
    detail: str | None = None
    duplicate: bool = False


class CancelResult(BaseModel):
    affected: int | None = None
    outcome: str | None = None


class RerunResult(BaseModel):
    reset: int


class LogLine(BaseModel):
    seq: int
    stream: Stream
    ts: dt.datetime
    text: str


class LogPage(BaseModel):
    job_id: int
    attempt: int
    lines: list[LogLine]
    next_after: int = Field(description="Pass as `after` to read the following lines.")
    complete: bool = Field(description="True when the attempt has ended and every line was read.")


class LogEnd(BaseModel):
    """Data of the final `end` event of a log stream."""

    job_id: int
    attempt: int = Field(description="0 when the job ended without ever running.")
    status: str
    exit_code: int | None
    reason: str | None
    last_seq: int | None = None


class SearchHit(BaseModel):
    job_id: int
    attempt: int
    run_id: int
    repo: str
    ref: str
    job_key: str
    job_name: str
    seq: int = Field(description="Line number: the line's seq within the attempt's log.")
    stream: Stream
    ts: dt.datetime
    rank: float = Field(description="Relevance of the block of lines around the hit; "
                                    "hits are ordered by it.")
    line_rank: float
    snippet: str = Field(description="Part of the line around the matched words, as plain text.")
    snippet_html: str = Field(description="The snippet HTML-escaped, matches wrapped in <mark>.")
    job_url: str
    log_url: str = Field(description="The attempt's log page starting at this line.")


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHit]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    version: str


class ErrorBody(BaseModel):
    detail: str
    field: str | None = None


AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown, revoked or expired token."},
    403: {"model": ErrorBody, "description": "The token's scope is too low."},
}
