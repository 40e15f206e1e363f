"""Benchmark of the metrics on a year of generated history; writes its section of BENCHMARKS.md.

Usage, from the repository root (as a module, so that bench/ is not put first on
sys.path, where bench/queue.py would shadow the standard library's queue):
    .venv/bin/python -m bench.metrics [--jobs 1000000] [--log-lines 20000000]
                                      [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Steps, all against the PostgreSQL server at --admin-url, in databases this
script creates and drops:

1. Reference: `pgbench -N` with one client, whose mean transaction latency is
   the unit every figure is also given in (the machine is shared and noisy,
   so the ratios compare better across runs than the milliseconds).
2. A history generated with set-based SQL: --jobs jobs (5 per run, 50
   repositories, 365 days, about 10 % of test jobs retried) and --log-lines
   log lines in the daily job_logs partitions of the last 90 days. Beside it,
   a migrated database with the same repositories and no history.
3. Claim and finish latency on both databases, interleaved round by round,
   and on the history with and without the index pipeline_runs_created_idx
   that migration 0008 adds.
4. Refresh time of every metrics view.
5. p50/p99 of the hot endpoints through a real `minijenkin api` process.
6. EXPLAIN (ANALYZE, BUFFERS) of every query behind those endpoints, checked
   for sequential scans of the big tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from bench.common import api_process
from minijenkin.db.migrate import migrate
from minijenkin.metrics.figures import FIGURES, LOG_INGEST_WINDOW_SECONDS
from minijenkin.sql import QUERIES

ROOT = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench/metrics.py: start -->"
SECTION_END = "<!-- bench/metrics.py: end -->"
BIG_TABLES = re.compile(r"Seq Scan on (jobs|job_attempts|pipeline_runs|job_logs\w*)\b")

REPOSITORIES = 50
JOBS_PER_RUN = 5
HISTORY_DAYS = 365
LOG_DAYS = 90
CLAIM_ROUNDS = 4
CLAIMS_PER_ROUND = 150
INDEX_ROUNDS = 3
REQUESTS = 300
WARMUP_REQUESTS = 20
PGBENCH_SECONDS = 15
# Same definition as in migration 0008_metrics.sql.
CREATED_INDEX_SQL = "CREATE INDEX IF NOT EXISTS pipeline_runs_created_idx ON pipeline_runs (created_at)"


# --- databases -------------------------------------------------------------

def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


def create_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def log(message: str) -> None:
    print(f"{dt.datetime.now():%H:%M:%S} {message}", flush=True)


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{label}: {time.perf_counter() - started:.1f} s")


# --- reference -------------------------------------------------------------

def pgbench_reference(admin_url: str) -> dict[str, float]:
    """Measure the tps and mean latency (ms) of `pgbench -N`, one client, on a scratch database."""
    name = f"mj_bench_pgbench_{secrets.token_hex(4)}"
    url = create_database(admin_url, name)
    params = conninfo_to_dict(url)
    env = {**os.environ, "PGHOST": params.get("host", "127.0.0.1"),
           "PGPORT": str(params.get("port", 5432)), "PGUSER": params.get("user", "postgres")}
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", name], env=env, check=True,
                       capture_output=True)
        result = subprocess.run(["pgbench", "-N", "-c", "1", "-T", str(PGBENCH_SECONDS), name],
                                env=env, check=True, capture_output=True, text=True)
    finally:
        drop_database(admin_url, name)
    tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))
    return {"tps": tps, "latency_ms": 1000.0 / tps}


# --- history ---------------------------------------------------------------

REPOSITORIES_SQL = """
INSERT INTO repositories (name, url)
SELECT 'bench/repo-' || lpad(g::text, 2, '0'), 'file:///nowhere'
FROM generate_series(1, %(repositories)s) AS g
"""

# Runs spread evenly over the last HISTORY_DAYS days, ids in time order.
# Two consecutive runs share a commit (a re-run or a re-trigger).
RUNS_SQL = """
INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, message, author, created_at,
                           started_at, finished_at)
SELECT 1 + (g %% %(repositories)s),
       CASE WHEN r < 0.85 THEN 'succeeded' WHEN r < 0.95 THEN 'failed'
            WHEN r < 0.98 THEN 'cancelled' ELSE 'timed_out' END,
       'push', 'refs/heads/main',
       md5((g / 2)::text) || substr(md5('c' || (g / 2)), 1, 8),
       'Commit message of run ' || g, 'Bench Author',
       created, created + interval '4 seconds',
       created + interval '4 seconds' + make_interval(secs => 60 + 900 * random() * random())
