"""Regression check: claim latency on a large history against an empty one.

Run with `make bench-claim-history` or `python -m bench.claim_history`. Two
scratch databases are migrated on one server, both with the same 20
repositories: one with no jobs and one with `--history-jobs` finished jobs
(default 1,000,000, about two years of a team that runs 1,500 jobs a day)
in runs of 10 jobs. Both then run the same probe: insert a run of 10
queued jobs, claim them with mj_job_claim_v1 exactly as a worker does, and
finish them with mj_job_finish_many_v1. Only the claim statement is timed, with
synchronous_commit off so that the WAL flush does not mask it. The probe
alternates between the two databases in blocks, so that a change in the
machine's load hits both sides.

The check fails (exit status 1) when the median claim latency on the large
history exceeds `--max-ratio` (default 1.2) times the empty-table median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.common import create_database, drop_database, percentile, replace_section
from bench.queue import DEFAULT_URL, machine_description, measure_pgbench

ROOT = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench/claim_history.py: start -->"
SECTION_END = "<!-- bench/claim_history.py: end -->"
HISTORY_REPOSITORIES = 20
RUN_SIZE = 10
# History rows are inserted in chunks, so that no statement builds millions
# of rows at once.
HISTORY_CHUNK_RUNS = 20_000


def _insert_repositories(conn: psycopg.Connection[Any], count: int) -> list[int]:
    rows = conn.execute(
        "INSERT INTO repositories (name, url) "
        "SELECT 'bench/history-' || g, 'file:///nowhere' FROM generate_series(1, %s) AS g "
        "RETURNING id", (count,)).fetchall()
    return [row["id"] for row in rows]


def load_history(url: str, jobs: int) -> None:
    """Insert `jobs` finished jobs (with their runs and attempts) spread over past days."""
    runs = jobs // RUN_SIZE
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        repo_ids = _insert_repositories(conn, HISTORY_REPOSITORIES)
        worker_id = uuid.uuid4()
        for first in range(0, runs, HISTORY_CHUNK_RUNS):
            count = min(HISTORY_CHUNK_RUNS, runs - first)
            with conn.transaction():
                # Runs are spaced a minute apart going back from now; one run
                # in twenty failed, as in a busy team's history.
                conn.execute(
                    "INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at, "
                    "started_at, finished_at) "
                    "SELECT (%(repos)s::bigint[])[1 + g %% cardinality(%(repos)s::bigint[])], "
                    "CASE WHEN g %% 20 = 0 THEN 'failed' ELSE 'succeeded' END, 'push', "
                    "'refs/heads/main', md5(g::text) || '00000000', "
                    "now() - make_interval(mins => %(total)s::integer - g), "
                    "now() - make_interval(mins => %(total)s::integer - g), "
                    "now() - make_interval(mins => %(total)s::integer - g) + interval '5 minutes' "
                    "FROM generate_series(%(first)s::integer, %(last)s::integer) AS g",
                    {"repos": repo_ids, "total": runs, "first": first, "last": first + count - 1})
                conn.execute(
                    "INSERT INTO jobs (run_id, repo_id, kind, key, name, status, attempt, "
                    "worker_id, lease_token, exit_code, created_at, queued_at, started_at, "
                    "finished_at) "
                    "SELECT r.id, r.repo_id, 'script', 'job' || j, 'job' || j, "
                    "CASE WHEN r.status = 'failed' AND j = %(size)s::integer THEN 'failed' "
                    "ELSE 'succeeded' END, 1, %(worker)s, gen_random_uuid(), 0, r.created_at, "
                    "r.created_at, r.started_at, r.finished_at "
                    "FROM pipeline_runs r CROSS JOIN generate_series(1, %(size)s::integer) AS j "
                    "WHERE r.id > coalesce((SELECT max(run_id) FROM jobs), 0)",
                    {"size": RUN_SIZE, "worker": worker_id})
        conn.execute(
            "INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, exit_code, "
            "queued_at, started_at, finished_at) "
            "SELECT id, 1, worker_id, lease_token, status, exit_code, queued_at, started_at, "
            "finished_at FROM jobs")
        for table in ("pipeline_runs", "jobs", "job_attempts"):
            conn.execute(f"VACUUM ANALYZE {table}")


class ClaimProbe:
    """One database's probe: a registered worker that claims and finishes runs of queued jobs."""

    def __init__(self, url: str) -> None:
        from minijenkin.sql import QUERIES

        self.queries = QUERIES
        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        # Without this, each commit waits for a WAL flush (about 4 ms on this
        # machine's disk) that does not depend on the history, and would hide
        # the statement's own cost.
        self.conn.execute("SET synchronous_commit = off")
        self.worker_id = uuid.uuid4()
        self.conn.execute(QUERIES["worker_register"], {
            "worker_id": self.worker_id, "name": "bench-probe", "hostname": "bench",
            "pid": 1, "labels": [], "concurrency": RUN_SIZE, "version": "bench"})
        row = self.conn.execute(
            "INSERT INTO repositories (name, url) VALUES ('bench/probe', 'file:///nowhere') "
            "RETURNING id").fetchone()
        assert row is not None
        self.repo_id = row["id"]
        self.claim_seconds: list[float] = []
        self.finish_seconds: list[float] = []

    def round(self) -> None:
        with self.conn.transaction():
            run = self.conn.execute(
                "INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
                "VALUES (%s, 'queued', 'api', 'refs/heads/main', repeat('a', 40)) RETURNING id",
                (self.repo_id,)).fetchone()
            assert run is not None
            self.conn.execute(
                "INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at) "
                "SELECT %s, %s, 'script', 'job' || g, 'job' || g, 'queued', now() "
                "FROM generate_series(1, %s) AS g", (run["id"], self.repo_id, RUN_SIZE))

        started = time.perf_counter()
        claimed = self.conn.execute(self.queries["job_claim"], {
            "worker_id": self.worker_id, "labels": [], "limit": RUN_SIZE}).fetchall()
        self.claim_seconds.append(time.perf_counter() - started)
        if len(claimed) != RUN_SIZE:
            raise RuntimeError(f"the probe claimed {len(claimed)} jobs, expected {RUN_SIZE}")

        started = time.perf_counter()
        self.conn.execute(self.queries["job_finish_many"], {
            "job_ids": [row["job_id"] for row in claimed],
            "lease_tokens": [row["lease_token"] for row in claimed],
            "statuses": ["succeeded"] * len(claimed), "exit_codes": [0] * len(claimed),
            "reasons": [None] * len(claimed), "backoff_base": 2.0, "backoff_max": 300.0})
        self.finish_seconds.append(time.perf_counter() - started)

    def close(self) -> None:
        self.conn.close()


