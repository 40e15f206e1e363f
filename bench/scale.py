"""Scale harness: many job slots on one PostgreSQL, measured beside pgbench.

Run with `make bench-scale` or `python -m bench.scale`. By default it starts
a private embedded PostgreSQL 18 server in a temporary directory, so that
its CPU can be measured apart from other work on the machine; `--url` measures
an existing server instead (scratch databases are created and dropped).

For each configuration of `--configs` (worker processes x slots per
process) a fresh database gets a steady stream of pipelines, each run being
build -> test-1, test-2, test-3 -> deploy. Every job is taken by a real
worker (claim loop, heartbeats, LISTEN, log shipper, finish batcher); only
the step is replaced: it writes `--lines` log lines in five bursts over
`--step-seconds`. A deploy job also holds a session advisory lock on its
run's own environment over a dedicated connection for its whole run, as a
deploy lock does. Deploys never wait for each other here: the queue, not a
slot, would hold a deploy whose environment is busy. NOTE: the lock is
taken by the harness, not through the worker's own deploy lock
(mj_deploy_acquire_v1), so deploy queueing and approvals are not part of
the figures. The feeder keeps about two pipelines' worth of waiting jobs
per slot, so the figures describe a saturated queue.

Measured over a window after a warm-up, per configuration: jobs finished
per second (from the database's finished_at), slot use (jobs/s x step time
/ slots), peak database connections by application name, claim statement
latency (timed inside the workers, including the claims that also report
finished jobs), log latency (a line's timestamp to its
NOTIFY on mj_logs_v1 arriving at a listener), and the CPU seconds per
second of the PostgreSQL server, the worker processes, the harness and the
whole machine. With `--url`, the server's CPU counts only the backends of
the scratch database that are alive at both ends of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bench.common import create_database, drop_database, percentile, replace_section
from bench.queue import machine_description, measure_pgbench

ROOT = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench/scale.py: start -->"
SECTION_END = "<!-- bench/scale.py: end -->"
HARNESS_APPLICATION = "mj-bench-scale"
DEPLOY_APPLICATION = "mj-bench-deploy-lock"
REPOSITORIES = 40
PIPELINE_JOBS = ("build", "test-1", "test-2", "test-3", "deploy")
LOG_BURSTS = 5
FEED_INTERVAL_SECONDS = 0.2
SAMPLE_INTERVAL_SECONDS = 0.5
# One NOTIFY in this many is followed by a query for its line's timestamp,
# so that the listener stays a small part of the load.
LOG_LATENCY_SAMPLE_EVERY = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- worker processes -------------------------------------------------------

def _scale_worker(url: str, data_dir: str, slots: int, step_seconds: float, lines: int,
                  barrier: Any, record: str) -> None:
    """Child process: a real Worker whose steps only write log lines and wait."""
    from minijenkin.config import load_settings
    from minijenkin.logconfig import configure_logging
    from minijenkin.worker.executor import JobExecution, Outcome
    from minijenkin.worker.main import Worker

    claims: list[tuple[float, float, int]] = []

    class ScaleWorker(Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            claim = self.client.claim
            finish_and_claim = self.client.finish_and_claim

            async def timed_claim(labels: list[str], limit: int) -> Any:
                started = time.perf_counter()
                claimed = await claim(labels, limit)
                claims.append((time.time(), time.perf_counter() - started, len(claimed)))
                return claimed

            # A claim made while results wait reports them in the same call,
            # which is timed whole.
            async def timed_finish_and_claim(items: list[Any], labels: list[str],
                                             limit: int) -> Any:
                started = time.perf_counter()
                outcomes, claimed = await finish_and_claim(items, labels, limit)
                claims.append((time.time(), time.perf_counter() - started, len(claimed)))
                return outcomes, claimed

            self.client.claim = timed_claim  # type: ignore[method-assign]
            self.client.finish_and_claim = timed_finish_and_claim  # type: ignore[method-assign]

        async def _run_execution(self, execution: JobExecution) -> Outcome | None:
            if execution.job.key == "deploy":
                conn = await _take_deploy_lock(url, f"review-{execution.job.run_id}")
                try:
                    await self._write_log(execution)
                finally:
                    await conn.close()
            else:
                await self._write_log(execution)
            await self.shipper.flush()
            return Outcome("succeeded", 0, None)

        async def _write_log(self, execution: JobExecution) -> None:
            if lines == 0:
                await asyncio.sleep(step_seconds)
                return
            per_burst = max(1, lines // LOG_BURSTS)
            for burst in range(LOG_BURSTS):
                await execution.emit_many(1, [
                    f"[{execution.job.key}] compiling module {burst * per_burst + index} "
                    f"of the bench pipeline" for index in range(per_burst)])
                await asyncio.sleep(step_seconds / LOG_BURSTS)

    configure_logging("WARNING", component="bench-scale-worker")
    settings = load_settings(data_dir=data_dir, worker_concurrency=slots)
    worker = ScaleWorker(settings, url)
    barrier.wait()
    asyncio.run(worker.run())
    Path(record).write_text(json.dumps(claims))


async def _take_deploy_lock(url: str, environment: str) -> Any:
    """Return a new connection that holds the session advisory lock of `environment`."""
    import psycopg as worker_psycopg

    conn = await worker_psycopg.AsyncConnection.connect(
        url, autocommit=True, application_name=DEPLOY_APPLICATION)
    cursor = await conn.execute(
        "SELECT pg_try_advisory_lock(mj_lock_namespace(), mj_lock_key(%s))",
        (f"deploy:{environment}",))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        await conn.close()
        raise RuntimeError(f"the deploy lock of {environment} is taken")
    return conn


class WorkerFleet:
    """Worker processes started with the spawn method, each with its own data directory."""

    def __init__(self, url: str, processes: int, slots: int, step_seconds: float,
                 lines: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.directory = Path(tempfile.mkdtemp(prefix="mj-bench-scale-"))
        barrier = context.Barrier(processes + 1)
        self.processes = []
        for index in range(processes):
            process = context.Process(target=_scale_worker, args=(
                url, str(self.directory / f"worker-{index}"), slots, step_seconds, lines,
                barrier, str(self.directory / f"claims-{index}.json")))
            process.start()
            self.processes.append(process)
        barrier.wait()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    def stop(self) -> list[tuple[float, float, int]]:
        """Stop every worker (SIGTERM, then SIGKILL after 60 s); return their claim timings."""
        for process in self.processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
        claims: list[tuple[float, float, int]] = []
        for path in self.directory.glob("claims-*.json"):
            claims.extend(tuple(entry) for entry in json.loads(path.read_text()))
        shutil.rmtree(self.directory, ignore_errors=True)
        return claims


# -- load and sampling ------------------------------------------------------

FEED_SQL = """
WITH runs AS (
    INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha)
    SELECT (%(repos)s::bigint[])[1 + g %% cardinality(%(repos)s::bigint[])], 'queued', 'push',
           'refs/heads/main', repeat('b', 40)
    FROM generate_series(1, %(count)s::integer) AS g
    RETURNING id, repo_id
), created AS (
    INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at)
    SELECT runs.id, runs.repo_id, 'script', names.key, names.key,
           CASE WHEN names.key = 'build' THEN 'queued' ELSE 'pending' END,
           CASE WHEN names.key = 'build' THEN now() END
    FROM runs CROSS JOIN unnest(%(names)s::text[]) AS names (key)
    RETURNING id, run_id, key
)
INSERT INTO job_dependencies (job_id, needs_job_id)
SELECT later.id, earlier.id
FROM created later JOIN created earlier ON earlier.run_id = later.run_id
WHERE (later.key LIKE 'test-%%' AND earlier.key = 'build')
   OR (later.key = 'deploy' AND earlier.key LIKE 'test-%%')