FROM (
    SELECT g, random() AS r,
           now() - make_interval(days => %(days)s)
               + make_interval(secs => %(days)s * 86400.0 * g / %(runs)s) AS created
    FROM generate_series(1, %(runs)s) AS g
) s
"""

# Five jobs per run: plan, build, test, lint, package. A failed run has a
# failed test and a skipped package. About 10 % of test jobs took a second
# attempt after a failure.
JOBS_SQL = """
INSERT INTO jobs (run_id, repo_id, kind, key, name, status, spec, labels, attempt, created_at,
                  queued_at, started_at, finished_at, exit_code)
SELECT pr.id, pr.repo_id, k.kind, k.key, k.key,
       CASE WHEN pr.status = 'failed' AND k.key = 'test' THEN 'failed'
            WHEN pr.status = 'failed' AND k.key = 'package' THEN 'skipped'
            WHEN pr.status = 'cancelled' AND k.key = 'package' THEN 'cancelled'
            WHEN pr.status = 'timed_out' AND k.key = 'test' THEN 'timed_out'
            ELSE 'succeeded' END,
       jsonb_build_object('steps', jsonb_build_array(
           jsonb_build_object('name', 'Run ' || k.key, 'run', 'make ' || k.key || ' V=1'),
           jsonb_build_object('name', 'Report', 'run', 'echo done')), 'env', '{}'::jsonb),
       k.labels,
       CASE WHEN k.key = 'test' AND pr.id % 10 = 3 THEN 2 ELSE 1 END,
       pr.created_at,
       pr.created_at + k.offset_seconds * interval '1 second',
       pr.created_at + (k.offset_seconds + 2 + (pr.id % 17)) * interval '1 second',
       least(pr.finished_at, pr.created_at + (k.offset_seconds + 60 + (pr.id % 300)) * interval '1 second'),
       0
FROM pipeline_runs pr
CROSS JOIN (VALUES ('plan', 'plan', '{}'::text[], 0), ('script', 'build', '{linux}', 5),
                   ('script', 'test', '{linux}', 10), ('script', 'lint', '{}', 10),
                   ('script', 'package', '{docker,linux}', 20))
    AS k (kind, key, labels, offset_seconds)
ORDER BY pr.id, k.offset_seconds, k.key
"""

ATTEMPTS_SQL = """
INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, exit_code, queued_at,
                          started_at, finished_at)
SELECT j.id, a.number, '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
       CASE WHEN a.number < j.attempt THEN 'failed' ELSE j.status END,
       CASE WHEN a.number < j.attempt THEN 1 ELSE 0 END,
       j.queued_at - (j.attempt - a.number) * interval '30 seconds',
       j.started_at - (j.attempt - a.number) * interval '30 seconds',
       CASE WHEN a.number < j.attempt THEN j.started_at - interval '5 seconds'
            ELSE j.finished_at END
FROM jobs j
CROSS JOIN LATERAL generate_series(1, j.attempt) AS a (number)
WHERE j.status NOT IN ('skipped', 'cancelled') AND j.started_at IS NOT NULL
ORDER BY j.id, a.number
"""

LOG_JOBS_SQL = """
SELECT count(*) AS n FROM jobs
WHERE kind = 'script' AND status NOT IN ('skipped', 'cancelled')
  AND started_at >= (now() AT TIME ZONE 'UTC')::date - %(days)s
"""

# One statement per day keeps each transaction and its WAL bounded.
LOG_LINES_SQL = """
INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line)
SELECT j.id, j.attempt, s, (j.started_at AT TIME ZONE 'UTC')::date, 1 + (s %% 7 = 0)::int,
       j.started_at + s * interval '10 milliseconds',
       'step ' || (s %% 5) || ': compiling module_' || (s %% 97) || '.c -O2 -Wall (' || s || ')'
FROM jobs j
CROSS JOIN generate_series(1, %(per_job)s) AS s
WHERE j.kind = 'script' AND j.status NOT IN ('skipped', 'cancelled')
  AND j.started_at >= %(day)s::date AND j.started_at < %(day)s::date + 1
