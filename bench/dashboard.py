"""Server-side render time of the dashboard pages on a 1,000,000-job history.

Usage, from the repository root (as a module, like bench.metrics):
    .venv/bin/python -m bench.dashboard [--jobs 1000000] [--log-lines 1000000]
                                        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Steps, against the PostgreSQL server at --admin-url, in a database this
script creates and drops:

1. Reference: `pgbench -N` with one client (bench.metrics.pgbench_reference).
2. The history of bench.metrics (set-based SQL: --jobs jobs, 5 per run, 50
   repositories, 365 days, log lines in the last 90 days), plus one job whose
   attempt has a 1,000,000-line log, 24 hours of queue samples, queued and
   running jobs with live workers, refreshed metrics views and a search index
   over every stored line.
3. Each page requested in process through the ASGI app (no network, the same
   code path as uvicorn's), REQUESTS times after WARMUP_REQUESTS, interleaved
   round by round with GET /healthz (one pooled `SELECT 1`), the second
   reference: its time is the floor of any page that reads the database.
4. EXPLAIN (ANALYZE, BUFFERS) of every query behind the pages, checked for
   sequential scans of the big tables.

Results replace this script's section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.metrics import (
    BIG_TABLES,
    add_live_state,
    connect,
    create_database,
    drop_database,
    generate_history,
    log,
    machine,
    percentile,
    pgbench_reference,
    timed,
)
from minijenkin.api.app import create_app
from minijenkin.config import load_settings
from minijenkin.db.migrate import migrate
from minijenkin.logs.search import CANDIDATE_CHUNKS, SCAN_CHUNKS
from minijenkin.sql import QUERIES

ROOT = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench/dashboard.py: start -->"
SECTION_END = "<!-- bench/dashboard.py: end -->"
TARGET_MS = 300.0
REQUESTS = int(os.environ.get("MINIJENKIN_BENCH_REQUESTS", "100"))
WARMUP_REQUESTS = 10
INDEX_LINES_PER_CALL = 200_000

# The newest job with a single attempt gets a log of %(lines)s lines instead of its own.
BIG_LOG_JOB_SQL = """
SELECT j.id, (a.started_at AT TIME ZONE 'UTC')::date AS day
FROM jobs j JOIN job_attempts a ON a.job_id = j.id AND a.attempt = 1
WHERE j.kind = 'script' AND j.status = 'succeeded' AND j.attempt = 1
ORDER BY j.id DESC
LIMIT 1
"""

BIG_LOG_SQL = """
INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line)
SELECT %(job_id)s, 1, s, %(day)s, 1 + (s %% 11 = 0)::int, now() + s * interval '1 millisecond',
       CASE WHEN s %% 1000 = 0 THEN E'\\x1b[32mok\\x1b[0m checkpoint ' || s
            WHEN s = 777777 THEN 'FATAL: disk quota exceeded'
            ELSE 'test_case_' || (s %% 4999) || ' passed in ' || (s %% 97) || ' ms' END