"""


class Feeder(threading.Thread):
    """Keep about `target` pipelines' worth of jobs waiting by inserting whole pipelines."""

    def __init__(self, url: str, repo_ids: list[int], target: int,
                 max_runs: int | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.repo_ids = repo_ids
        self.target = target
        self.max_runs = max_runs
        self.runs = 0
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True,
                                 application_name=HARNESS_APPLICATION) as conn:
                while not self.stopped.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM jobs WHERE status IN ('queued', 'pending')").fetchone()
                    # A run adds one queued job now and four later.
                    missing = self.target - row[0] // len(PIPELINE_JOBS)
                    if self.max_runs is not None:
                        missing = min(missing, self.max_runs - self.runs)
                    if missing > 0:
                        with conn.transaction():
                            conn.execute(FEED_SQL, {"repos": self.repo_ids, "count": missing,
                                                    "names": list(PIPELINE_JOBS)})
                            conn.execute("SELECT pg_notify('mj_jobs_v1', '0')")
                        self.runs += missing
                    self.stopped.wait(FEED_INTERVAL_SECONDS)
        except BaseException as exc:  # reported by the main thread
            self.error = exc


class LogListener(threading.Thread):
    """LISTEN on mj_logs_v1 and time sampled notifications against their line's timestamp."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[tuple[float, float]] = []
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True,
                                 application_name=HARNESS_APPLICATION) as listen, \
                    psycopg.connect(self.url, autocommit=True,
                                    application_name=HARNESS_APPLICATION) as query:
                listen.execute("LISTEN mj_logs_v1")
                self.ready.set()
                seen = 0
                while not self.stopped.is_set():
                    for notify in listen.notifies(timeout=0.5):
                        received = time.time()
                        seen += 1
                        if seen % LOG_LATENCY_SAMPLE_EVERY:
                            continue
                        job_id, attempt, last_seq = (int(part) for part in notify.payload.split(":"))
                        row = query.execute(
                            "SELECT extract(epoch FROM ts) FROM job_logs "
                            "WHERE job_id = %s AND attempt = %s AND seq = %s",
                            (job_id, attempt, last_seq)).fetchone()
                        if row is not None:
                            self.latencies.append((received, received - float(row[0])))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()


class ConnectionSampler(threading.Thread):
    """Record the peak number of connections to one database, by application name."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.peak_total = 0
        self.peak_by_application: dict[str, int] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True,
                             application_name=HARNESS_APPLICATION) as conn:
            while not self.stopped.is_set():
                rows = conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name <> %s "
                    "GROUP BY application_name", (HARNESS_APPLICATION,)).fetchall()
                self.peak_total = max(self.peak_total, sum(count for _, count in rows))
                for name, count in rows:
                    self.peak_by_application[name] = max(
                        self.peak_by_application.get(name, 0), count)
                self.stopped.wait(SAMPLE_INTERVAL_SECONDS)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pids: list[int], *, reaped_children_of: int | None = None) -> float:
    """User plus system CPU of the live processes among `pids`, in seconds.

    With `reaped_children_of`, the CPU of that process's children that have
    exited and been reaped is added, so that short-lived backends count too.
    """
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    if reaped_children_of is not None:
        fields = _stat_fields(reaped_children_of)
        if fields is not None:
            total += int(fields[13]) + int(fields[14])  # cutime and cstime
    return total / CLOCK_TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # user .. steal; guest time is already inside user
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def server_pids(postmaster_pid: int | None, url: str) -> list[int]:
    """List the server's processes: the postmaster's whole tree, or only the database's backends."""
    if postmaster_pid is not None:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster_pid:
                    children.append(int(stat.parent.name))
        return [postmaster_pid, *children]
    with psycopg.connect(url, autocommit=True, application_name=HARNESS_APPLICATION) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [row[0] for row in rows.fetchall()]