"""


def generate_history(url: str, *, jobs: int, log_lines: int) -> dict[str, int]:
    runs = jobs // JOBS_PER_RUN
    with connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(REPOSITORIES_SQL, {"repositories": REPOSITORIES})
        with timed(f"{runs} runs"):
            conn.execute(RUNS_SQL, {"repositories": REPOSITORIES, "runs": runs,
                                    "days": HISTORY_DAYS})
        with timed(f"{runs * JOBS_PER_RUN} jobs"):
            conn.execute(JOBS_SQL)
        with timed("job attempts"):
            conn.execute(ATTEMPTS_SQL)

        today = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS d").fetchone()["d"]
        conn.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)",
                     (today - dt.timedelta(days=LOG_DAYS + 1), today + dt.timedelta(days=7)))
        log_jobs = conn.execute(LOG_JOBS_SQL, {"days": LOG_DAYS}).fetchone()["n"]
        per_job = -(-log_lines // log_jobs)
        with timed(f"log lines ({per_job} per job of {log_jobs})"):
            for offset in range(LOG_DAYS, -1, -1):
                conn.execute(LOG_LINES_SQL, {"per_job": per_job,
                                             "day": today - dt.timedelta(days=offset)})
        with timed("VACUUM ANALYZE"):
            conn.execute("VACUUM ANALYZE")
        counts = {}
        for table in ("pipeline_runs", "jobs", "job_attempts", "job_logs"):
            counts[table] = conn.execute(
                sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))).fetchone()["n"]
        counts["database_bytes"] = conn.execute(
            "SELECT pg_database_size(current_database()) AS n").fetchone()["n"]
    return counts


def add_repositories(url: str) -> None:
    with connect(url) as conn:
        conn.execute(REPOSITORIES_SQL, {"repositories": REPOSITORIES})
        conn.execute("VACUUM ANALYZE")


def add_live_state(url: str) -> None:
    """Queued and running jobs and live workers, so that live figures have rows to read."""
    with connect(url) as conn:
        workers = []
        for index in range(20):
            worker_id = uuid.uuid4()
            labels = [["linux"], ["linux", "docker"], []][index % 3]
            conn.execute("SELECT mj_worker_register_v1(%s, %s, 'bench-host', 1, %s, 4, 'bench')",
                         (worker_id, f"bench-{index}", labels))
            workers.append(worker_id)
        for index in range(200):
            conn.execute("SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'm', "
                         "'a', '{}')", (1 + index % REPOSITORIES, "b" * 40))
        for worker_id in workers[:10]:
            conn.execute("SELECT * FROM mj_job_claim_v1(%s, '{linux,docker}', 3)", (worker_id,))
        conn.execute("SELECT mj_metrics_log_ingest_sample_v1(600)")
        conn.execute("ANALYZE jobs")


# --- queue latency ---------------------------------------------------------

def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def claim_round(url: str, claims: int) -> tuple[list[float], list[float]]:
    """Queue `claims` runs, then claim and finish their plan jobs one by one; return ms lists."""
    claim_ms: list[float] = []
    finish_ms: list[float] = []
    with connect(url) as conn:
        worker_id = uuid.uuid4()
        conn.execute("SELECT mj_worker_register_v1(%s, 'bench-claimer', 'bench-host', 1, "
                     "'{linux,docker}', 1, 'bench')", (worker_id,))
        for index in range(claims):
            conn.execute("SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'm', "
                         "'a', '{}')", (1 + index % REPOSITORIES, "c" * 40))
        claim = QUERIES["job_claim"]
        finish = QUERIES["job_finish"]
        for _ in range(claims):
            started = time.perf_counter()
            rows = conn.execute(claim, {"worker_id": worker_id, "labels": ["linux", "docker"],
                                        "limit": 1}).fetchall()
            claim_ms.append((time.perf_counter() - started) * 1000)
            if not rows:
                raise RuntimeError("the claim benchmark found no queued job")
            started = time.perf_counter()
            conn.execute(finish, {"job_id": rows[0]["job_id"], "lease_token": rows[0]["lease_token"],
                                  "status": "succeeded", "exit_code": 0, "reason": None,
                                  "backoff_base": 1.0, "backoff_max": 10.0})
            finish_ms.append((time.perf_counter() - started) * 1000)
        conn.execute("SELECT mj_worker_stop_v1(%s)", (worker_id,))
    return claim_ms, finish_ms


def summarise(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p99": percentile(values, 0.99),
            "mean": statistics.fmean(values)}


def compare_claims(urls: dict[str, str]) -> dict[str, dict[str, dict[str, float]]]:
    """Measure claim and finish latency per database, in interleaved rounds."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in urls}
    for url in urls.values():
        claim_round(url, 30)  # warm-up
    for round_number in range(CLAIM_ROUNDS):
        for name, url in urls.items():
            claims, finishes = claim_round(url, CLAIMS_PER_ROUND)
            samples[name][0].extend(claims)
            samples[name][1].extend(finishes)
        log(f"claim round {round_number + 1}/{CLAIM_ROUNDS} done")
    return {name: {"claim": summarise(claims), "finish": summarise(finishes)}
            for name, (claims, finishes) in samples.items()}


