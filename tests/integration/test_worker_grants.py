"""The worker role's privileges survive re-applied function files."""

from __future__ import annotations

import psycopg

from minijenkin.db.migrate import migrate

GRANT_STATE = """
SELECT p.proname, p.prosecdef AS definer,
       has_function_privilege('minijenkin_worker', p.oid, 'EXECUTE') AS worker_may_run,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_run
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema() AND p.proname = %s
"""


def test_grants_survive_replaced_function(database_url: str, db: psycopg.Connection) -> None:
    # CREATE OR REPLACE resets SECURITY DEFINER; DROP plus CREATE also loses the grant.
    db.execute("DROP FUNCTION mj_worker_stop_v1(uuid)")
    db.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE name = 'functions/30_queue.sql'")

    report = migrate(database_url)

    assert report.applied == []
    assert report.reapplied == ["functions/30_queue.sql", "functions/90_security.sql"]
    state = db.execute(GRANT_STATE, ("mj_worker_stop_v1",)).fetchone()
    assert state == {"proname": "mj_worker_stop_v1", "definer": True, "worker_may_run": True,
                     "public_may_run": False}


def test_grants_skip_functions_workers_never_call(db: psycopg.Connection) -> None:
    state = db.execute(GRANT_STATE, ("mj_run_cancel_v1",)).fetchone()

    assert state == {"proname": "mj_run_cancel_v1", "definer": False, "worker_may_run": False,
                     "public_may_run": False}


def test_unchanged_functions_keep_security_file(database_url: str) -> None:
    report = migrate(database_url)

    assert report.reapplied == []
