"""The scale benchmarks' own checks, on small sizes so that each runs within a minute."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import psycopg

from bench.churn import VARIANTS, apply_variant
from bench.scale import measure_configuration
from tests.support.postgres import PgServer

ROOT = Path(__file__).resolve().parents[2]


def _run_claim_check(pg_server: PgServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.claim_history", "--url", pg_server.admin_url,
         "--history-jobs", "50000", "--rounds", "40", "--block", "20", "--warmup", "5",
         "--pgbench-seconds", "1", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_claim_check_fails_without_queue_indexes(pg_server: PgServer) -> None:
    # Without the partial indexes on active jobs, each claim scans the whole
    # history, which is what the check exists to catch.
    result = _run_claim_check(pg_server, "--drop-index", "jobs_queue_idx",
                              "--drop-index", "jobs_active_run_idx")

    assert result.returncode == 1, result.stderr
    assert "FAILED" in result.stdout


def test_claim_check_rejects_unknown_index(pg_server: PgServer) -> None:
    result = _run_claim_check(pg_server, "--drop-index", "no_such_index")

    assert result.returncode == 2
    assert "--drop-index" in result.stderr
    assert "no_such_index" in result.stderr


def test_scale_connections_follow_processes(pg_server: PgServer) -> None:
    args = argparse.Namespace(step_seconds=0.2, lines=10, warmup_seconds=2.0,
                              window_seconds=3.0)

    few = measure_configuration(pg_server.admin_url, None, 2, 2, args)
    many = measure_configuration(pg_server.admin_url, None, 2, 12, args)

    for result in (few, many):
        by_application = result["connections_by_application"]
        assert by_application["minijenkin-worker-listen"] == 2
        assert by_application["minijenkin-worker-logs"] == 2
        # Each process's queue pool has one connection and may open a second.
        assert 2 <= by_application["minijenkin-worker"] <= 4
        assert result["jobs_per_second"] > 0
        assert result["claim_ms"]["count"] > 0
    # Six times the slots, the same worker connections: at most 4 per process.
    worker_connections = sum(count for name, count in many["connections_by_application"].items()
                             if name.startswith("minijenkin-worker"))
    assert worker_connections <= 8


def test_churn_variant_sets_and_resets_parameters(database_url: str) -> None:
    apply_variant(database_url, VARIANTS["vacuum+fillfactor"])
    apply_variant(database_url, VARIANTS["default"])

    with psycopg.connect(database_url) as conn:
        options = conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            (["jobs", "pipeline_runs", "workers"],)).fetchall()

    assert options == [("jobs", None), ("pipeline_runs", None), ("workers", None)]


def test_queue_tables_vacuum_after_fixed_dead_rows(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        options = dict(conn.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s)",
            (["jobs", "pipeline_runs", "workers"],)).fetchall())

    assert options["jobs"] == [
        "autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=5000",
        "autovacuum_vacuum_insert_scale_factor=0", "autovacuum_vacuum_insert_threshold=20000",
        "autovacuum_vacuum_cost_delay=0"]
    assert options["pipeline_runs"] == [
        "autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=2000",
        "autovacuum_vacuum_cost_delay=0"]
    assert options["workers"] == [
        "autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=200",
        "autovacuum_vacuum_cost_delay=0"]