def compare_index(url: str) -> dict[str, dict[str, dict[str, float]]]:
    """Measure claim and finish latency on the history with and without pipeline_runs_created_idx."""
    samples: dict[str, tuple[list[float], list[float]]] = {"with": ([], []), "without": ([], [])}
    index_sql = CREATED_INDEX_SQL
    try:
        for _ in range(INDEX_ROUNDS):
            for variant in ("with", "without"):
                with connect(url) as conn:
                    if variant == "with":
                        conn.execute(index_sql)
                    else:
                        conn.execute("DROP INDEX IF EXISTS pipeline_runs_created_idx")
                claims, finishes = claim_round(url, CLAIMS_PER_ROUND)
                samples[variant][0].extend(claims)
                samples[variant][1].extend(finishes)
    finally:
        with connect(url) as conn:
            conn.execute(index_sql)
    return {name: {"claim": summarise(claims), "finish": summarise(finishes)}
            for name, (claims, finishes) in samples.items()}


# --- refresh ---------------------------------------------------------------

def refresh_times(url: str) -> list[dict[str, Any]]:
    """Refresh every view twice; return the second (warm) refresh's durations in seconds."""
    with connect(url) as conn:
        conn.execute("SELECT mj_metrics_refresh_v1(0)")
        rows = conn.execute("SELECT view_name, started_at, finished_at "
                            "FROM mj_metrics_refresh_v1(0)").fetchall()
        sizes = {row["view"]: row["n"] for row in conn.execute(
            "SELECT matviewname AS view, (xpath('/row/n/text()', "
            "query_to_xml(format('SELECT count(*) AS n FROM %I', matviewname), false, true, '')))"
            "[1]::text::bigint AS n FROM pg_matviews")}
    return [{"view": row["view_name"],
             "seconds": (row["finished_at"] - row["started_at"]).total_seconds(),
             "rows": sizes.get(row["view_name"])} for row in rows]


# --- HTTP ------------------------------------------------------------------

def endpoint_latency(base: str, token: str, path: str, params: dict[str, str]) -> dict[str, float]:
    timings = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        for index in range(WARMUP_REQUESTS + REQUESTS):
            started = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{path} returned {response.status_code}: {response.text}")
            if index >= WARMUP_REQUESTS:
                timings.append(elapsed)
    return {**summarise(timings), "bytes": len(response.content)}


def endpoints(now: dt.datetime) -> list[tuple[str, str, dict[str, str], float]]:
    ninety_days = {"from": (now - dt.timedelta(days=90)).isoformat(), "to": now.isoformat()}
    return [
        ("live and history figures", "/metrics", {}, 50),
        ("summary", "/api/metrics/summary", {}, 50),
        ("90-day runs, 1d", "/api/metrics/timeseries",
         {"metric": "runs", "step": "1d", **ninety_days}, 200),
        ("90-day run_duration_p95 of one repository, 1d", "/api/metrics/timeseries",
         {"metric": "run_duration_p95", "step": "1d", "repo": "bench/repo-07", **ninety_days},
         200),
        ("90-day queue_wait_p95, 1d", "/api/metrics/timeseries",
         {"metric": "queue_wait_p95", "step": "1d", **ninety_days}, 200),
        ("90-day jobs_finished, 1h (2160 points)", "/api/metrics/timeseries",
         {"metric": "jobs_finished", "step": "1h", **ninety_days}, 200),
    ]


# --- EXPLAIN ---------------------------------------------------------------

