from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from minijenkin import sql
from minijenkin.db.migrate import migrate
from minijenkin.errors import MigrationError
from tests.support.postgres import PgServer, with_database


def _empty_database(pg_server: PgServer, name: str) -> str:
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return with_database(pg_server.admin_url, name)


def _migrate_in_child(url: str, results: multiprocessing.Queue) -> None:
    try:
        report = migrate(url)
        results.put(("ok", len(report.applied), len(report.reapplied)))
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(("error", repr(exc), 0))


@pytest.fixture
def empty_url(pg_server: PgServer) -> Iterator[str]:
    url = _empty_database(pg_server, f"mj_empty_{uuid.uuid4().hex[:10]}")
    yield url
    pg_server.drop_database(url)


def test_migrate_twice_applies_once(empty_url: str) -> None:
    first = migrate(empty_url)
    second = migrate(empty_url)

    assert first.applied == [name for name, _ in sql.migration_files()]
    assert first.reapplied == [f"functions/{name}" for name, _ in sql.function_files()]
    assert second.applied == []
    assert second.reapplied == []
    total = len(sql.migration_files()) + len(sql.function_files())
    assert second.unchanged == total


def test_migrate_from_two_processes_at_once(empty_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    children = [context.Process(target=_migrate_in_child, args=(empty_url, results))
                for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)

    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes
    applied_counts = sorted(outcome[1] for outcome in outcomes)
    assert applied_counts == [0, len(sql.migration_files())]
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert rows[0] == len(sql.migration_files()) + len(sql.function_files())


def test_edited_migration_is_rejected(empty_url: str) -> None:
    migrate(empty_url)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE name = '0001_core.sql'")

    with pytest.raises(MigrationError, match="0001_core.sql was changed after it was applied"):
        migrate(empty_url)


def test_log_table_is_partitioned_by_day(db: psycopg.Connection) -> None:
    row = db.execute("""
        SELECT pt.partstrat, a.attname
        FROM pg_partitioned_table pt
        JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
        WHERE pt.partrelid = 'job_logs'::regclass
    """).fetchone()

    assert row == {"partstrat": "r", "attname": "day"}