def _summary(seconds: list[float]) -> dict[str, float]:
    milliseconds = [value * 1000 for value in seconds]
    return {"p50_ms": statistics.median(milliseconds), "p95_ms": percentile(milliseconds, 0.95),
            "count": len(milliseconds)}


def measure(admin_url: str, history_jobs: int, rounds: int, block: int, warmup: int,
            drop_indexes: list[str] | None = None) -> dict[str, Any]:
    empty_url = create_database(admin_url, "mj_bench_claim_empty")
    large_url = create_database(admin_url, "mj_bench_claim_large")
    try:
        from minijenkin.db.migrate import migrate

        migrate(empty_url)
        migrate(large_url)
        for url in (empty_url, large_url):
            with psycopg.connect(url, autocommit=True) as conn:
                for index in drop_indexes or []:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        # The fair claim visits every repository, so both databases get the
        # same repositories and differ only in their history of jobs.
        with psycopg.connect(empty_url, autocommit=True, row_factory=dict_row) as conn:
            _insert_repositories(conn, HISTORY_REPOSITORIES)
        loading = time.monotonic()
        load_history(large_url, history_jobs)
        load_seconds = time.monotonic() - loading
        with psycopg.connect(large_url) as conn:
            jobs_bytes = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()[0]

        probes = {"empty": ClaimProbe(empty_url), "large": ClaimProbe(large_url)}
        try:
            # Warm-up rounds let PL/pgSQL switch to its cached plan (after five
            # calls) and fill the caches; they are not counted.
            for probe in probes.values():
                for _ in range(warmup):
                    probe.round()
                probe.claim_seconds.clear()
                probe.finish_seconds.clear()
                # Both databases get fresh planner statistics, as autovacuum
                # would give a live installation: a never-analyzed jobs table
                # would measure the planner's guesses instead of the history.
                probe.conn.execute("VACUUM ANALYZE jobs")
                probe.conn.execute("VACUUM ANALYZE pipeline_runs")
            done = 0
            while done < rounds:
                for probe in probes.values():
                    for _ in range(min(block, rounds - done)):
                        probe.round()
                done += block
            return {
                "history_jobs": history_jobs, "history_load_seconds": load_seconds,
                "jobs_table_bytes": jobs_bytes,
                "empty": {"claim": _summary(probes["empty"].claim_seconds),
                          "finish": _summary(probes["empty"].finish_seconds)},
                "large": {"claim": _summary(probes["large"].claim_seconds),
                          "finish": _summary(probes["large"].finish_seconds)},
            }
        finally:
            for probe in probes.values():
                probe.close()
    finally:
        drop_database(admin_url, empty_url)
        drop_database(admin_url, large_url)


