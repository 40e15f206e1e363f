"""Queue table layout: the queue's SQL functions beside a narrow-table prototype.

Run with `python -m bench.queue_layout` (or `make bench-queue-layout`). One
connection claims 10 jobs and reports them succeeded, in a loop, until
20,000 jobs in runs of 10 are drained. Four variants, each on a fresh
database, alternate over the rounds:

- functions: mj_job_claim_v2 and mj_job_finish_many_v1, as workers call them;
- narrow tables: the prototype of bench/queue_layout.sql, where queued and
  running jobs have tables of their own and job rows get HOT updates;
- two updates on jobs: a plain claim and finish on the jobs table with
  its indexes, and no bookkeeping at all;
- plain table: the same two updates on a table with one partial index.

synchronous_commit is off, so the figures compare the work of the
statements rather than the disk's flush time. The question this answers:
would moving queue state out of the jobs table pay for itself? Figures
are written to BENCHMARKS.md with pgbench as the reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.common import create_database, drop_database, replace_section
from bench.queue import DEFAULT_URL, machine_description, measure_pgbench

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_SQL = Path(__file__).with_name("queue_layout.sql")
SECTION_START = "<!-- bench/queue_layout.py: start -->"
SECTION_END = "<!-- bench/queue_layout.py: end -->"
RUN_SIZE = 10
BATCH = 10

FUNCTIONS_CLAIM = "SELECT job_id, lease_token FROM mj_job_claim_v2(%s, '{}', %s)"
FUNCTIONS_FINISH = "SELECT * FROM mj_job_finish_many_v1(%s, %s, %s, %s, %s, 1, 60)"
NARROW_CLAIM = "SELECT job_id, lease_token FROM layout_claim(%s, '{}', %s)"
NARROW_FINISH = "SELECT * FROM layout_finish(%s, %s, %s, %s, %s)"
JOBS_CLAIM = (
    "UPDATE jobs SET status = 'running', worker_id = %s, lease_token = gen_random_uuid(), "
    "attempt = attempt + 1, started_at = now() WHERE id = ANY (ARRAY("
    "SELECT id FROM jobs WHERE repo_id = %s AND status = 'queued' "
    "ORDER BY repo_id, priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING id")
JOBS_FINISH = ("UPDATE jobs SET status = 'succeeded', lease_token = NULL, finished_at = now(), "
               "exit_code = 0 WHERE id = ANY (%s)")
PLAIN_CLAIM = ("UPDATE plain_queue SET status = 'running' WHERE id = ANY (ARRAY("
               "SELECT id FROM plain_queue WHERE status = 'queued' ORDER BY id LIMIT %s "
               "FOR UPDATE SKIP LOCKED)) RETURNING id")
PLAIN_FINISH = "UPDATE plain_queue SET status = 'done' WHERE id = ANY (%s)"

VARIANTS = ("functions", "narrow tables", "two updates on jobs", "plain table")


def _seed_jobs(conn: psycopg.Connection, jobs: int) -> int:
    """Insert queued jobs in runs of RUN_SIZE; return the repository id."""
    repo_id = conn.execute("INSERT INTO repositories (name, url) VALUES ('bench/layout', "
                           "'file:///nowhere') RETURNING id").fetchone()[0]
    conn.execute("INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
                 "SELECT %s, 'running', 'api', 'refs/heads/main', repeat('a', 40) "
                 "FROM generate_series(1, %s)", (repo_id, jobs // RUN_SIZE))
    conn.execute("INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at) "
                 "SELECT r.id, r.repo_id, 'script', 'job' || g, 'job' || g, 'queued', now() "
                 "FROM pipeline_runs r CROSS JOIN generate_series(1, %s) AS g "
                 "ORDER BY r.id, g", (RUN_SIZE,))
    return int(repo_id)


def _drain(conn: psycopg.Connection, jobs: int,
           cycle: Callable[[psycopg.Connection], int]) -> float:
    """Call cycle() until it has handled `jobs` jobs; return jobs per second."""
    done = 0
    started = time.perf_counter()
    while done < jobs:
        handled = cycle(conn)
        if handled == 0:
            raise RuntimeError(f"the queue ran dry after {done} of {jobs} jobs")
        done += handled
    return jobs / (time.perf_counter() - started)


def _through_functions(claim_sql: str, finish_sql: str,
                       worker_id: uuid.UUID) -> Callable[[psycopg.Connection], int]:
    def cycle(conn: psycopg.Connection) -> int:
        rows = conn.execute(claim_sql, (worker_id, BATCH)).fetchall()
        outcomes = conn.execute(finish_sql, (
            [row[0] for row in rows], [row[1] for row in rows], ["succeeded"] * len(rows),
            [0] * len(rows), [None] * len(rows))).fetchall()
        if any(outcome != "finished" for _job, outcome in outcomes):
            raise RuntimeError(f"a finish was not applied: {outcomes}")
        return len(rows)
    return cycle


def measure(admin_url: str, variant: str, jobs: int) -> float:
    url = create_database(admin_url, "mj_layout")
    try:
        from minijenkin.db.migrate import migrate

        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            if variant == "narrow tables":
                conn.execute(LAYOUT_SQL.read_text())
            repo_id = _seed_jobs(conn, jobs)
            if variant == "narrow tables":
                conn.execute("INSERT INTO job_queue (job_id, repo_id) "
                             "SELECT id, repo_id FROM jobs ORDER BY id")
            if variant == "plain table":
                conn.execute("CREATE TABLE plain_queue (id bigint GENERATED ALWAYS AS IDENTITY "
                             "PRIMARY KEY, status text NOT NULL)")
                conn.execute("CREATE INDEX plain_queue_queued_idx ON plain_queue (id) "
                             "WHERE status = 'queued'")
                conn.execute("INSERT INTO plain_queue (status) "
                             "SELECT 'queued' FROM generate_series(1, %s)", (jobs,))
            conn.execute("VACUUM ANALYZE")
            worker_id = uuid.uuid4()
            conn.execute("SELECT mj_worker_register_v1(%s, 'layout', 'localhost', 1, '{}', %s, "
                         "'bench')", (worker_id, BATCH))
            conn.execute("SET synchronous_commit = off")

            def plain(claim_sql: str, finish_sql: str,
                      args: tuple[object, ...]) -> Callable[[psycopg.Connection], int]:
                def cycle(conn: psycopg.Connection) -> int:
                    ids = [row[0] for row in conn.execute(claim_sql, args)]
                    conn.execute(finish_sql, (ids,))
                    return len(ids)
                return cycle

            cycles = {
                "functions": _through_functions(FUNCTIONS_CLAIM, FUNCTIONS_FINISH, worker_id),
                "narrow tables": _through_functions(NARROW_CLAIM, NARROW_FINISH, worker_id),
                "two updates on jobs": plain(JOBS_CLAIM, JOBS_FINISH, (worker_id, repo_id, BATCH)),
                "plain table": plain(PLAIN_CLAIM, PLAIN_FINISH, (BATCH,)),
            }
            return _drain(conn, jobs, cycles[variant])
    finally:
        drop_database(admin_url, url)


def render(results: dict[str, object], rates: dict[str, list[float]]) -> str:
    pgbench_tps = float(results["pgbench_tps"])  # type: ignore[arg-type]
    functions = statistics.median(rates["functions"])
    lines = [
        SECTION_START,
        "## Queue table layout (bench/queue_layout.py)",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}  ",
        f"Machine: {results['machine']}  ",
        f"Reference: `pgbench -N -c 2 -j 2` on the same server, median of 2 runs: "
        f"{pgbench_tps:.0f} tps",
        "",
        f"One connection drains {results['jobs']:,} jobs in runs of {RUN_SIZE}, claiming "
        f"{BATCH} at a time and reporting them succeeded, with synchronous_commit off. "
        f"Medians of {results['rounds']} alternating rounds, range in brackets. "
        "`narrow tables` is the prototype in bench/queue_layout.sql: queued and running "
        "jobs in tables of their own, HOT updates of job rows, and less bookkeeping than "
        "the real functions.",
        "",
        "| variant | jobs/s | / pgbench tps | / functions |",
        "| --- | ---: | ---: | ---: |",
    ]
    for variant in VARIANTS:
        median = statistics.median(rates[variant])
        lines.append(f"| {variant} | {median:.0f} [{min(rates[variant]):.0f}-"
                     f"{max(rates[variant]):.0f}] | {median / pgbench_tps:.2f} | "
                     f"{median / functions:.2f} |")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="Admin connection string of the server to measure.")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pgbench-seconds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md",
                        help="Markdown file whose section this run replaces.")
    args = parser.parse_args()
    if args.jobs < RUN_SIZE or args.jobs % RUN_SIZE:
        parser.error(f"--jobs must be a positive multiple of {RUN_SIZE}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    results: dict[str, object] = {
        "command": "python -m bench.queue_layout " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(args.url),
        "jobs": args.jobs, "rounds": args.rounds,
    }
    pgbench_runs = [measure_pgbench(args.url, args.pgbench_seconds)["tps"]]
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_number in range(args.rounds):
        for variant in VARIANTS:
            rate = measure(args.url, variant, args.jobs)
            rates[variant].append(rate)
            print(f"round {round_number + 1}: {variant}: {rate:.0f} jobs/s", file=sys.stderr)
    pgbench_runs.append(measure_pgbench(args.url, args.pgbench_seconds)["tps"])
    results["pgbench_tps"] = statistics.median(pgbench_runs)

    section = render(results, rates)
    print(section)
    replace_section(args.output, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
