"""Helpers shared by the benchmarks in the project environment and bench/competitors.py.

Only the standard library and psycopg are used here, because both
environments have them.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Drained-queue checks while a throughput run is on; the error this adds to
# the measured time is at most one interval.
DRAIN_POLL_SECONDS = 0.02


def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


def create_database(admin_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_drained(url: str, remaining_sql: str, *, timeout: float) -> float:
    """Poll until `remaining_sql` returns 0; return the time.monotonic() of that moment.

    The poll runs every 20 ms on the measured server, so `remaining_sql`
    should stop at the first row left (LIMIT 1) rather than count them all.
    """
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(remaining_sql).fetchone()
            now = time.monotonic()
            if row is not None and row[0] == 0:
                return now
            if now > deadline:
                raise TimeoutError(f"{row[0] if row else '?'} jobs left after {timeout} s")
            time.sleep(DRAIN_POLL_SECONDS)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_seconds: list[float]) -> dict[str, float]:
    milliseconds = [value * 1000 for value in latencies_seconds]
    return {"p50_ms": percentile(milliseconds, 0.50), "p95_ms": percentile(milliseconds, 0.95),
            "p99_ms": percentile(milliseconds, 0.99), "count": float(len(milliseconds))}


def enqueue_spaced(count: int, interval: float, enqueue: Callable[[int], None]) -> dict[int, float]:
    """Call enqueue(i) every `interval` seconds; return {i: time.time() before the call}."""
    started: dict[int, float] = {}
    next_at = time.monotonic()
    for index in range(count):
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        started[index] = time.time()
        enqueue(index)
        next_at += interval
    return started


def replace_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between the `start` and `end` markers of `path`, or append `section`.

    `section` must begin with `start` and end with `end`, so that the next run
    finds it again.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_process(url: str, token: str, data_dir: Path, *, quiet: bool = False) -> Iterator[str]:
    """Run `minijenkin api` (maintenance loops off) on a free loopback port; yield its base URL.

    The child gets this environment without Mini-Jenkin or PostgreSQL settings,
    plus the database URL, admin token and data directory given here.
    """
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MINIJENKIN_", "PG")) and key != "DATABASE_URL"}
    env.update({"MINIJENKIN_DATABASE_URL": url, "MINIJENKIN_ADMIN_TOKEN": token,
                "MINIJENKIN_DATA_DIR": str(data_dir), "MINIJENKIN_LOG_LEVEL": "WARNING"})
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(
        [sys.executable, "-m", "minijenkin", "api", "--port", str(port), "--no-maintenance"],
        env=env, stdout=output, stderr=output)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:  # refused while starting; URLError and HTTPError are OSErrors
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API process did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
