"""Request and response bodies of the REST API (they also shape the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from minijenkin.logs.search import CANDIDATE_CHUNKS, SCAN_CHUNKS

RunStatus = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled", "skipped",
                    "timed_out", "waiting", "awaiting_approval", "superseded"]
# The values of pipeline_runs.event (its CHECK constraint), as in runs.EVENTS.
RunEvent = Literal["push", "tag", "pull_request", "manual", "schedule", "api"]
Stream = Literal["stdout", "stderr", "system"]
# The path names of minijenkin.forges.registry.FORGES.
ForgeName = Literal["github", "gitlab", "gitea", "forgejo", "bitbucket"]
# The outcome of a webhook delivery (minijenkin.webhooks).
DeliveryOutcome = Literal["created", "duplicate", "ignored", "ping", "rejected"]

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


def reject_nul(value: str) -> str:
    """Raise ValueError for text with a NUL character, which PostgreSQL cannot store."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


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
        description="Shared secret of the forge webhook; without one, webhooks are refused. "
                    "Stored encrypted and never returned.",
    )
    default_branch: str = Field(
        default="main", min_length=1, max_length=255,
        description="Branch whose pipeline file defines the cron schedules.",
    )
    poll_interval_seconds: int | None = Field(
        default=None, ge=5, le=604800,
        description="Poll the repository with `git ls-remote` this often and build new heads; "
                    "null: no polling (webhooks only).",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return validate_git_url(value)


class RepoUpdate(Model):
    webhook_secret: str | None = Field(default=None, min_length=8, max_length=256,
                                       description="A new webhook secret.")
    default_branch: str | None = Field(
        default=None, min_length=1, max_length=255,
        description="Schedules are read again at the next head built on the new branch.")
    poll_interval_seconds: int | None = Field(
        default=None, ge=5, le=604800, description="A new polling interval in seconds.")
    disable_polling: bool = Field(default=False, description="Stop polling the repository.")


class Repo(BaseModel):
    id: int
    name: str
    url: str
    has_webhook_secret: bool
    default_branch: str = "main"
    poll_interval_seconds: int | None = None
    polled_at: dt.datetime | None = None
    poll_error: str | None = None
    schedules_commit: str | None = None
    schedules_synced_at: dt.datetime | None = None
    schedules_error: str | None = None
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
    has_capable_worker: bool = Field(
        description="False when no live worker offers every label in `labels`. "
                    "A queued job then waits until such a worker starts."
    )


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
    concurrency_group: str | None = Field(
        description="The pipeline-wide concurrency group, set once the run is planned. "
                    "One run of a group is active at a time; the others wait as pending runs.")
    jobs: list[JobSummary]


class RunList(BaseModel):
    runs: list[RunSummary]
    next_before: int | None = Field(
        description="Pass as `before` to fetch the next page; null on the last page."
    )


class RunCreated(BaseModel):
    run_id: int | None
    run_ids: list[int] = Field(default_factory=list,
                               description="Every run of the delivery (one per pushed ref).")
    detail: str | None = None
    duplicate: bool = False


_INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"


class RunCreate(Model):
    repo: str = Field(min_length=1, max_length=200, description="Repository name.",
                      examples=["acme/web"])
    ref: str = Field(min_length=1, max_length=255,
                     description="Branch or tag name, or a full ref such as refs/tags/v1.0.",
                     examples=["main"])
    # Checked by triggers.validate_commit, whose message names the expected format.
    commit: str | None = Field(
        default=None, max_length=64,
        description="Run this commit instead of the ref's current head: its full id, "
                    "40 (SHA-1) or 64 (SHA-256) hex digits.")
    inputs: dict[str, str | int | float | bool] = Field(
        default_factory=dict, max_length=50,
        description="Values for the pipeline's `workflow_dispatch` inputs.",
        examples=[{"environment": "staging", "dry_run": True}])

    @field_validator("repo")
    @classmethod
    def _check_repo(cls, value: str) -> str:
        return reject_nul(value)

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            if not re.match(_INPUT_NAME, name):
                raise ValueError(f"invalid input name {name!r}: use letters, digits, '_' and '-'")
            if isinstance(item, str) and len(item) > 65536:
                raise ValueError(f"input {name!r} is longer than 65536 characters")
            if isinstance(item, str) and "\x00" in item:
                raise ValueError(f"input {name!r} must not contain NUL characters")
            # Python's json module reads NaN and Infinity, which a jsonb column rejects.
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"input {name!r} must be a finite number, not {item}")
        return value


