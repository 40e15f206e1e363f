"""Apply the SQL migrations in order, once, under an advisory lock.

Numbered files in `minijenkin/sql/migrations` run once each, in name order,
every one in its own transaction, and are recorded with a checksum in
`schema_migrations`. Files in `minijenkin/sql/functions` are repeatable: they
run after the numbered ones whenever their checksum differs from the recorded
one. A repeatable file whose first line is RERUN_MARKER also runs whenever
a migration or an earlier repeatable file was applied in the same pass,
because 90_security.sql restores the attributes and grants that re-creating
a function resets. A session-level advisory lock serialises concurrent
migrators, so two processes starting at once apply each file exactly once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import psycopg

from minijenkin import sql
from minijenkin.db import connect
from minijenkin.errors import MigrationError

logger = logging.getLogger(__name__)

# Same derivation as mj_lock_namespace() and mj_lock_key('migrations') in SQL;
# spelled out here because those functions may not exist yet.
_LOCK_SQL = "SELECT pg_advisory_lock(1296714497, hashtext('migrations'))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(1296714497, hashtext('migrations'))"

MIN_SERVER_VERSION = 150000
RERUN_MARKER = "-- migrate: rerun after any change"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    reapplied: list[str] = field(default_factory=list)
    unchanged: int = 0


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def migrate(conninfo: str) -> MigrationReport:
    """Bring the database schema up to date and return what was applied.

    Raises MigrationError when the server is too old, a recorded migration
    was edited after it was applied, or a file fails (naming the file).
    """
    report = MigrationReport()
    with connect(conninfo, application_name="minijenkin-migrate") as conn:
        version = conn.info.server_version
        if version < MIN_SERVER_VERSION:
            raise MigrationError(
                f"PostgreSQL {version // 10000} is not supported; use PostgreSQL 15 or newer"
            )
        conn.execute(_LOCK_SQL)
        try:
            conn.execute(_CREATE_TABLE)
            recorded = {
                row["name"]: row
                for row in conn.execute("SELECT name, kind, checksum FROM schema_migrations")
            }
            _apply_versioned(conn, recorded, report)
            _apply_repeatable(conn, recorded, report)
        finally:
            conn.execute(_UNLOCK_SQL)
    if report.applied or report.reapplied:
        logger.info(
            "database migrated",
            extra={"action": "migrate", "applied": report.applied, "reapplied": report.reapplied},
        )
    return report


def _apply_versioned(conn: psycopg.Connection, recorded: dict, report: MigrationReport) -> None:
    for name, text in sql.migration_files():
        checksum = _checksum(text)
        previous = recorded.get(name)
        if previous is not None:
            if previous["checksum"] != checksum:
                raise MigrationError(
                    f"migration {name} was changed after it was applied; "
                    "add a new migration file instead of editing an applied one"
                )
            report.unchanged += 1
            continue
        _run_file(conn, name, text, checksum, kind="versioned")
        report.applied.append(name)


def _apply_repeatable(conn: psycopg.Connection, recorded: dict, report: MigrationReport) -> None:
    for name, text in sql.function_files():
        key = f"functions/{name}"
        checksum = _checksum(text)
        previous = recorded.get(key)
        changed_before = bool(report.applied or report.reapplied)
        rerun = changed_before and text.startswith(RERUN_MARKER)
        if previous is not None and previous["checksum"] == checksum and not rerun:
            report.unchanged += 1
            continue
        _run_file(conn, key, text, checksum, kind="repeatable")
        report.reapplied.append(key)


def _run_file(conn: psycopg.Connection, name: str, text: str, checksum: str, *, kind: str) -> None:
    try:
        with conn.transaction():
            conn.execute(text.encode("utf-8"))
            conn.execute(
                """
                INSERT INTO schema_migrations (name, kind, checksum) VALUES (%s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()
                """,
                (name, kind, checksum),
            )
    except psycopg.Error as exc:
        raise MigrationError(f"migration {name} failed: {exc}") from exc


def pending_migrations(conninfo: str) -> list[str]:
    """Names of numbered migrations not applied yet (for `doctor` and start-up checks)."""
    with connect(conninfo, application_name="minijenkin-migrate") as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok").fetchone()
        applied: set[str] = set()
        if exists and exists["ok"]:
            applied = {row["name"] for row in conn.execute("SELECT name FROM schema_migrations")}
    return [name for name, _ in sql.migration_files() if name not in applied]
