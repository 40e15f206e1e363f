"""Churn run: claim latency and queue-table size over a compressed busy day.

Run with `python -m bench.churn` (a private embedded PostgreSQL 18 server by
default, or `--url`). Assumption for "a busy day": 4,000 pipeline runs of 5
jobs, 20,000 jobs in all (about 14 jobs a minute around the clock, or 40 a
minute over an 8-hour working day). The run compresses that day into a few
minutes: worker processes with 0.5-second steps drain the pipelines, about
100 jobs/s with the default 2 x 25 slots. The day runs on top of
`--history-jobs` finished jobs, so that autovacuum's default thresholds (a
fraction of the table) are as large as on a server with months of history. On the private
server autovacuum_naptime is lowered to 1 s, so that autovacuum wakes up
about 200 times during the run. A real day has 1,440 wake-ups at the
default 1 minute, so the run gives autovacuum fewer chances per job than a
real day does.

Each variant of `--variants` sets the storage parameters of the queue tables
(fillfactor, autovacuum thresholds) on a fresh database, then runs the same
day. Every `--sample-seconds` the harness records the size of each queue
table and index, its dead tuples and autovacuum count; the workers time
every claim statement. The report compares the first and the last fifth of
the day.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from bench.claim_history import load_history
from bench.common import create_database, drop_database, replace_section, wait_drained
from bench.queue import machine_description, measure_pgbench
from bench.scale import HARNESS_APPLICATION, PIPELINE_JOBS, Feeder, WorkerFleet, private_server

SECTION_START = "<!-- bench/churn.py: start -->"
SECTION_END = "<!-- bench/churn.py: end -->"
QUEUE_TABLES = ("jobs", "pipeline_runs", "workers", "job_attempts", "job_dependencies")
REPOSITORIES = 40
DRAIN_TIMEOUT_SECONDS = 1800

# Storage parameters per variant. "default" resets them, so it measures
# PostgreSQL's defaults whatever the migrations set.
VARIANTS: dict[str, dict[str, dict[str, str | None]]] = {
    "default": {table: {} for table in QUEUE_TABLES},
    # Vacuum the hot tables after a fixed number of dead rows instead of a
    # fraction of the (ever-growing) history.
    "vacuum": {
        "jobs": {"autovacuum_vacuum_scale_factor": "0", "autovacuum_vacuum_threshold": "5000",
                 "autovacuum_vacuum_insert_scale_factor": "0",
                 "autovacuum_vacuum_insert_threshold": "20000",
                 "autovacuum_vacuum_cost_delay": "0"},
        "pipeline_runs": {"autovacuum_vacuum_scale_factor": "0",
                          "autovacuum_vacuum_threshold": "2000",
                          "autovacuum_vacuum_cost_delay": "0"},
        "workers": {"autovacuum_vacuum_scale_factor": "0", "autovacuum_vacuum_threshold": "200",
                    "autovacuum_vacuum_cost_delay": "0"},
        "job_attempts": {}, "job_dependencies": {},
    },
}
VARIANTS["vacuum+fillfactor"] = {
    table: {**options, **({"fillfactor": "80"} if table in ("jobs", "pipeline_runs") else {}),
            **({"fillfactor": "50"} if table == "workers" else {})}
    for table, options in VARIANTS["vacuum"].items()
}
STORAGE_PARAMETERS = sorted({name for variant in VARIANTS.values()
                             for options in variant.values() for name in options})


def apply_variant(url: str, variant: dict[str, dict[str, str | None]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table in QUEUE_TABLES:
            conn.execute(sql.SQL("ALTER TABLE {} RESET ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.SQL, STORAGE_PARAMETERS))))
            options = variant.get(table, {})
            if options:
                conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(
                    sql.Identifier(table), sql.SQL(", ").join(
                        sql.SQL("{} = {}").format(sql.SQL(name), sql.Literal(value))
                        for name, value in options.items())))


class SizeSampler(threading.Thread):
    """Record the sizes and dead tuples of the queue tables and their indexes."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.stopped = threading.Event()

    def sample(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        tables = conn.execute(
            "SELECT relname, pg_relation_size(relid) AS heap_bytes, n_live_tup, n_dead_tup, "
            "autovacuum_count FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(QUEUE_TABLES),)).fetchall()
        indexes = conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid) AS bytes "
            "FROM pg_stat_user_indexes WHERE relname = ANY(%s)", (list(QUEUE_TABLES),)).fetchall()
        return {"at": time.time(),
                "tables": {row["relname"]: dict(row) for row in tables},
                "indexes": {row["indexrelname"]: row["bytes"] for row in indexes}}

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                             application_name=HARNESS_APPLICATION) as conn:
            while True:
                self.samples.append(self.sample(conn))
                if self.stopped.wait(self.interval):
                    self.samples.append(self.sample(conn))
                    return