def explain_all(url: str, now: dt.datetime) -> list[dict[str, Any]]:
    repo_id = 7
    series = {"from": now - dt.timedelta(days=90), "to": now, "step": dt.timedelta(days=1),
              "repo_id": repo_id}
    cases: list[tuple[str, dict[str, Any]]] = [
        (figure.query, {"now": None, "window_seconds": LOG_INGEST_WINDOW_SECONDS})
        for figure in FIGURES
    ]
    cases += [
        ("metrics_refreshes", {}),
        ("metrics_summary_repos", {"repo_id": None}),
        ("metrics_summary_job_names", {"repo_id": None, "limit": 50}),
        ("metrics_summary_queue_wait", {}),
        ("metrics_summary_throughput", {"repo_id": 0, "now": None}),
        ("repo_get", {"id": None, "name": "bench/repo-07"}),
        ("metrics_series_runs", {**series, "value": "duration_p95"}),
        ("metrics_series_queue_wait", {**series, "repo_id": 0, "value": "wait_p95"}),
        ("metrics_series_jobs", {**series, "repo_id": 0, "step": dt.timedelta(hours=1),
                                 "value": "jobs"}),
    ]
    results = []
    with connect(url) as conn:
        for name, params in cases:
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERIES[name], params).fetchall()
            plan = "\n".join(row["QUERY PLAN"] for row in rows)
            execution = re.search(r"Execution Time: ([0-9.]+) ms", plan)
            results.append({"query": name, "plan": plan,
                            "execution_ms": float(execution.group(1)) if execution else None,
                            "big_seq_scans": sorted(set(BIG_TABLES.findall(plan)))})
    return results


# --- report ----------------------------------------------------------------

def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, {platform.platform()}"


def ratio(value_ms: float, reference_ms: float) -> str:
    return f"{value_ms / reference_ms:.2f}"


