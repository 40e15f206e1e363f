"""Queue benchmark: Mini-Jenkin's queue core beside pgbench, pgqueuer and procrastinate.

Run with `make bench-queue` (it builds .venv-bench with the competitors, which
never enter the project's own dependencies). Every figure comes from one run
against one server, and is printed with its ratio to references measured in
the same run, because the machine is shared and its speed varies.

(a) Throughput: 20,000 queued no-op jobs drained by 2 worker processes.
    Mini-Jenkin's side is the real worker (claim loop, heartbeat, LISTEN,
    claim and finish through the queue's SQL functions and Python client)
    with the step execution replaced by an immediate success, so no bash or
    git runs. Jobs are spread over runs of 10 jobs of one repository, so
    finishing also advances and closes runs.
(b) Pickup latency: idle workers, jobs enqueued 20 ms apart; the time from
    just before the enqueue call to the moment a worker starts the job.

A plain loop is measured beside them as the ceiling: 2 processes claiming
10 rows at a time from a one-index table with UPDATE ... SKIP LOCKED and
marking them done, with no attempt history, leases, runs or notifications.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    create_database,
    drop_database,
    enqueue_spaced,
    latency_summary,
    wait_drained,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = os.environ.get("MINIJENKIN_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECTION_START = "<!-- bench/queue.py: start -->"
SECTION_END = "<!-- bench/queue.py: end -->"
RUN_SIZE = 10
PGBENCH_SCALE = 10
DRAIN_TIMEOUT_SECONDS = 600


def _noop_worker(url: str, data_dir: str, concurrency: int, barrier: Any, record: str | None) -> None:
    """Child process: a real Worker whose jobs succeed as soon as they are claimed."""
    from minijenkin.config import load_settings
    from minijenkin.logconfig import configure_logging
    from minijenkin.worker.executor import JobExecution, Outcome
    from minijenkin.worker.main import Worker

    picked: list[tuple[int, float]] = []

    class NoopWorker(Worker):
        async def _run_execution(self, execution: JobExecution) -> Outcome | None:
            picked.append((execution.job.run_id, time.time()))
            return Outcome("succeeded", 0, None)

    configure_logging("WARNING", component="bench-worker")
    settings = load_settings(data_dir=data_dir, worker_concurrency=concurrency,
                             worker_poll_seconds=5.0)
    worker = NoopWorker(settings, url)
    barrier.wait()
    asyncio.run(worker.run())
    if record:
        Path(record).write_text(json.dumps(picked))


def _start_workers(url: str, count: int, concurrency: int,
                   record_dir: Path | None) -> tuple[list[Any], Any]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count + 1)
    processes = []
    for index in range(count):
        record = str(record_dir / f"picked-{index}.json") if record_dir else None
        process = context.Process(target=_noop_worker, args=(
            url, tempfile.mkdtemp(prefix="mj-bench-"), concurrency, barrier, record))
        process.start()
        processes.append(process)
    return processes, barrier


def _stop_workers(processes: list[Any]) -> None:
    for process in processes:
        if process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(timeout=60)


PLAIN_CLAIM = ("UPDATE plain_queue SET status = 'running' WHERE id = ANY (ARRAY("
               "SELECT id FROM plain_queue WHERE status = 'queued' ORDER BY id LIMIT %s "
               "FOR UPDATE SKIP LOCKED)) RETURNING id")
PLAIN_DONE = "UPDATE plain_queue SET status = 'done' WHERE id = ANY (%s)"


def _plain_worker(url: str, batch: int, barrier: Any) -> None:
    """Child process: claim and finish rows of plain_queue until none is left."""
    with psycopg.connect(url, autocommit=True) as conn:
        barrier.wait()
        while True:
            ids = [row[0] for row in conn.execute(PLAIN_CLAIM, (batch,))]
            if not ids:
                return
            conn.execute(PLAIN_DONE, (ids,))


def measure_plain_loop(admin_url: str, jobs: int, processes: int, batch: int) -> float:
    url = create_database(admin_url, "mj_plain")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE plain_queue (id bigint GENERATED ALWAYS AS IDENTITY "
                         "PRIMARY KEY, status text NOT NULL)")
            conn.execute("CREATE INDEX plain_queue_queued_idx ON plain_queue (id) "
                         "WHERE status = 'queued'")
            conn.execute("INSERT INTO plain_queue (status) SELECT 'queued' FROM generate_series(1, %s)",
                         (jobs,))
            conn.execute("VACUUM ANALYZE plain_queue")
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes + 1)
        workers = [context.Process(target=_plain_worker, args=(url, batch, barrier))
                   for _ in range(processes)]
        for worker in workers:
            worker.start()
        barrier.wait()
        started = time.monotonic()
        for worker in workers:
            worker.join(timeout=DRAIN_TIMEOUT_SECONDS)
        elapsed = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as conn:
            done = conn.execute("SELECT count(*) FROM plain_queue WHERE status = 'done'").fetchone()[0]
        if done != jobs:
            raise RuntimeError(f"the plain loop finished only {done} of {jobs} rows")
        return jobs / elapsed
    finally:
        drop_database(admin_url, url)


def _migrated_database(admin_url: str) -> str:
    from minijenkin.db.migrate import migrate

    url = create_database(admin_url, "mj_bench")
    migrate(url)
    return url


def measure_minijenkin_throughput(admin_url: str, jobs: int, processes: int, batch: int) -> float:
    url = _migrated_database(admin_url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            repo_id = conn.execute("INSERT INTO repositories (name, url) VALUES ('bench/queue', "
                                   "'file:///nowhere') RETURNING id").fetchone()[0]
            conn.execute(
                "INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
                "SELECT %s, 'queued', 'api', 'refs/heads/main', repeat('a', 40) "
                "FROM generate_series(1, %s)", (repo_id, jobs // RUN_SIZE))
            conn.execute(
                "INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at) "
                "SELECT r.id, r.repo_id, 'script', 'job' || g, 'job' || g, 'queued', now() "
                "FROM pipeline_runs r CROSS JOIN generate_series(1, %s) AS g "
                # A run's jobs get consecutive ids, as when a plan job
                # submits them together.
                "ORDER BY r.id, g", (RUN_SIZE,))
            conn.execute("VACUUM ANALYZE jobs")
            conn.execute("VACUUM ANALYZE pipeline_runs")
        workers, barrier = _start_workers(url, processes, batch, None)
        barrier.wait()
        started = time.monotonic()
        # A run closes in the transaction that ends its last job, so the
        # poll reads the few active runs rather than skip finished jobs.
        ended = wait_drained(url, "SELECT count(*) FROM (SELECT 1 FROM pipeline_runs "
                                  "WHERE status IN ('queued', 'running') LIMIT 1) AS remaining",
                             timeout=DRAIN_TIMEOUT_SECONDS)
        _stop_workers(workers)
        with psycopg.connect(url, autocommit=True) as conn:
            succeeded = conn.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'").fetchone()[0]
        if succeeded != jobs:
            raise RuntimeError(f"only {succeeded} of {jobs} jobs succeeded")
        return jobs / (ended - started)
    finally:
        drop_database(admin_url, url)


def measure_minijenkin_latency(admin_url: str, count: int, interval: float,
                               processes: int) -> dict[str, float]:
    url = _migrated_database(admin_url)
    record_dir = Path(tempfile.mkdtemp(prefix="mj-bench-latency-"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            repo_id = conn.execute("INSERT INTO repositories (name, url) VALUES ('bench/latency', "
                                   "'file:///nowhere') RETURNING id").fetchone()[0]
            workers, barrier = _start_workers(url, processes, 10, record_dir)
            barrier.wait()
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM workers WHERE status = 'active'").fetchone()[0] \
                    < processes:
                if time.monotonic() > deadline:
                    raise TimeoutError("the benchmark workers did not register")
                time.sleep(0.05)
            time.sleep(1.0)  # let the LISTEN connections and the catch-up claims settle
            run_ids: dict[int, int] = {}

            def enqueue(index: int) -> None:
                run_ids[index] = conn.execute(
                    "SELECT mj_run_create_v1(%s, 'api', 'refs/heads/main', repeat('a', 40), NULL, "
                    "NULL, NULL, '{}')", (repo_id,)).fetchone()[0]

            enqueued = enqueue_spaced(count, interval, enqueue)
            wait_drained(url, "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status IN "
                               "('queued', 'running') LIMIT 1) AS remaining",
                         timeout=60)
        _stop_workers(workers)
        picked: dict[int, float] = {}
        for path in record_dir.glob("picked-*.json"):
            picked.update({run_id: at for run_id, at in json.loads(path.read_text())})
        latencies = [picked[run_ids[index]] - enqueued[index] for index in range(count)]
        return latency_summary(latencies)
    finally:
        drop_database(admin_url, url)


def measure_pgbench(admin_url: str, seconds: int) -> dict[str, float]:
    url = create_database(admin_url, "mj_pgbench")
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE), url], check=True,
                       capture_output=True)
        result = subprocess.run(["pgbench", "-N", "-n", "-c", "2", "-j", "2", "-T", str(seconds), url],
                                check=True, capture_output=True, text=True)
    finally:
        drop_database(admin_url, url)
    tps = re.search(r"tps = ([0-9.]+)", result.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", result.stdout)
    if tps is None or latency is None:
        raise RuntimeError(f"unexpected pgbench output:\n{result.stdout}")
    return {"tps": float(tps.group(1)), "latency_ms": float(latency.group(1))}


def measure_competitor(python: str, admin_url: str, args: argparse.Namespace, queue: str,
                       measure: str, jobs: int) -> dict[str, Any]:
    result = subprocess.run(
        [python, "-m", "bench.competitors", "--url", admin_url, "--queue", queue,
         "--measure", measure, "--jobs", str(jobs), "--processes", str(args.processes),
         "--batch", str(args.batch), "--latency-jobs", str(args.latency_jobs),
         "--interval", str(args.interval)],
        check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(result.stdout)[queue]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _median_latency(summaries: list[dict[str, float]]) -> dict[str, float]:
    return {key: _median([summary[key] for summary in summaries])
            for key in ("p50_ms", "p95_ms", "p99_ms")}


def machine_description(admin_url: str) -> str:
    cpu = "unknown CPU"
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with psycopg.connect(admin_url) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"PostgreSQL {server} on the same machine")


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    pgbench = results["pgbench"]
    rows = [("Mini-Jenkin", results["minijenkin"]), ("pgqueuer", results["pgqueuer"]),
            ("procrastinate", results["procrastinate"])]
    throughput_rows = [*rows, ("plain SKIP LOCKED loop (ceiling)", results["plain"])]
    lines = [
        SECTION_START,
        "## Queue core (bench/queue.py)",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}  ",
        f"Machine: {results['machine']}  ",
        f"Competitors: pgqueuer {results['pgqueuer']['version']}, "
        f"procrastinate {results['procrastinate']['version']} (benchmark environment only)  ",
        f"Reference: `pgbench -N -c 2 -j 2` on the same server, median of "
        f"{len(pgbench['runs'])} runs spread over the benchmark: {pgbench['tps']:.0f} tps, "
        f"latency average {pgbench['latency_ms']:.2f} ms",
        "",
        f"Mini-Jenkin and pgqueuer are measured in {args.rounds} alternating rounds, so that a "
        "change in the machine's load hits both; figures are medians over the rounds, with the "
        "range in brackets. procrastinate is measured once, with "
        f"{args.procrastinate_jobs:,} jobs, because it drains about 100 jobs/s. The plain "
        "loop is the ceiling, measured in every round: the same processes and batch claiming "
        "rows of a one-index table with UPDATE ... SKIP LOCKED and marking them done, with no "
        "attempt history, leases, runs or notifications.",
        "",
        f"(a) Draining {args.jobs:,} no-op jobs with {args.processes} worker processes "
        f"(batch {args.batch}):",
        "",
        "| queue | jobs/s | / pgbench tps | / pgqueuer (per round) |",
        "| --- | ---: | ---: | ---: |",
    ]
    ratios = results["ratios"]
    for name, data in throughput_rows:
        runs = data["throughput_runs"]
        span = f" [{min(runs):.0f}-{max(runs):.0f}]" if len(runs) > 1 else ""
        if name == "Mini-Jenkin":
            versus = f"{_median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        elif name == "pgqueuer":
            versus = "1.00"
        elif name == "procrastinate":
            versus = f"{data['throughput'] / results['pgqueuer']['throughput']:.2f}"
        else:
            plain = results["plain_ratios"]
            versus = f"{_median(plain):.2f} [{min(plain):.2f}-{max(plain):.2f}]"
        lines.append(f"| {name} | {data['throughput']:.0f}{span} | "
                     f"{data['throughput'] / pgbench['tps']:.2f} | {versus} |")
    lines += [
        "",
        f"(b) Pickup latency, {args.latency_jobs} jobs enqueued {args.interval * 1000:.0f} ms apart "
        f"to {args.processes} idle worker processes (medians over rounds):",
        "",
        "| queue | p50 ms | p95 ms | p99 ms | p99 / pgbench latency |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, data in rows:
        latency = data["latency"]
        lines.append(f"| {name} | {latency['p50_ms']:.2f} | {latency['p95_ms']:.2f} | "
                     f"{latency['p99_ms']:.2f} | {latency['p99_ms'] / pgbench['latency_ms']:.2f} |")
    ratio = _median(ratios)
    p99 = results["minijenkin"]["latency"]["p99_ms"]
    lines += [
        "",
        f"Targets: throughput at least 1.5x pgqueuer's: {ratio:.2f}x, "
        f"{'met' if ratio >= 1.5 else 'missed'}; pickup p99 under 10 ms: "
        f"{p99:.2f} ms, {'met' if p99 < 10 else 'missed'}.",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="Admin URL of the server to measure (databases are created and dropped).")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10, help="Jobs claimed at once (worker slots).")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02, help="Seconds between enqueues.")
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3,
                        help="Alternating rounds of Mini-Jenkin and pgqueuer.")
    parser.add_argument("--procrastinate-jobs", type=int, default=2_000)
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"),
                        help="Python of the environment that has pgqueuer and procrastinate.")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "command": "python -m bench.queue " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(args.url),
    }
    pgbench_runs = [measure_pgbench(args.url, args.pgbench_seconds)]
    ours: dict[str, list[Any]] = {"throughput": [], "latency": []}
    theirs: dict[str, list[Any]] = {"throughput": [], "latency": []}
    plain_runs: list[float] = []
    version = ""
    for _ in range(args.rounds):
        ours["throughput"].append(
            measure_minijenkin_throughput(args.url, args.jobs, args.processes, args.batch))
        pgqueuer = measure_competitor(args.bench_python, args.url, args, "pgqueuer", "both",
                                      args.jobs)
        theirs["throughput"].append(pgqueuer["throughput"])
        theirs["latency"].append(pgqueuer["latency"])
        version = pgqueuer["version"]
        ours["latency"].append(measure_minijenkin_latency(args.url, args.latency_jobs,
                                                          args.interval, args.processes))
        plain_runs.append(measure_plain_loop(args.url, args.jobs, args.processes, args.batch))
        pgbench_runs.append(measure_pgbench(args.url, args.pgbench_seconds))
    procrastinate = measure_competitor(args.bench_python, args.url, args, "procrastinate", "both",
                                       args.procrastinate_jobs)

    results["pgbench"] = {"runs": pgbench_runs,
                          "tps": _median([run["tps"] for run in pgbench_runs]),
                          "latency_ms": _median([run["latency_ms"] for run in pgbench_runs])}
    results["minijenkin"] = {"throughput_runs": ours["throughput"],
                             "throughput": _median(ours["throughput"]),
                             "latency": _median_latency(ours["latency"])}
    results["pgqueuer"] = {"version": version, "throughput_runs": theirs["throughput"],
                           "throughput": _median(theirs["throughput"]),
                           "latency": _median_latency(theirs["latency"])}
    results["procrastinate"] = {**procrastinate, "throughput_runs": [procrastinate["throughput"]]}
    results["plain"] = {"throughput_runs": plain_runs, "throughput": _median(plain_runs)}
    results["ratios"] = [mine / other for mine, other in
                         zip(ours["throughput"], theirs["throughput"], strict=True)]
    results["plain_ratios"] = [plain / other for plain, other in
                               zip(plain_runs, theirs["throughput"], strict=True)]
    section = render(results, args)
    print(section)
    print(json.dumps(results, indent=2), file=sys.stderr)
    write_section(args.output, section)


if __name__ == "__main__":
    main()