def run_variant(admin_url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from minijenkin.db.migrate import migrate

    url = create_database(admin_url, "mj_bench_churn")
    try:
        migrate(url)
        apply_variant(url, VARIANTS[name])
        if args.history_jobs:
            load_history(url, args.history_jobs)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            repo_ids = [row["id"] for row in conn.execute(
                "INSERT INTO repositories (name, url) "
                "SELECT 'bench/churn-' || g, 'file:///nowhere' "
                "FROM generate_series(1, %s) AS g RETURNING id", (REPOSITORIES,)).fetchall()]
        runs = args.day_jobs // len(PIPELINE_JOBS)
        sampler = SizeSampler(url, args.sample_seconds)
        sampler.start()
        feeder = Feeder(url, repo_ids, target=2 * args.processes * args.slots, max_runs=runs)
        started = time.time()
        feeder.start()
        fleet = WorkerFleet(url, args.processes, args.slots, args.step_seconds, 0)
        try:
            while feeder.runs < runs and feeder.error is None:
                if time.time() - started > DRAIN_TIMEOUT_SECONDS:
                    raise TimeoutError(f"the churn run did not finish in {DRAIN_TIMEOUT_SECONDS} s")
                time.sleep(1)
            wait_drained(url, "SELECT count(*) FROM jobs WHERE status IN "
                              "('pending', 'queued', 'running')", timeout=DRAIN_TIMEOUT_SECONDS)
            ended = time.time()
        finally:
            claims = fleet.stop()
            feeder.stopped.set()
            feeder.join()
            sampler.stopped.set()
            sampler.join()
        if feeder.error is not None:
            raise RuntimeError("the feeder failed") from feeder.error
        return summarize(name, sampler.samples, claims, started, ended, args.day_jobs)
    finally:
        drop_database(admin_url, url)


def _fifth(values: list[tuple[float, float]], started: float, ended: float,
           which: int) -> list[float]:
    span = (ended - started) / 5
    low = started + which * span
    return [value for at, value in values if low <= at < low + span]


def summarize(name: str, samples: list[dict[str, Any]], claims: list[tuple[float, float, int]],
              started: float, ended: float, day_jobs: int) -> dict[str, Any]:
    claim_ms = [(at, duration * 1000) for at, duration, count in claims if count > 0]
    # The day starts with the first claim: the workers take a few seconds to start.
    if claim_ms:
        started = min(at for at, _ in claim_ms)
    first = _fifth(claim_ms, started, ended, 0)
    last = _fifth(claim_ms, started, ended, 4)
    during = [sample for sample in samples if started <= sample["at"] <= ended] or samples
    early, late = during[len(during) // 5], samples[-1]

    def sizes(sample: dict[str, Any]) -> dict[str, int]:
        result = {table: data["heap_bytes"] for table, data in sample["tables"].items()}
        result.update(sample["indexes"])
        return result

    peak_dead = {table: max(sample["tables"][table]["n_dead_tup"] for sample in samples
                            if table in sample["tables"]) for table in QUEUE_TABLES}
    return {
        "variant": name, "seconds": ended - started, "jobs": day_jobs,
        "jobs_per_second": day_jobs / (ended - started),
        "claim_p50_ms_first_fifth": statistics.median(first) if first else float("nan"),
        "claim_p50_ms_last_fifth": statistics.median(last) if last else float("nan"),
        "sizes_early": sizes(early), "sizes_end": sizes(late),
        "peak_dead_tuples": peak_dead,
        "autovacuum_runs": {table: late["tables"][table]["autovacuum_count"]
                            for table in QUEUE_TABLES},
        "samples": len(samples),
    }


HOT_RELATIONS = ("jobs_queue_idx", "jobs_active_run_idx", "jobs_running_repo_idx",
                 "jobs_running_worker_idx", "workers", "workers_pkey", "pipeline_runs_active_idx")


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    pgbench = report["pgbench"]
    lines = [
        SECTION_START,
        "## Queue tables under churn (bench/churn.py)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}  ",
        f"Reference: `pgbench -N -c 2 -j 2` on the same server, median of "
        f"{len(pgbench['runs'])} runs: {pgbench['tps']:.0f} tps",
        "",
        f"A busy day compressed: {args.day_jobs:,} jobs in pipelines of 5 on top of "
        f"{args.history_jobs:,} finished jobs, drained by {args.processes} worker processes x "
        f"{args.slots} slots with {args.step_seconds:g}-second steps"
        + (f", autovacuum_naptime {args.autovacuum_naptime} s" if args.url is None else "")
        + ". Claim p50 is timed inside the "
        "workers over the first and the last fifth of the run.",
        "",
        "| variant | jobs/s | / pgbench tps | claim p50 first fifth ms | last fifth ms "
        "| last / first | jobs heap MiB growth per 1,000 jobs | autovacuum runs on jobs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report["results"]:
        growth = (result["sizes_end"]["jobs"] - result["sizes_early"]["jobs"]) / 2**20 \
            / (0.8 * result["jobs"] / 1000)
        lines.append(
            f"| {result['variant']} | {result['jobs_per_second']:.0f} | "
            f"{result['jobs_per_second'] / pgbench['tps']:.2f} | "
            f"{result['claim_p50_ms_first_fifth']:.2f} | {result['claim_p50_ms_last_fifth']:.2f} | "
            f"{result['claim_p50_ms_last_fifth'] / result['claim_p50_ms_first_fifth']:.2f} | "
            f"{growth:.3f} | {result['autovacuum_runs']['jobs']} |")
    lines += [
        "",
        "Sizes of the hot relations in KiB, after the first fifth -> at the end:",
        "",
        "| relation | " + " | ".join(result["variant"] for result in report["results"]) + " |",
        "| --- |" + " ---: |" * len(report["results"]),
    ]
    for relation in HOT_RELATIONS:
        cells = []
        for result in report["results"]:
            early = result["sizes_early"].get(relation)
            end = result["sizes_end"].get(relation)
            cells.append("-" if early is None or end is None else f"{early // 1024} -> {end // 1024}")
        lines.append(f"| {relation} | " + " | ".join(cells) + " |")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None,
                        help="Admin URL of an existing server (default: a private embedded "
                             "PostgreSQL 18 started for this run).")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"Comma-separated storage-parameter variants: {', '.join(VARIANTS)}.")
    parser.add_argument("--day-jobs", type=int, default=20_000, help="Jobs in the compressed day.")
    parser.add_argument("--history-jobs", type=int, default=500_000,
                        help="Finished jobs loaded before the day starts.")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=25, help="Slots per worker process.")
    parser.add_argument("--step-seconds", type=float, default=0.5,
                        help="Duration of each job's step, in seconds; it sets the pace of the day.")
    parser.add_argument("--autovacuum-naptime", type=int, default=1,
                        help="autovacuum_naptime, in seconds, set on the private server (an "
                             "existing server keeps its own).")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown file whose section to replace (e.g. BENCHMARKS.md); "
                             "unset: print only.")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that workers, scratch databases and a
    # private server are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = [name.strip() for name in args.variants.split(",")]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    if args.day_jobs < len(PIPELINE_JOBS) or args.history_jobs < 0:
        parser.error(f"--day-jobs must be at least {len(PIPELINE_JOBS)} and --history-jobs "
                     "not negative")

    with contextlib.ExitStack() as stack:
        if args.url is None:
            admin_url, _ = stack.enter_context(private_server(100))
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER SYSTEM SET autovacuum_naptime = {}").format(
                    sql.Literal(f"{args.autovacuum_naptime}s")))
                conn.execute("SELECT pg_reload_conf()")
        else:
            admin_url = args.url
        report: dict[str, Any] = {
            "command": "python -m bench.churn " + " ".join(sys.argv[1:]),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(admin_url),
            "results": [],
        }
        pgbench_runs = [measure_pgbench(admin_url, args.pgbench_seconds)]
        for name in names:
            result = run_variant(admin_url, name, args)
            print(json.dumps(result), file=sys.stderr, flush=True)
            report["results"].append(result)
        pgbench_runs.append(measure_pgbench(admin_url, args.pgbench_seconds))
    report["pgbench"] = {"runs": pgbench_runs,
                         "tps": statistics.median(run["tps"] for run in pgbench_runs)}
    section = render(report, args)
    print(section)
    if args.output is not None:
        replace_section(args.output, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
