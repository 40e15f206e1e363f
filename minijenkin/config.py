"""Settings read once at start-up from `MINIJENKIN_*` environment variables.

The object is built by `load_settings()` and passed explicitly; nothing reads
the environment after start-up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000

WORKER_CONCURRENCY_DEFAULT = 4
WORKER_CONCURRENCY_MAX = 1024
HEARTBEAT_SECONDS_DEFAULT = 5.0
HEARTBEAT_SECONDS_MIN = 0.2
LEASE_SECONDS_DEFAULT = 30.0
POLL_SECONDS_DEFAULT = 5.0
POLL_SECONDS_MIN = 0.05
LISTEN_CHECK_SECONDS_DEFAULT = 5.0
LISTEN_CHECK_SECONDS_MIN = 0.1
LOG_RETENTION_DAYS_DEFAULT = 90
# PostgreSQL dates start in 4713 BC, so the retention cutoff (today minus
# this many days) must stay above it. 100 years is far from that limit.
LOG_RETENTION_DAYS_MAX = 36500
GIT_REMOTE_TIMEOUT_SECONDS_DEFAULT = 60.0
NOTIFY_POLL_SECONDS_DEFAULT = 5.0
NOTIFY_TIMEOUT_SECONDS_DEFAULT = 10.0
NOTIFY_BACKOFF_SECONDS_DEFAULT = 10.0
NOTIFY_BACKOFF_MAX_SECONDS_DEFAULT = 3600.0
NOTIFY_DEAD_LETTER_SECONDS_DEFAULT = 86400.0
NOTIFY_CONCURRENCY_DEFAULT = 16
# A refresh scans the whole history (seconds for a million jobs, see
# BENCHMARKS.md), so the default keeps that background work to a few percent
# of one core; live figures do not wait for it.
HTTP_HEADER_MAX_BYTES_DEFAULT = 16 * 1024
HTTP_BODY_MAX_BYTES_DEFAULT = 1024 * 1024
HTTP_BODY_TIMEOUT_SECONDS_DEFAULT = 30.0
METRICS_REFRESH_SECONDS_DEFAULT = 300.0
LOG_INDEX_INTERVAL_SECONDS_DEFAULT = 2.0


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("minijenkin")


class Settings(BaseSettings):
    """Process-wide configuration.

    Every field maps to an environment variable with the `MINIJENKIN_` prefix,
    e.g. `worker_concurrency` to `MINIJENKIN_WORKER_CONCURRENCY`.
    """

    model_config = SettingsConfigDict(
        env_prefix="MINIJENKIN_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        # An infinite lease or interval would disable the reaper or a loop
        # without any message.
        allow_inf_nan=False,
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MINIJENKIN_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL connection URL; unset means an embedded PostgreSQL 18 server.",
    )
    worker_database_url: str | None = Field(
        default=None,
        description="PostgreSQL connection URL of `minijenkin worker`, for a login role in the "
                    "group role minijenkin_worker (see SECURITY.md); unset means database_url.",
    )
    host: str = Field(default=DEFAULT_HOST, description="Address the API binds to.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="TCP port of the API.")
    http_header_max_bytes: int = Field(
        default=HTTP_HEADER_MAX_BYTES_DEFAULT, ge=1024,
        description="Bytes of request headers (names and values) the API accepts; more is a 431.",
    )
    http_body_max_bytes: int = Field(
        default=HTTP_BODY_MAX_BYTES_DEFAULT, ge=1024,
        description="Bytes of request body the API accepts; more is a 413. Webhooks accept at "
                    "least 25 MiB.",
    )
    http_body_timeout_seconds: float = Field(
        default=HTTP_BODY_TIMEOUT_SECONDS_DEFAULT, gt=0,
        description="Seconds the API waits for a whole request body once it starts reading "
                    "it; slower is a 408.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL used in links sent to people (notifications, CLI output).",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory for the embedded database, git mirrors and workspaces.",
    )
    secret_key: str | None = Field(
        default=None, description="Key that encrypts stored secrets (base64, 32 bytes)."
    )

    admin_token: str | None = Field(
        default=None,
        description="A token accepted with admin scope, for bootstrapping automation.",
    )
    anonymous_read: bool = Field(
        default=False, description="Let callers without a token read runs, jobs and logs."
    )

    worker_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated labels this worker offers to `runs-on`.",
    )
    worker_concurrency: int = Field(
        default=WORKER_CONCURRENCY_DEFAULT, ge=1, le=WORKER_CONCURRENCY_MAX,
        description="Jobs one worker process runs at once.",
    )
    worker_heartbeat_seconds: float = Field(
        default=HEARTBEAT_SECONDS_DEFAULT, ge=HEARTBEAT_SECONDS_MIN,
        description="Seconds between worker heartbeats.",
    )
    worker_lease_seconds: float = Field(
        default=LEASE_SECONDS_DEFAULT, gt=0,
        description="Seconds without a heartbeat after which a worker is presumed lost.",
    )
    worker_poll_seconds: float = Field(
        default=POLL_SECONDS_DEFAULT, ge=POLL_SECONDS_MIN,
        description="Seconds between queue polls when no notification arrives.",
    )
    worker_listen_check_seconds: float = Field(
        default=LISTEN_CHECK_SECONDS_DEFAULT, ge=LISTEN_CHECK_SECONDS_MIN,
        description="Seconds without a notification after which the worker tests its LISTEN "
                    "connection with a query, and how long that query may take before the "
                    "connection is replaced.",
    )
    worker_shutdown_grace_seconds: float = Field(
        default=30.0, ge=0,
        description="Seconds a stopping worker lets running jobs finish before handing them back.",
    )
    worker_kill_grace_seconds: float = Field(
        default=10.0, ge=0,
        description="Seconds between SIGTERM and SIGKILL when a step is cancelled or times out.",
    )
    retry_backoff_seconds: float = Field(
        default=2.0, ge=0,
        description="Base delay of the exponential retry backoff, in seconds.",
    )
    retry_backoff_max_seconds: float = Field(
        default=300.0, ge=0, description="Upper bound of one retry delay, in seconds."
    )
    worker_step_path: str = Field(
        default="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        description="PATH that steps run with (the worker's own PATH is not passed on).",
    )
    worker_run_as: str | None = Field(
        default=None,
        description="User name or uid that steps run as when the worker runs as root; "
                    "unset means the worker's own user.",
    )
    log_max_bytes_per_job: int = Field(
        default=100 * 1024 * 1024, ge=1024,
        description="Bytes of output stored per job attempt; later output is discarded.",
    )
    keep_workspaces: bool = Field(
        default=False, description="Keep job workspaces after the job ends (for debugging)."
    )

    maintenance_interval_seconds: float = Field(
        default=5.0, ge=0.1,
        description="Seconds between runs of the reaper and the other maintenance loops.",
    )
    log_retention_days: int = Field(
        default=LOG_RETENTION_DAYS_DEFAULT, ge=1, le=LOG_RETENTION_DAYS_MAX,
        description="Days of job logs kept; older daily partitions are dropped.",
    )
    log_index_interval_seconds: float = Field(
        default=LOG_INDEX_INTERVAL_SECONDS_DEFAULT, ge=0.1,
        description="Seconds between runs of the log search indexer; a stored line becomes "
                    "searchable within about this time.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")
    git_remote_timeout_seconds: float = Field(
        default=GIT_REMOTE_TIMEOUT_SECONDS_DEFAULT, gt=0,
        description="Seconds a `git ls-remote` of polling or of a manual run may take.",
    )

    notify_poll_seconds: float = Field(
        default=NOTIFY_POLL_SECONDS_DEFAULT, ge=POLL_SECONDS_MIN,
        description="Seconds between outbox polls of a dispatcher when no notification wakes it.",
    )
    notify_timeout_seconds: float = Field(
        default=NOTIFY_TIMEOUT_SECONDS_DEFAULT, gt=0, le=300,
        description="Seconds one notification request may take in total before it is retried.",
    )
    notify_backoff_seconds: float = Field(
        default=NOTIFY_BACKOFF_SECONDS_DEFAULT, gt=0,
        description="Base delay of the notification retry backoff, in seconds.",
    )
    notify_backoff_max_seconds: float = Field(
        default=NOTIFY_BACKOFF_MAX_SECONDS_DEFAULT, gt=0,
        description="Upper bound of one notification retry delay, in seconds.",
    )
    notify_dead_letter_seconds: float = Field(
        default=NOTIFY_DEAD_LETTER_SECONDS_DEFAULT, gt=0,
        description="Seconds after which a notification that still fails goes to the dead letter.",
    )
    notify_concurrency: int = Field(
        default=NOTIFY_CONCURRENCY_DEFAULT, ge=1, le=256,
        description="Notifications one dispatcher sends at once. One target gets at most a "
                    "quarter of them (at least 1), so a receiver that hangs does not hold up "
                    "the others.",
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub REST API base URL for commit statuses (GitHub Enterprise: "
                    "https://HOST/api/v3).",
    )
    gitlab_api_url: str = Field(
        default="https://gitlab.com",
        description="GitLab base URL for commit statuses; /api/v4 is appended.",
    )

    metrics_refresh_seconds: float = Field(
        default=METRICS_REFRESH_SECONDS_DEFAULT, ge=0,
        description="Seconds between refreshes of the metrics views (0: at every maintenance "
                    "tick); however many API processes run, one refreshes at a time.",
    )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(
                f"unknown logging level {value!r}. Use DEBUG, INFO, WARNING, ERROR or CRITICAL.")
        return level

    @field_validator("data_dir", mode="before")
    @classmethod
    def _reject_empty_data_dir(cls, value: object) -> object:
        # Path("") is the current directory, which would put the database
        # wherever the command happens to run.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty. Unset it for the default, or give a directory.")
        return value

    @field_validator("worker_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        if isinstance(value, str):
            return [label.strip() for label in value.split(",") if label.strip()]
        return value

    @model_validator(mode="after")
    def _validate_timing(self) -> Settings:
        # A lease shorter than two heartbeats would declare healthy workers
        # lost whenever one heartbeat is late.
        if self.worker_lease_seconds < 2 * self.worker_heartbeat_seconds:
            raise ValueError(
                "MINIJENKIN_WORKER_LEASE_SECONDS "
                f"({self.worker_lease_seconds:g}) must be at least twice "
                f"MINIJENKIN_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g})"
            )
        if self.retry_backoff_max_seconds < self.retry_backoff_seconds:
            raise ValueError(
                "MINIJENKIN_RETRY_BACKOFF_MAX_SECONDS must not be smaller than "
                "MINIJENKIN_RETRY_BACKOFF_SECONDS"
            )
        if self.notify_backoff_max_seconds < self.notify_backoff_seconds:
            raise ValueError(
                "MINIJENKIN_NOTIFY_BACKOFF_MAX_SECONDS must not be smaller than "
                "MINIJENKIN_NOTIFY_BACKOFF_SECONDS"
            )
        if self.notify_dead_letter_seconds < self.notify_backoff_seconds:
            raise ValueError(
                "MINIJENKIN_NOTIFY_DEAD_LETTER_SECONDS "
                f"({self.notify_dead_letter_seconds:g}) must be at least "
                f"MINIJENKIN_NOTIFY_BACKOFF_SECONDS ({self.notify_backoff_seconds:g}), "
                "or no notification would ever be retried"
            )
        return self

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with keyword overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
