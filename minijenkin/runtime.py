"""Finding the database a command should use: configured, or the embedded one."""

from __future__ import annotations

from minijenkin.config import Settings
from minijenkin.db.embedded import EmbeddedPostgres
from minijenkin.errors import ConfigurationError


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir)


def database_url(settings: Settings) -> str:
    """The configured URL, else the embedded server's when `minijenkin up` runs it.

    Raises ConfigurationError with what to do when there is neither.
    """
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    if server.is_running():
        return server.conninfo()
    raise ConfigurationError(
        "no database: set MINIJENKIN_DATABASE_URL (or DATABASE_URL) to a PostgreSQL 15+ server, "
        f"or start `minijenkin up`, which runs an embedded server in {settings.data_dir}"
    )


def worker_database_url(settings: Settings) -> str:
    """Return the URL `minijenkin worker` connects with: its restricted role's, else `database_url`."""
    if settings.worker_database_url:
        return settings.worker_database_url
    return database_url(settings)
