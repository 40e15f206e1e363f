"""pgqueuer and procrastinate under the same two measurements as bench/queue.py.

Runs in the benchmark environment (.venv-bench), never the project's, and
prints one JSON object: {"pgqueuer": {...}, "procrastinate": {...}} with
"throughput" (jobs/s), "latency" (p50/p95/p99 in ms) and "version".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from bench.common import create_database, drop_database, latency_summary, wait_drained

ENQUEUE_CHUNK = 5_000
DRAIN_TIMEOUT_SECONDS = 600


def _asyncpg_url(url: str) -> str:
    """asyncpg takes URLs only; the benchmark server is reached over TCP."""
    params = conninfo_to_dict(url)
    return (f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
            f"{params.get('port', '5432')}/{params['dbname']}")


# -- pgqueuer -------------------------------------------------------------------


def _pgqueuer_worker(url: str, batch: int, barrier: Any, record: str) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    picked: list[tuple[int, float]] = []

    async def main() -> None:
        conn = await asyncpg.connect(_asyncpg_url(url))
        manager = QueueManager(Queries(AsyncpgDriver(conn)))

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            picked.append((int(job.payload or b"0"), time.time()))

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
        barrier.wait()
        await manager.run(batch_size=batch)

    asyncio.run(main())
    Path(record).write_text(json.dumps(picked))


async def _pgqueuer_queries(url: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(_asyncpg_url(url))
    return conn, Queries(AsyncpgDriver(conn))


async def _pgqueuer_prepare(url: str, jobs: int) -> None:
    conn, queries = await _pgqueuer_queries(url)
    await queries.install()
    for start in range(0, jobs, ENQUEUE_CHUNK):
        size = min(ENQUEUE_CHUNK, jobs - start)
        await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
    await conn.close()


# -- procrastinate ----------------------------------------------------------------


def _procrastinate_app(url: str, picked: list[tuple[int, float]]) -> tuple[Any, Any]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="bench")
    async def noop(i: int) -> None:
        picked.append((i, time.time()))

    return app, noop


def _procrastinate_worker(url: str, batch: int, barrier: Any, record: str) -> None:
    picked: list[tuple[int, float]] = []
    app, _task = _procrastinate_app(url, picked)

    async def main() -> None:
        async with app.open_async():
            barrier.wait()
            await app.run_worker_async(queues=["bench"], concurrency=batch, wait=True)

    asyncio.run(main())
    Path(record).write_text(json.dumps(picked))


async def _procrastinate_prepare(url: str, jobs: int) -> None:
    app, task = _procrastinate_app(url, [])
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, jobs, ENQUEUE_CHUNK):
            await task.batch_defer_async(*[{"i": index} for index in
                                           range(start, min(jobs, start + ENQUEUE_CHUNK))])


# -- the two measurements -----------------------------------------------------------

QUEUES: dict[str, dict[str, Any]] = {
    "pgqueuer": {"worker": _pgqueuer_worker, "prepare": _pgqueuer_prepare,
                 "remaining": "SELECT count(*) FROM (SELECT 1 FROM pgqueuer LIMIT 1) AS remaining"},
    "procrastinate": {"worker": _procrastinate_worker, "prepare": _procrastinate_prepare,
                      "remaining": "SELECT count(*) FROM (SELECT 1 FROM procrastinate_jobs "
                                   "WHERE status IN ('todo', 'doing') LIMIT 1) AS remaining"},
}


def _start(name: str, url: str, processes: int, batch: int, record_dir: Path) -> tuple[list[Any], Any]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    workers = []
    for index in range(processes):
        process = context.Process(target=QUEUES[name]["worker"], args=(
            url, batch, barrier, str(record_dir / f"{name}-{index}.json")))
        process.start()
        workers.append(process)
    return workers, barrier


def _stop(workers: list[Any]) -> None:
    for process in workers:
        if process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(timeout=60)


def _read_picked(record_dir: Path, name: str) -> dict[int, float]:
    picked: dict[int, float] = {}
    for path in record_dir.glob(f"{name}-*.json"):
        picked.update({key: at for key, at in json.loads(path.read_text())})
    return picked


def throughput(name: str, admin_url: str, jobs: int, processes: int, batch: int) -> float:
    url = create_database(admin_url, f"mj_bench_{name}")
    try:
        asyncio.run(QUEUES[name]["prepare"](url, jobs))
        workers, barrier = _start(name, url, processes, batch, Path(tempfile.mkdtemp()))
        barrier.wait()
        started = time.monotonic()
        ended = wait_drained(url, QUEUES[name]["remaining"], timeout=DRAIN_TIMEOUT_SECONDS)
        _stop(workers)
        return jobs / (ended - started)
    finally:
        drop_database(admin_url, url)


async def _enqueue_one(name: str, url: str, count: int, interval: float) -> dict[int, float]:
    started: dict[int, float] = {}
    if name == "pgqueuer":
        conn, queries = await _pgqueuer_queries(url)

        async def enqueue(index: int) -> None:
            await queries.enqueue("noop", str(index).encode())
    else:
        app, task = _procrastinate_app(url, [])
        await app.open_async()

        async def enqueue(index: int) -> None:
            await task.defer_async(i=index)

    next_at = time.monotonic()
    for index in range(count):
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started[index] = time.time()
        await enqueue(index)
        next_at += interval
    if name == "pgqueuer":
        await conn.close()
    else:
        await app.close_async()
    return started


def latency(name: str, admin_url: str, count: int, interval: float,
            processes: int) -> dict[str, float]:
    url = create_database(admin_url, f"mj_bench_{name}")
    record_dir = Path(tempfile.mkdtemp())
    try:
        asyncio.run(QUEUES[name]["prepare"](url, 0))
        workers, barrier = _start(name, url, processes, 10, record_dir)
        barrier.wait()
        time.sleep(2.0)  # let the workers connect and start listening
        enqueued = asyncio.run(_enqueue_one(name, url, count, interval))
        wait_drained(url, QUEUES[name]["remaining"], timeout=60)
        _stop(workers)
        picked = _read_picked(record_dir, name)
        return latency_summary([picked[index] - enqueued[index] for index in range(count)])
    finally:
        drop_database(admin_url, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--latency-jobs", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--queue", choices=sorted(QUEUES), action="append",
                        help="Measure only this queue (repeatable); default: all.")
    parser.add_argument("--measure", choices=("throughput", "latency", "both"), default="both")
    args = parser.parse_args()

    results: dict[str, dict[str, Any]] = {}
    for name in args.queue or QUEUES:
        entry: dict[str, Any] = {"version": version(name)}
        if args.measure in ("throughput", "both"):
            entry["throughput"] = throughput(name, args.url, args.jobs, args.processes, args.batch)
        if args.measure in ("latency", "both"):
            entry["latency"] = latency(name, args.url, args.latency_jobs, args.interval,
                                       args.processes)
        results[name] = entry
    print(json.dumps(results))


if __name__ == "__main__":
    main()