def render(results: dict[str, Any]) -> str:
    empty, large = results["empty"], results["large"]
    pgbench = results["pgbench"]
    ratio = results["ratio"]
    lines = [
        SECTION_START,
        "## Claim latency on a large history (bench/claim_history.py)",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}  ",
        f"Machine: {results['machine']}  ",
        f"Reference: `pgbench -N -c 2 -j 2` on the same server in the same run: "
        f"{pgbench['tps']:.0f} tps, latency average {pgbench['latency_ms']:.2f} ms",
        "",
        f"History: {results['history_jobs']:,} finished jobs in runs of {RUN_SIZE} over "
        f"{HISTORY_REPOSITORIES} repositories (jobs table and indexes "
        f"{results['jobs_table_bytes'] / 2**20:.0f} MiB), loaded in "
        f"{results['history_load_seconds']:.0f} s. Each round claims a run of {RUN_SIZE} "
        f"queued jobs; {empty['claim']['count']:.0f} rounds per database, alternating in blocks.",
        "",
        "| statement | database | p50 ms | p95 ms | p50 / pgbench latency |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for statement in ("claim", "finish"):
        for name, data in (("empty", empty), ("large history", large)):
            figures = data[statement]
            lines.append(f"| {statement} | {name} | {figures['p50_ms']:.2f} | "
                         f"{figures['p95_ms']:.2f} | "
                         f"{figures['p50_ms'] / pgbench['latency_ms']:.2f} |")
    lines += [
        "",
        f"Claim p50 on the large history / empty table: {ratio:.2f} "
        f"(limit {results['max_ratio']:.2f}): {'passed' if results['passed'] else 'FAILED'}.",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="Admin URL of the server to measure (scratch databases are created "
                             "and dropped).")
    parser.add_argument("--history-jobs", type=int, default=1_000_000,
                        help="Finished jobs in the large history.")
    parser.add_argument("--rounds", type=int, default=400, help="Timed claims per database.")
    parser.add_argument("--block", type=int, default=50,
                        help="Consecutive rounds on one database before switching to the other.")
    parser.add_argument("--warmup", type=int, default=20, help="Untimed rounds per database.")
    parser.add_argument("--max-ratio", type=float, default=1.2,
                        help="Largest allowed claim p50 ratio, large history to empty table.")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="Drop this index in both databases first, to see what the check "
                             "catches (repeatable).")
    parser.add_argument("--pgbench-seconds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown file whose section to replace (e.g. BENCHMARKS.md); "
                             "unset: print only.")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that workers, scratch databases and a
    # private server are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.history_jobs < RUN_SIZE:
        parser.error(f"--history-jobs must be at least {RUN_SIZE}")
    if args.rounds < 1 or args.block < 1:
        parser.error("--rounds and --block must be at least 1")

    results: dict[str, Any] = {
        "command": "python -m bench.claim_history " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(args.url),
        "max_ratio": args.max_ratio,
    }
    pgbench_runs = [measure_pgbench(args.url, args.pgbench_seconds)]
    try:
        results.update(measure(args.url, args.history_jobs, args.rounds, args.block,
                               args.warmup, args.drop_index))
    except psycopg.errors.UndefinedObject as exc:
        parser.error(f"--drop-index: {exc.diag.message_primary}")
    pgbench_runs.append(measure_pgbench(args.url, args.pgbench_seconds))
    results["pgbench"] = {"tps": statistics.median(run["tps"] for run in pgbench_runs),
                          "latency_ms": statistics.median(run["latency_ms"]
                                                          for run in pgbench_runs)}
    results["ratio"] = results["large"]["claim"]["p50_ms"] / results["empty"]["claim"]["p50_ms"]
    results["passed"] = results["ratio"] <= args.max_ratio

    section = render(results)
    print(section)
    print(json.dumps(results, indent=2), file=sys.stderr)
    if args.output is not None:
        replace_section(args.output, section, SECTION_START, SECTION_END)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