class WebhookDeliverySummary(BaseModel):
    id: int
    forge: str
    delivery_id: str | None
    accepted: bool
    repo_id: int | None
    repo_name: str | None
    event: str | None
    status_code: int | None
    outcome: str | None
    message: str | None
    run_id: int | None
    received_at: dt.datetime


class WebhookDelivery(WebhookDeliverySummary):
    headers: dict[str, str] = Field(description="Request headers, without credentials.")


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDeliverySummary]
    next_before: int | None = None


class SecretSet(Model):
    value: str = Field(min_length=4, max_length=65536,
                       description="The secret value; at least 4 characters so logs can mask it.")
    environment: str | None = Field(
        default=None, min_length=1, max_length=255,
        description="Environment the secret belongs to; null for the whole repository.")


class Secret(BaseModel):
    id: int
    repo_id: int
    environment: str | None
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime


class SecretList(BaseModel):
    secrets: list[Secret]


class VariableSet(Model):
    value: str = Field(max_length=49152, description="The variable's value, stored and shown in clear.")


class Variable(BaseModel):
    repo_id: int
    name: str
    value: str
    created_at: dt.datetime
    updated_at: dt.datetime


class VariableList(BaseModel):
    variables: list[Variable]


class TokenCreate(Model):
    name: str = Field(min_length=1, max_length=200, examples=["deploy bot"])
    scope: Literal["read", "trigger", "admin"]
    expires_days: int | None = Field(default=None, ge=1, le=3650,
                                     description="Days until the token stops working.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return reject_nul(value)


class Token(BaseModel):
    id: int
    name: str
    scope: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class TokenCreated(Token):
    token: str = Field(description="The token value, shown only in this response.")


class TokenList(BaseModel):
    tokens: list[Token]


class Schedule(BaseModel):
    id: int
    repo_id: int
    repo_name: str
    cron: str
    timezone: str
    ref: str
    commit: str
    next_run_at: dt.datetime | None = Field(
        description="Next tick; null for a moment after the schedule was read, until the cron "
                    "loop computes it.")
    last_tick_at: dt.datetime | None
    last_run_id: int | None


class ScheduleList(BaseModel):
    schedules: list[Schedule]


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
    html: str | None = Field(default=None, description="With `html=true`: the text as escaped "
                                                       "HTML, ANSI colours as inline styles.")


class LogPage(BaseModel):
    job_id: int
    attempt: int
    lines: list[LogLine]
    next_after: int = Field(description="Pass as `after` to read the following lines.")
    last_seq: int = Field(description="Highest seq stored so far for the attempt; 0 without lines.")
    complete: bool = Field(description="True when the attempt has ended and every line was read.")


class LogFindResult(BaseModel):
    job_id: int
    attempt: int
    seq: int | None = Field(description="The matching line's seq; null when no line matches.")
    continue_from: int | None = Field(
        default=None,
        description="Set when no line matched in the part of the log this request read but "
                    "more lines remain: pass it as `start` to search on.")


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
    truncated: bool = Field(description=(
        f"True when the search reached a work bound: it checks only the newest "
        f"{SCAN_CHUNKS:,} blocks of lines that hold every searched word and ranks the newest "
        f"{CANDIDATE_CHUNKS:,} that match, so older logs may hold more matches. Narrow the "
        f"search with repo, branch or since to reach them."))


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    version: str


class ErrorBody(BaseModel):
    detail: str
    field: str | None = None


class FieldError(BaseModel):
    field: str | None
    message: str


class ValidationErrorBody(BaseModel):
    """The body of a 422: invalid request fields, or input the domain rejected (no `errors`)."""

    detail: str
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing, unknown, revoked or expired token."},
    403: {"model": ErrorBody, "description": "The token's scope is too low."},
}