FROM generate_series(1, %(lines)s) AS s
"""

# Every stored range, so that the search page has an index to read.
INDEX_QUEUE_SQL = """
INSERT INTO job_log_index_queue (job_id, attempt, day, first_seq, last_seq)
SELECT job_id, attempt, day, min(seq), max(seq) FROM job_logs GROUP BY job_id, attempt, day
"""

QUEUE_SAMPLES_SQL = """
INSERT INTO metrics_queue_samples (sampled_at, queued, running)
SELECT now() - s * interval '15 seconds', (50 + 40 * sin(s / 300.0))::int, (s % 40)
FROM generate_series(1, 5760) AS s
"""


def prepare(url: str, *, jobs: int, log_lines: int, big_log_lines: int) -> dict[str, Any]:
    migrate(url)
    counts = generate_history(url, jobs=jobs, log_lines=log_lines)
    with connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        with timed(f"{big_log_lines:,}-line log"):
            target = conn.execute(BIG_LOG_JOB_SQL).fetchone()
            big_job = target["id"]
            conn.execute("DELETE FROM job_logs WHERE job_id = %s AND day = %s",
                         (big_job, target["day"]))
            conn.execute(BIG_LOG_SQL, {"job_id": big_job, "day": target["day"],
                                       "lines": big_log_lines})
        conn.execute(QUEUE_SAMPLES_SQL)
    add_live_state(url)
    with connect(url) as conn:
        with timed("search index"):
            conn.execute(INDEX_QUEUE_SQL)
            while conn.execute("SELECT chunks FROM mj_logs_index_v1(%s)",
                               (INDEX_LINES_PER_CALL,)).fetchone()["chunks"]:
                pass
        with timed("metrics views"):
            conn.execute("SELECT mj_metrics_refresh_v1(0)")
        conn.execute("VACUUM ANALYZE")
        ids = conn.execute(
            "SELECT (SELECT max(id) FROM pipeline_runs WHERE status = 'failed') AS failed_run, "
            "       (SELECT min(id) FROM pipeline_runs) + 1000 AS deep_before, "
            "       (SELECT run_id FROM jobs WHERE id = %s) AS big_run", (big_job,)).fetchone()
        counts["job_logs"] = conn.execute("SELECT count(*) AS n FROM job_logs").fetchone()["n"]
        counts["job_log_search"] = conn.execute(
            "SELECT count(*) AS n FROM job_log_search").fetchone()["n"]
        info = {
            "server": conn.execute("SELECT version() AS v").fetchone()["v"].split(" on ")[0],
            "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()["shared_buffers"],
        }
    return {"counts": counts, "big_job": big_job, "big_log_lines": big_log_lines, **ids, **info}


def pages(data: dict[str, Any]) -> list[tuple[str, str]]:
    big = data["big_job"]
    return [
        ("runs list", "/"),
        ("runs list, one repository", "/?repo=bench/repo-07"),
        ("runs list, status failed", "/?status=failed"),
        ("runs list, branch and trigger", "/?branch=main&trigger=push"),
        ("runs list, page near the oldest run", f"/?before={data['deep_before']}"),
        ("run page (graph of 5 jobs)", f"/runs/{data['big_run']}"),
        (f"job page, {data['big_log_lines']:,}-line log", f"/jobs/{big}"),
        ("workers", "/workers"),
        ("metrics charts, 30 days", "/charts?days=30"),
        ("metrics charts, 90 days", "/charts?days=90"),
        ("search, frequent word", "/search?q=checkpoint"),
        ("search, rare word", "/search?q=quota"),
        ("environments", "/environments"),
        ("log window in the middle (viewer scroll)",
         f"/api/jobs/{big}/logs?attempt=1&after=500000&limit=500&html=true"),
        ("log tail (viewer start)", f"/api/jobs/{big}/logs?attempt=1&tail=200&html=true"),
        ("find in log, 777,777 lines ahead", f"/api/jobs/{big}/logs/find?attempt=1&q=quota"),
    ]


async def measure(url: str, token: str, targets: list[tuple[str, str]]) -> tuple[
        dict[str, float], list[dict[str, Any]]]:
    """Request every target REQUESTS times, interleaved with /healthz; return their timings."""
    timings: dict[str, list[float]] = {path: [] for _, path in targets}
    health: list[float] = []
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mj-bench-dashboard-") as data_dir:
        settings = load_settings(data_dir=Path(data_dir), admin_token=token, log_level="WARNING",
                                 secret_key=base64.b64encode(secrets.token_bytes(32)).decode())
        await _request_all(create_app(settings, url, maintenance=False), token, targets,
                           timings, health, sizes)
    results = []
    for name, path in targets:
        values = timings[path]
        results.append({"name": name, "path": path, "p50": statistics.median(values),
                        "p99": percentile(values, 0.99), "bytes": sizes[path]})
    return {"p50": statistics.median(health), "p99": percentile(health, 0.99)}, results


async def _request_all(app: Any, token: str, targets: list[tuple[str, str]],
                       timings: dict[str, list[float]], health: list[float],
                       sizes: dict[str, int]) -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=60) as client:
            for round_number in range(WARMUP_REQUESTS + REQUESTS):
                for _, path in targets:
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise RuntimeError(f"{path} returned {response.status_code}: "
                                           f"{response.text[:500]}")
                    started = time.perf_counter()
                    probe = await client.get("/healthz")
                    health_ms = (time.perf_counter() - started) * 1000
                    if probe.status_code != 200:
                        raise RuntimeError(f"/healthz returned {probe.status_code}")
                    if round_number >= WARMUP_REQUESTS:
                        timings[path].append(elapsed)
                        health.append(health_ms)
                    sizes[path] = len(response.content)
                if round_number % 20 == 0:
                    log(f"round {round_number + 1}/{WARMUP_REQUESTS + REQUESTS}")


def explain_all(url: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    with connect(url) as conn:
        big = data["big_job"]
        day = conn.execute("SELECT (started_at AT TIME ZONE 'UTC')::date AS d FROM job_attempts "
                           "WHERE job_id = %s AND attempt = 1", (big,)).fetchone()["d"]
        workers = [row["id"] for row in conn.execute("SELECT id FROM workers").fetchall()]
        now = conn.execute("SELECT now() AS now").fetchone()["now"]
        run_list = {"repo": None, "status": None, "event": None, "ref": None, "before_id": None,
                    "limit": 51}
        log_args = {"job_id": big, "attempt": 1, "day": day}
        # The search page's parameters (minijenkin.logs.search.search_logs).
        search = {"repo_id": None, "ref": None, "since": None, "limit": 50,
                  "candidates": CANDIDATE_CHUNKS, "scan_chunks": SCAN_CHUNKS}
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("run_list", "no filter", run_list),
            ("run_list", "repository", {**run_list, "repo": "bench/repo-07"}),
            ("run_list", "status failed", {**run_list, "status": "failed"}),
            ("run_list", "branch and event", {**run_list, "ref": "refs/heads/main", "event": "push"}),
            ("run_list", "near the oldest run", {**run_list, "before_id": data["deep_before"]}),
            ("run_get", "", {"run_id": data["big_run"]}),
            ("dashboard_run_jobs", "", {"run_id": data["big_run"]}),
            ("job_get", "", {"job_id": big}),
            ("job_attempts", "", {"job_id": big}),
            ("log_lines_tail", "", {**log_args, "before": 2**31, "limit": 200}),
            ("log_lines_after", "middle", {**log_args, "after": 500000, "limit": 500}),
            ("log_last_seq", "", log_args),
            ("log_find_next", "777,777 lines ahead", {**log_args, "after": 0, "needle": "quota"}),
            ("dashboard_workers", "", {"recent_seconds": 86400.0, "limit": 200}),
            ("dashboard_workers_running_jobs", "", {"worker_ids": workers}),
            ("dashboard_queue_depth_series", "", {"from": now - dt.timedelta(hours=24), "to": now,
                                                  "step": dt.timedelta(minutes=10)}),
            ("dashboard_repo_names", "", {"limit": 500}),
            ("dashboard_newest_run", "", {}),
            ("logs_search", "frequent word", {**search, "q": "checkpoint"}),
            ("logs_search", "rare word", {**search, "q": "quota"}),
        ]
        results = []
        for name, variant, params in cases:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERIES[name], params).fetchall()
            plan = "\n".join(row["QUERY PLAN"] for row in rows)
            execution = re.search(r"Execution Time: ([0-9.]+) ms", plan)
            results.append({"query": name, "variant": variant, "plan": plan,
                            "execution_ms": float(execution.group(1)) if execution else None,
                            "big_seq_scans": sorted(set(BIG_TABLES.findall(plan)))})
    return results


def write_section(path: Path, section: str) -> None:
    """Replace this script's section of `path`, or append it when there is none."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION_START in text:
        before = text.split(SECTION_START, 1)[0]
        after = text.split(SECTION_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.1f}"