# -- one configuration ------------------------------------------------------

def measure_configuration(admin_url: str, postmaster_pid: int | None, processes: int, slots: int,
                          args: argparse.Namespace) -> dict[str, Any]:
    from minijenkin.db.migrate import migrate

    url = create_database(admin_url, "mj_bench_scale")
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            repo_ids = [row["id"] for row in conn.execute(
                "INSERT INTO repositories (name, url) "
                "SELECT 'bench/scale-' || g, 'file:///nowhere' "
                "FROM generate_series(1, %s) AS g RETURNING id", (REPOSITORIES,)).fetchall()]
        feeder = Feeder(url, repo_ids, target=2 * processes * slots)
        feeder.start()
        listener = LogListener(url)
        listener.start()
        listener.ready.wait(30)
        sampler = ConnectionSampler(url)
        fleet = WorkerFleet(url, processes, slots, args.step_seconds, args.lines)
        try:
            sampler.start()
            time.sleep(args.warmup_seconds)

            postgres = server_pids(postmaster_pid, url)
            harness = [os.getpid()]
            cpu_before = {"postgres": cpu_seconds(postgres, reaped_children_of=postmaster_pid),
                          "workers": cpu_seconds(fleet.pids),
                          "harness": cpu_seconds(harness)}
            machine_before = machine_cpu_seconds()
            with psycopg.connect(url, autocommit=True, application_name=HARNESS_APPLICATION) as conn:
                window_start_db = conn.execute("SELECT now()").fetchone()[0]
                window_start = time.time()
                time.sleep(args.window_seconds)
                window_end = time.time()
                window_end_db = conn.execute("SELECT now()").fetchone()[0]
                finished = conn.execute(
                    "SELECT count(*) FROM jobs WHERE finished_at >= %s AND finished_at < %s",
                    (window_start_db, window_end_db)).fetchone()[0]
                logged = conn.execute(
                    "SELECT count(*) FROM job_logs WHERE ts >= %s AND ts < %s",
                    (window_start_db, window_end_db)).fetchone()[0]
            postgres = server_pids(postmaster_pid, url)
            cpu_after = {"postgres": cpu_seconds(postgres, reaped_children_of=postmaster_pid),
                         "workers": cpu_seconds(fleet.pids),
                         "harness": cpu_seconds(harness)}
            machine_after = machine_cpu_seconds()
        finally:
            sampler.stopped.set()
            claims = fleet.stop()
            feeder.stopped.set()
            listener.stopped.set()
            feeder.join()
            listener.join()
            sampler.join()
        for thread in (feeder, listener):
            if thread.error is not None:
                raise RuntimeError(f"{type(thread).__name__} failed") from thread.error

        window = (window_end_db - window_start_db).total_seconds()
        claim_ms = [duration * 1000 for at, duration, _ in claims if window_start <= at < window_end]
        log_ms = [latency * 1000 for at, latency in listener.latencies
                  if window_start <= at < window_end]
        throughput = finished / window
        return {
            "processes": processes, "slots_per_process": slots, "slots": processes * slots,
            "window_seconds": window, "jobs_per_second": throughput,
            "slot_use": throughput * args.step_seconds / (processes * slots),
            "log_lines_per_second": logged / window,
            "connections": sampler.peak_total,
            "connections_by_application": sampler.peak_by_application,
            "claim_ms": _latency(claim_ms), "log_latency_ms": _latency(log_ms),
            "cpu_seconds_per_second": {name: (cpu_after[name] - cpu_before[name]) / window
                                       for name in cpu_before},
            # Cores busy on the whole machine, this run's processes and any other work.
            "machine_cpu_busy_cores": (machine_after[0] - machine_before[0]) / window,
            "machine_cores": os.cpu_count(),
        }
    finally:
        drop_database(admin_url, url)


