"""Benchmark of webhook replies: latency of signed deliveries; writes its section of BENCHMARKS.md.

A webhook reply should take a few milliseconds because no git or network
work happens in the request. This measures, through a real `minijenkin api`
process on 127.0.0.1 (maintenance loops off, so nothing else runs in it):

1. reference: `pgbench -N` with one client on a scratch database of the same
   server, whose mean transaction latency is the unit of the "× ref" column;
2. GET /healthz (one `SELECT 1` through the pool), the floor of any request;
3. signed GitHub push deliveries, each a new head (delivery, run and plan job
   in one transaction), then GitLab pushes (token check), then replays of
   already-processed GitHub deliveries.

Usage: python -m bench.webhooks [--admin-url URL] [--requests N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import api_process  # noqa: E402
from minijenkin.db.migrate import migrate  # noqa: E402
from minijenkin.forges import sign_hmac_sha256  # noqa: E402

PGBENCH_SECONDS = 10
WARMUP = 20
SECRET = "bench-webhook-secret"
# Measured once by hand; rerun the py-spy command it names after changing the webhook path.
PROFILE_NOTE = (
    "Profile of the API process (py-spy 0.4.3, `py-spy record --subprocesses --format raw -- "
    "python bench/webhooks.py --requests 300`, 2026-12-04): about 70% of the time inside the "
    "webhook route is spent waiting for PostgreSQL (finding the repository, then one transaction "
    "of four statements and its commit), and finding the repository alone is about 21%. The "
    "rest is FastAPI, JSON parsing and psycopg query preparation."
)
START_MARK = "<!-- bench/webhooks.py: start -->"
END_MARK = "<!-- bench/webhooks.py: end -->"


def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pgbench_reference(admin_url: str) -> dict[str, float]:
    """Mean latency (ms) and tps of `pgbench -N`, one client, on a scratch database."""
    name = f"mj_bench_pgbench_{secrets.token_hex(4)}"
    create_database(admin_url, name)
    params = conninfo_to_dict(admin_url)
    env = {**os.environ, "PGHOST": params.get("host", "127.0.0.1"),
           "PGPORT": str(params.get("port", 5432)), "PGUSER": params.get("user", "postgres")}
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", name], env=env, check=True,
                       capture_output=True)
        result = subprocess.run(["pgbench", "-N", "-c", "1", "-T", str(PGBENCH_SECONDS), name],
                                env=env, check=True, capture_output=True, text=True)
    finally:
        drop_database(admin_url, name)
    latency = float(re.search(r"latency average = ([0-9.]+) ms", result.stdout).group(1))
    tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))
    return {"latency_ms": latency, "tps": tps}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summarise(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99), "mean": statistics.fmean(values)}


def github_push(index: int) -> tuple[bytes, dict[str, str]]:
    commit = f"{index + 1:040x}"
    payload = {
        "ref": "refs/heads/main", "before": "0" * 40, "after": commit,
        "repository": {"full_name": "bench/app", "clone_url": "https://github.com/bench/app.git"},
        "pusher": {"name": "bench"}, "sender": {"login": "bench"},
        "head_commit": {"id": commit, "message": f"Commit {index}",
                        "author": {"name": "Bench", "username": "bench"},
                        "added": [], "removed": [], "modified": ["README.md"]},
        "commits": [{"id": commit, "message": f"Commit {index}", "added": [], "removed": [],
                     "modified": ["README.md"]}],
    }
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-GitHub-Event": "push",
                  "X-GitHub-Delivery": str(uuid.uuid4()),
                  "X-Hub-Signature-256": "sha256=" + sign_hmac_sha256(SECRET, body)}


def gitlab_push(index: int) -> tuple[bytes, dict[str, str]]:
    commit = f"{index + 10_000_000:040x}"
    payload = {
        "object_kind": "push", "ref": "refs/heads/dev", "before": "0" * 40, "after": commit,
        "checkout_sha": commit, "user_username": "bench",
        "project": {"path_with_namespace": "bench/app",
                    "git_http_url": "https://github.com/bench/app.git"},
        "commits": [{"id": commit, "message": "x", "author": {"name": "Bench"},
                     "added": [], "modified": ["a"], "removed": []}],
        "total_commits_count": 1,
    }
    return json.dumps(payload).encode(), {
        "Content-Type": "application/json", "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": SECRET, "Idempotency-Key": str(uuid.uuid4())}


def measure(client: httpx.Client, requests: list[tuple[str, bytes | None, dict[str, str]]],
            expected: int) -> list[float]:
    timings = []
    for path, body, headers in requests:
        started = time.perf_counter()
        if body is None:
            response = client.get(path, headers=headers)
        else:
            response = client.post(path, content=body, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            raise RuntimeError(f"{path} returned {response.status_code}: {response.text}")
    return timings


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.platform()} "
            "(shared with other engineers' test runs)")


def render(report: dict) -> str:
    reference = report["reference"]
    unit = reference["latency_ms"]
    health = report["results"]["GET /healthz (SELECT 1)"]["p50"]
    lines = [
        START_MARK,
        "## Webhook replies (`bench/webhooks.py`)",
        "",
        f"- Command: `python -m bench.webhooks --requests {report['requests']}`",
        f"- Date: {report['date']}",
        f"- Machine: {report['machine']}",
        f"- Server: {report['server']}",
        f"- Reference, measured in the same run: `pgbench -N -c 1 -T {PGBENCH_SECONDS}` on the same "
        f"server: {reference['tps']:.0f} tps, so one write transaction takes {unit:.3f} ms. "
        "\"× ref\" is a latency divided by that transaction time; \"× healthz\" divides a p50 by "
        "the p50 of GET /healthz through the same API process.",
        "",
        f"{report['requests']} sequential requests per row after {WARMUP} warm-up ones, one HTTP "
        "keep-alive connection, a real `minijenkin api` process (maintenance loops off). A push "
        "delivery inserts the delivery record, the head, the run and its plan job in one "
        "transaction; no git or network work happens in the request.",
        "",
        "| request | p50 ms | p95 ms | p99 ms | p50 × ref | p99 × ref | p50 × healthz |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, figures in report["results"].items():
        lines.append(
            f"| {label} | {figures['p50']:.2f} | {figures['p95']:.2f} | {figures['p99']:.2f} | "
            f"{figures['p50'] / unit:.2f} | {figures['p99'] / unit:.2f} | "
            f"{figures['p50'] / health:.2f} |")
    lines += ["", PROFILE_NOTE, "", END_MARK]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if START_MARK in text and END_MARK in text:
        before = text[:text.index(START_MARK)]
        after = text[text.index(END_MARK) + len(END_MARK):].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "MINIJENKIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    name = f"mj_bench_webhooks_{secrets.token_hex(4)}"
    url = create_database(args.admin_url, name)
    data_dir = Path(f"/tmp/{name}")
    token = "mjt_bench_" + secrets.token_urlsafe(16)
    try:
        migrate(url)
        with psycopg.connect(url) as conn:
            server = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        reference = pgbench_reference(args.admin_url)
        count = args.requests
        with api_process(url, token, data_dir, quiet=True) as base, \
                httpx.Client(base_url=base, timeout=30) as client:
            admin = {"Authorization": f"Bearer {token}"}
            client.post("/api/repos", headers=admin, json={
                "name": "bench/app", "url": "https://github.com/bench/app.git",
                "webhook_secret": SECRET}).raise_for_status()
            health = [("/healthz", None, {})] * (WARMUP + count)
            pushes = [("/hooks/github", *github_push(index)) for index in range(WARMUP + count)]
            gitlab = [("/hooks/gitlab", *gitlab_push(index)) for index in range(WARMUP + count)]
            results = {
                "GET /healthz (SELECT 1)": summarise(measure(client, health, 200)[WARMUP:]),
                "GitHub push, new head (201)": summarise(measure(client, pushes, 201)[WARMUP:]),
                "GitLab push, new head (201)": summarise(measure(client, gitlab, 201)[WARMUP:]),
                "GitHub replay of a delivery (200)": summarise(
                    measure(client, pushes[:WARMUP + count], 200)[WARMUP:]),
            }
        report = {"requests": count, "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                  "machine": machine(), "server": server, "reference": reference,
                  "results": results}
        write_section(args.output, render(report))
        print(render(report))
    finally:
        drop_database(args.admin_url, name)
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


if __name__ == "__main__":
    main()