class MetricsView(BaseModel):
    name: str
    refreshed_at: dt.datetime
    duration_seconds: float


class FigureReading(BaseModel):
    figure: str = Field(description="Figure name, e.g. `queue_depth`.")
    metric: str = Field(description="Name of the same figure on `/metrics`.")
    unit: str
    labels: dict[str, str]
    value: float


class RepoMetrics(BaseModel):
    repo: str
    runs: int
    succeeded: int
    failed: int = Field(description="Runs that failed or timed out.")
    cancelled: int
    success_rate: float | None = Field(description="succeeded / (succeeded + failed).")
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    last_run_at: dt.datetime


class JobNameMetrics(BaseModel):
    repo: str
    name: str
    jobs: int
    attempts: int = Field(description="Attempts that succeeded, failed or timed out.")
    succeeded: int
    failed: int
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    commits: int = Field(description="(job key, commit) pairs the job ran at.")
    flaky_commits: int = Field(description="Pairs where an attempt failed and a later one "
                                           "succeeded.")
    flakiness: float = Field(description="flaky_commits / commits.")


class QueueWaitMetrics(BaseModel):
    labels: list[str] = Field(description="Worker labels the jobs require; empty for any worker.")
    attempts: int
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float | None


class Throughput(BaseModel):
    jobs: int = Field(description="Jobs that ended succeeded, failed or timed out.")
    succeeded: int
    failed: int
    jobs_per_hour: float


class MetricsSummary(BaseModel):
    window_days: int = Field(description="Days of runs that repositories, jobs and queue_wait "
                                         "cover.")
    refreshed_at: dt.datetime | None = Field(
        description="Oldest refresh time of the metrics views; null before the first refresh.")
    views: list[MetricsView]
    live: list[FigureReading] = Field(description="Live figures, read at request time.")
    repositories: list[RepoMetrics]
    jobs: list[JobNameMetrics] = Field(description="Flakiest first.")
    queue_wait: list[QueueWaitMetrics]
    throughput_last_24h: Throughput = Field(description="The last 24 complete UTC hours.")


class SeriesPoint(BaseModel):
    t: dt.datetime = Field(description="Start of the bucket.")
    value: float | None


class MetricsSeries(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    metric: str
    unit: str
    repo: str | None
    step: str
    from_: dt.datetime = Field(alias="from", serialization_alias="from")
    to: dt.datetime
    points: list[SeriesPoint]


ENVIRONMENT_NAME_MAX = 255


class LockHolder(BaseModel):
    """The job that holds an environment's deploy lock."""

    job_id: int
    run_id: int
    job_name: str
    since: dt.datetime


class QueuedDeploy(BaseModel):
    job_id: int
    run_id: int
    job_name: str
    status: RunStatus
    reason: str | None
    repo: str
    ref: str
    commit_sha: str
    created_at: dt.datetime


class Environment(BaseModel):
    name: str
    requires_approval: bool
    # Failed attempts to take the deploy lock since the environment was created.
    lock_failures: int
    waiting: int
    awaiting_approval: int
    holder: LockHolder | None
    created_at: dt.datetime
    updated_at: dt.datetime


class EnvironmentDetail(Environment):
    queue: list[QueuedDeploy]


class EnvironmentList(BaseModel):
    environments: list[Environment]


class EnvironmentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requires_approval: bool = Field(
        description="Hold every deploy to this environment until an admin approves it.")


class Deployment(BaseModel):
    id: int
    job_id: int
    run_id: int
    job_name: str
    status: str
    job_status: RunStatus
    reason: str | None
    repo: str
    ref: str
    commit_sha: str
    event: str
    trigger: dict[str, Any]
    lock_failures: int
    decision: Literal["approved", "rejected"] | None
    decided_by: str | None
    decided_at: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class DeploymentList(BaseModel):
    environment: Environment
    deployments: list[Deployment]
    queue: list[QueuedDeploy]
    next_before: int | None


class DecisionResult(BaseModel):
    job_id: int
    outcome: Literal["approved", "rejected"]