def _latency(milliseconds: list[float]) -> dict[str, float]:
    if not milliseconds:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "count": 0}
    return {"p50": statistics.median(milliseconds), "p95": percentile(milliseconds, 0.95),
            "p99": percentile(milliseconds, 0.99), "count": len(milliseconds)}


# -- servers ----------------------------------------------------------------

@contextlib.contextmanager
def private_server(max_connections: int) -> Iterator[tuple[str, int]]:
    """Start an embedded PostgreSQL 18 server in a fresh directory; yield its URL and postmaster."""
    from minijenkin.db.embedded import EmbeddedPostgres

    directory = Path(tempfile.mkdtemp(prefix="mj-bench-scale-pg-"))
    server = EmbeddedPostgres(directory, max_connections=max_connections)
    try:
        server.start()
        postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
        yield server.conninfo("postgres"), postmaster
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def parse_configs(text: str) -> list[tuple[int, int]]:
    """Parse "4x5,4x50" into [(4, 5), (4, 50)]."""
    configs = []
    for item in text.split(","):
        processes, _, slots = item.strip().partition("x")
        if not processes.isdigit() or not slots.isdigit() or int(processes) < 1 or int(slots) < 1:
            raise ValueError(f"invalid configuration {item!r}: expected PROCESSESxSLOTS, e.g. 4x50")
        configs.append((int(processes), int(slots)))
    return configs


# -- report -----------------------------------------------------------------