def render(report: dict[str, Any]) -> str:
    ref = report["reference"]
    health = report["health"]
    data = report["data"]
    lines = [
        SECTION_START,
        "## Dashboard pages on a 1,000,000-job history (bench/dashboard.py)",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']}",
        f"- Machine: {report['machine']} (shared with other engineers' test runs)",
        f"- Server: {data['server']} (shared_buffers {data['shared_buffers']})",
        f"- References, measured in the same run: `pgbench -N -c 1` on the same server, "
        f"{ref['tps']:.0f} tps, so one write transaction takes {ref['latency_ms']:.3f} ms "
        f"(\"× pgbench\"); and `GET /healthz` (one pooled `SELECT 1` through the same app), "
        f"interleaved with the pages: p50 {health['p50']:.2f} ms, p99 {health['p99']:.2f} ms "
        f"(\"× healthz\", p50 over p50).",
        f"- Render time is measured in process through the ASGI app (routing, authentication, "
        f"queries, Jinja2 and the response body; no network): {REQUESTS} requests per page after "
        f"{WARMUP_REQUESTS} warm-up ones, round by round over all pages. Target: under "
        f"{TARGET_MS:.0f} ms.",
        "",
        "| table | rows |",
        "| --- | --- |",
    ]
    for table, count in data["counts"].items():
        if table != "database_bytes":
            lines.append(f"| {table} | {count:,} |")
    lines += [
        f"| (database size) | {data['counts']['database_bytes'] / 2**30:.1f} GiB |",
        "",
        f"One job's attempt holds a {data['big_log_lines']:,}-line log; 24 hours of queue samples; "
        "20 live workers with running jobs and 200 queued runs.",
        "",
        "| page | p50 ms | p99 ms | p50 × healthz | p99 × pgbench | under target (p99) | bytes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["pages"]:
        ok = "yes" if row["p99"] < TARGET_MS else "**no**"
        lines.append(f"| {row['name']} (`{row['path'].split('?')[0]}`) | {row['p50']:.1f} | "
                     f"{row['p99']:.1f} | {ratio(row['p50'], health['p50'])} | "
                     f"{ratio(row['p99'], ref['latency_ms'])} | {ok} | {row['bytes']:,} |")
    lines += [
        "",
        "### EXPLAIN (ANALYZE, BUFFERS) of the queries behind the pages",
        "",
        "A sequential scan of jobs, job_attempts, pipeline_runs or a job_logs partition would be "
        "listed in the last column.",
        "",
        "| query | case | execution ms | × pgbench | seq scans of big tables |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["explain"]:
        execution = row["execution_ms"] or 0.0
        lines.append(f"| `{row['query']}` | {row['variant']} | {execution:.3f} | "
                     f"{ratio(execution, ref['latency_ms'])} | "
                     f"{', '.join(row['big_seq_scans']) or 'none'} |")
    lines += ["", "<details><summary>Plans</summary>", ""]
    for row in report["explain"]:
        lines += [f"`{row['query']}` {row['variant']}", "", "```", row["plan"], "```", ""]
    lines += ["</details>", "", SECTION_END]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "MINIJENKIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--log-lines", type=int, default=1_000_000,
                        help="Lines spread over the last 90 days' jobs, besides the big log.")
    parser.add_argument("--big-log-lines", type=int, default=1_000_000,
                        help="Lines of the one long log the job page and the log API read.")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="Keep the generated database.")
    args = parser.parse_args()

    name = f"mj_bench_dashboard_{secrets.token_hex(4)}"
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.dashboard", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    try:
        with timed("pgbench reference"):
            report["reference"] = pgbench_reference(args.admin_url)
        url = create_database(args.admin_url, name)
        report["data"] = prepare(url, jobs=args.jobs, log_lines=args.log_lines,
                                 big_log_lines=args.big_log_lines)
        log(f"data: {report['data']}")
        token = "mjt_bench_" + secrets.token_urlsafe(16)
        with timed("pages"):
            report["health"], report["pages"] = asyncio.run(
                measure(url, token, pages(report["data"])))
        for row in report["pages"]:
            log(f"{row['name']}: p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms")
        report["explain"] = explain_all(url, report["data"])
    finally:
        if args.keep:
            log(f"kept database {name}")
        else:
            drop_database(args.admin_url, name)
    write_section(args.output, render(report))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