def render(report: dict[str, Any]) -> str:
    ref = report["reference"]
    ref_ms = ref["latency_ms"]
    lines = [
        SECTION_START,
        "## Metrics on a year of history (bench/metrics.py)",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']}",
        f"- Machine: {report['machine']} (shared with other engineers' test runs)",
        f"- Server: {report['server']}, settings as installed (shared_buffers "
        f"{report['shared_buffers']}, work_mem {report['work_mem']})",
        f"- Reference, measured in the same run: `pgbench -N -c 1 -T {PGBENCH_SECONDS}` on the same "
        f"server: {ref['tps']:.0f} tps, so one write transaction takes {ref_ms:.3f} ms. "
        "\"× ref\" below is a figure divided by that transaction time.",
        "",
        "History (generated with set-based SQL into a dedicated database, dropped afterwards):",
        "",
        "| table | rows |",
        "| --- | --- |",
    ]
    for table, count in report["counts"].items():
        if table != "database_bytes":
            lines.append(f"| {table} | {count:,} |")
    lines += [
        f"| (database size) | {report['counts']['database_bytes'] / 2**30:.1f} GiB |",
        "",
        f"{REPOSITORIES} repositories, {JOBS_PER_RUN} jobs per run over {HISTORY_DAYS} days, log "
        f"lines in the daily partitions of the last {LOG_DAYS} days; 200 queued runs, 20 live "
        "workers and 30 running jobs for the live figures.",
        "",
        f"### Hot endpoints ({REQUESTS} sequential requests each after {WARMUP_REQUESTS} "
        "warm-up ones, through a real `minijenkin api` process)",
        "",
        "| endpoint | target | p50 ms | p99 ms | p99 × ref | bytes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["endpoints"]:
        lines.append(f"| {row['name']} | < {row['target']:.0f} ms | {row['p50']:.1f} | "
                     f"{row['p99']:.1f} | {ratio(row['p99'], ref_ms)} | {row['bytes']:,} |")
    lines += [
        "",
        "### Refresh of the metrics views (second, warm refresh; CONCURRENTLY)",
        "",
        "| view | rows | seconds | × ref |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["refresh"]:
        lines.append(f"| {row['view']} | {row['rows']:,} | {row['seconds']:.2f} | "
                     f"{ratio(row['seconds'] * 1000, ref_ms)} |")
    total = sum(row["seconds"] for row in report["refresh"])
    lines.append(f"| all | | {total:.2f} | {ratio(total * 1000, ref_ms)} |")

    claims = report["claims"]
    lines += [
        "",
        f"### Job claim and finish ({CLAIM_ROUNDS} interleaved rounds of {CLAIMS_PER_ROUND} "
        "claims per database, one job per claim)",
        "",
        "| database | claim p50 ms | claim p99 ms | claim mean ms | claim mean × ref | "
        "finish p50 ms | finish mean ms | finish mean × ref |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in claims.items():
        lines.append(
            f"| {name} | {values['claim']['p50']:.2f} | {values['claim']['p99']:.2f} | "
            f"{values['claim']['mean']:.2f} | {ratio(values['claim']['mean'], ref_ms)} | "
            f"{values['finish']['p50']:.2f} | {values['finish']['mean']:.2f} | "
            f"{ratio(values['finish']['mean'], ref_ms)} |")
    claim_ratio = claims["history"]["claim"]["p50"] / claims["empty"]["claim"]["p50"]
    lines += [
        "",
        f"Claim p50 on the history / on the empty database: **{claim_ratio:.2f}** (target: at "
        "most 1.2).",
        "",
        "Cost of the one index migration 0008 adds (`pipeline_runs_created_idx`; jobs gets "
        f"none), on the history, {INDEX_ROUNDS} interleaved rounds:",
        "",
        "| variant | claim p50 ms | claim mean ms | claim mean × ref | finish p50 ms | "
        "finish mean ms | finish mean × ref |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in report["index"].items():
        lines.append(f"| {name} index | {values['claim']['p50']:.2f} | "
                     f"{values['claim']['mean']:.2f} | {ratio(values['claim']['mean'], ref_ms)} | "
                     f"{values['finish']['p50']:.2f} | {values['finish']['mean']:.2f} | "
                     f"{ratio(values['finish']['mean'], ref_ms)} |")
    lines += [
        "",
        "### EXPLAIN (ANALYZE, BUFFERS) of every query behind the hot endpoints",
        "",
        "A sequential scan of jobs, job_attempts, pipeline_runs or a job_logs partition would "
        "be listed in the last column.",
        "",
        "| query | execution ms | × ref | seq scans of big tables |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["explain"]:
        scans = ", ".join(row["big_seq_scans"]) or "none"
        execution = row["execution_ms"] or 0.0
        lines.append(f"| `{row['query']}` | {execution:.3f} | {ratio(execution, ref_ms)} | "
                     f"{scans} |")
    lines += ["", "<details><summary>Plans</summary>", ""]
    for row in report["explain"]:
        lines += [f"`{row['query']}`", "", "```", row["plan"], "```", ""]
    lines += ["</details>", "", SECTION_END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SECTION_START in text:
        before = text.split(SECTION_START, 1)[0]
        after = text.split(SECTION_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


# --- main ------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--admin-url", default=os.environ.get(
        "MINIJENKIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--log-lines", type=int, default=20_000_000)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true",
                        help="Keep the generated databases (for profiling) instead of dropping them.")
    args = parser.parse_args()

    suffix = secrets.token_hex(4)
    names = {"history": f"mj_bench_metrics_history_{suffix}", "empty": f"mj_bench_metrics_empty_{suffix}"}
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.metrics", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
    }
    try:
        with timed("pgbench reference"):
            report["reference"] = pgbench_reference(args.admin_url)
        log(f"reference: {report['reference']}")
        urls = {name: create_database(args.admin_url, database) for name, database in names.items()}
        for url in urls.values():
            migrate(url)
        with connect(urls["history"]) as conn:
            report["server"] = conn.execute("SELECT version() AS v").fetchone()["v"].split(" on ")[0]
            report["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()["shared_buffers"]
            report["work_mem"] = conn.execute("SHOW work_mem").fetchone()["work_mem"]
        report["counts"] = generate_history(urls["history"], jobs=args.jobs,
                                            log_lines=args.log_lines)
        log(f"history: {report['counts']}")
        add_repositories(urls["empty"])

        with timed("claim comparison"):
            report["claims"] = compare_claims(urls)
        with timed("index comparison"):
            report["index"] = compare_index(urls["history"])

        add_live_state(urls["history"])
        with timed("refresh"):
            report["refresh"] = refresh_times(urls["history"])
        with connect(urls["history"]) as conn:
            conn.execute("ANALYZE")
            now = conn.execute("SELECT now() AS now").fetchone()["now"]

        token = "mjt_bench_" + secrets.token_urlsafe(16)
        report["endpoints"] = []
        with tempfile.TemporaryDirectory(prefix="mj-bench-") as data_dir, \
                api_process(urls["history"], token, Path(data_dir)) as base:
            for name, path, params, target in endpoints(now):
                result = endpoint_latency(base, token, path, params)
                report["endpoints"].append({"name": f"`{path}` {name}", "target": target, **result})
                log(f"{name}: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")
        report["explain"] = explain_all(urls["history"], now)
    finally:
        if args.keep:
            log(f"kept databases: {', '.join(names.values())}")
        else:
            for database in names.values():
                drop_database(args.admin_url, database)

    write_section(args.output, render(report))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