def knee(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Find the last configuration before throughput rose less than 10% with more slots."""
    ordered = sorted(results, key=lambda result: result["slots"])
    for previous, current in zip(ordered, ordered[1:], strict=False):
        if current["slots"] > previous["slots"] and \
                current["jobs_per_second"] < 1.1 * previous["jobs_per_second"]:
            return previous
    return None


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    pgbench = report["pgbench"]
    lines = [
        SECTION_START,
        "## Many job slots on one PostgreSQL (bench/scale.py)",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}  ",
        f"Machine: {report['machine']}  ",
        f"Reference: `pgbench -N -c 2 -j 2` on the same server, median of "
        f"{len(pgbench['runs'])} runs spread over the benchmark: {pgbench['tps']:.0f} tps, "
        f"latency average {pgbench['latency_ms']:.2f} ms",
        "",
        f"Pipelines of 5 jobs (build, 3 tests, deploy holding a session advisory lock), "
        f"{REPOSITORIES} repositories, each step {args.step_seconds:g} s writing {args.lines} "
        f"log lines; {args.window_seconds:g} s window after {args.warmup_seconds:g} s of warm-up. "
        "CPU is in cores (CPU seconds per second); CPU machine counts every process on "
        "the machine, including other people's work.",
        "",
        "| processes x slots | jobs/s | / pgbench tps | slot use | log lines/s "
        "| connections: workers + deploy locks | claim p50 / p95 ms | log latency p50 / p95 ms "
        "| CPU PostgreSQL | CPU workers | CPU machine |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in report["results"]:
        claim, log, cpu = result["claim_ms"], result["log_latency_ms"], \
            result["cpu_seconds_per_second"]
        deploys = result["connections_by_application"].get(DEPLOY_APPLICATION, 0)
        lines.append(
            f"| {result['processes']} x {result['slots_per_process']} | "
            f"{result['jobs_per_second']:.0f} | {result['jobs_per_second'] / pgbench['tps']:.2f} | "
            f"{result['slot_use']:.2f} | {result['log_lines_per_second']:.0f} | "
            f"{result['connections'] - deploys} + {deploys} | "
            f"{claim['p50']:.1f} / {claim['p95']:.1f} | "
            f"{log['p50']:.0f} / {log['p95']:.0f} | {cpu['postgres']:.2f} | "
            f"{cpu['workers']:.2f} | {result['machine_cpu_busy_cores']:.2f} |")
    top = knee(report["results"])
    lines.append("")
    if top is None:
        lines.append("Throughput rose with every configuration measured.")
    else:
        lines.append(f"Throughput stops rising after {top['processes']} x "
                     f"{top['slots_per_process']} slots ({top['jobs_per_second']:.0f} jobs/s, "
                     f"{top['jobs_per_second'] / pgbench['tps']:.2f}x pgbench tps).")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None,
                        help="Admin URL of an existing server (default: a private embedded "
                             "PostgreSQL 18 started for this run).")
    parser.add_argument("--configs", default="1x50,2x50,4x5,4x25,4x50,4x100",
                        help="Comma-separated PROCESSESxSLOTS configurations to measure.")
    parser.add_argument("--step-seconds", type=float, default=0.5,
                        help="Duration of each job's step, in seconds.")
    parser.add_argument("--lines", type=int, default=50, help="Log lines each job writes.")
    parser.add_argument("--warmup-seconds", type=float, default=8.0)
    parser.add_argument("--window-seconds", type=float, default=20.0)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--max-connections", type=int, default=300,
                        help="max_connections of the private server.")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown file whose section to replace (e.g. BENCHMARKS.md); "
                             "unset: print only.")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that workers, scratch databases and a
    # private server are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        configs = parse_configs(args.configs)
    except ValueError as exc:
        parser.error(f"--configs: {exc}")
    if args.step_seconds <= 0 or args.window_seconds <= 0 or args.warmup_seconds < 0:
        parser.error("--step-seconds and --window-seconds must be positive, "
                     "--warmup-seconds not negative")
    if args.lines < LOG_BURSTS:
        parser.error(f"--lines must be at least {LOG_BURSTS}")

    with contextlib.ExitStack() as stack:
        if args.url is None:
            admin_url, postmaster = stack.enter_context(private_server(args.max_connections))
        else:
            admin_url, postmaster = args.url, None
        report: dict[str, Any] = {
            "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(admin_url)
            + (" (private server)" if postmaster else ""),
            "results": [],
        }
        pgbench_runs = [measure_pgbench(admin_url, args.pgbench_seconds)]
        for processes, slots in configs:
            result = measure_configuration(admin_url, postmaster, processes, slots, args)
            print(json.dumps(result), file=sys.stderr, flush=True)
            report["results"].append(result)
        pgbench_runs.append(measure_pgbench(admin_url, args.pgbench_seconds))
    report["pgbench"] = {"runs": pgbench_runs,
                         "tps": statistics.median(run["tps"] for run in pgbench_runs),
                         "latency_ms": statistics.median(run["latency_ms"] for run in pgbench_runs)}
    section = render(report, args)
    print(section)
    print(json.dumps(report, indent=2, default=str), file=sys.stderr)
    if args.output is not None:
        replace_section(args.output, section, SECTION_START, SECTION_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
