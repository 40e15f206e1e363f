"""Settings read once at start-up from `MINIJENKIN_*` environment variables.

The object is built by `load_settings()` and passed explicitly; nothing reads
the environment after start-up.
"""

from __future__ import annotations

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
LOG_RETENTION_DAYS_DEFAULT = 90
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
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MINIJENKIN_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL connection URL; unset means an embedded PostgreSQL 18 server.",
    )
    host: str = Field(default=DEFAULT_HOST, description="Address the API binds to.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="TCP port of the API.")
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
        default=LOG_RETENTION_DAYS_DEFAULT, ge=1,
        description="Days of job logs kept; older daily partitions are dropped.",
    )
    log_index_interval_seconds: float = Field(
        default=LOG_INDEX_INTERVAL_SECONDS_DEFAULT, ge=0.1,
        description="Seconds between runs of the log search indexer; a stored line becomes "
                    "searchable within about this time.",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")

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
        return self

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with keyword overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
