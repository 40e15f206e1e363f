"""Log benchmarks: ingest throughput, live latency, storage per line, search time.

Usage, from the repository root: .venv/bin/python -m bench.logs [--server URL]
[--search-lines N] [--write]. As a module, because running the file puts
bench/ first on sys.path, where bench/queue.py hides the standard library's
queue module that psycopg imports.

Runs against a PostgreSQL server (default: the machine's, at
postgresql://postgres@127.0.0.1:5432/postgres) in a scratch database that
is dropped at the end. Real `minijenkin api` and `minijenkin worker`
processes run the jobs. Because the machine is shared and noisy, every
figure is printed beside a reference measured in the same run:

- `pgbench -N` (simple-update, 2 clients, 10 s) on a scratch database:
  write transactions per second and their mean latency;
- a plain COPY of 200,000 short lines into a scratch table shaped like
  job_logs (same primary key, no staging table, no fencing).

With --write, the results replace the "Logs" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from httpx_sse import connect_sse
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port  # noqa: E402
from minijenkin.db.migrate import migrate  # noqa: E402
from minijenkin.logs.search import CANDIDATE_CHUNKS, SCAN_CHUNKS  # noqa: E402
from minijenkin.worker.shipper import DIRECT_COPY_MIN_BYTES  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SECTION_START = "<!-- bench/logs.py: start -->"
SECTION_END = "<!-- bench/logs.py: end -->"
CHATTY_LINES = 1_000_000
CHATTY_ROUNDS = 3
CONCURRENT_JOBS = 20
CONCURRENT_LINES = 100_000
LATENCY_RATE = 1000
LATENCY_SECONDS = 10
COPY_REFERENCE_LINES = 200_000
SEARCH_JOBS = 100
TIMEOUT_SECONDS = 900


def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


def create_database(server: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server, name)


def drop_database(server: str, url: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(conninfo_to_dict(url)["dbname"])))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


# -- references ------------------------------------------------------------

def pgbench_reference(server: str) -> dict[str, float]:
    url = create_database(server, "mj_bench_pgbench")
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", url], check=True, capture_output=True)
        result = subprocess.run(["pgbench", "-N", "-c", "2", "-j", "2", "-T", "10", url],
                                check=True, capture_output=True, text=True)
    finally:
        drop_database(server, url)
    tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))
    latency = float(re.search(r"latency average = ([0-9.]+) ms", result.stdout).group(1))
    return {"tps": tps, "latency_ms": latency}


def copy_reference(url: str) -> float:
    """Lines per second of a plain COPY into a table shaped like job_logs."""
    ts = dt.datetime.now(dt.UTC).isoformat()
    payload = "".join(f"1\t1\t{seq}\t2026-01-01\t1\t{ts}\tcompiling module {seq} of the build\n"
                      for seq in range(1, COPY_REFERENCE_LINES + 1)).encode()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE copy_reference (job_id bigint, attempt integer, seq integer, "
                      "day date, stream smallint, ts timestamptz, line text, "
                      "PRIMARY KEY (job_id, attempt, seq, day))")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(
                "COPY copy_reference (job_id, attempt, seq, day, stream, ts, line) FROM STDIN") as copy:
            copy.write(payload)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE copy_reference")
    return COPY_REFERENCE_LINES / elapsed


# -- a running installation -------------------------------------------------

class Installation:
    """A scratch database with a real API process, worker processes and a git repository."""

    def __init__(self, server: str, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.url = create_database(server, "mj_bench_logs")
        migrate(self.url)
        self.db = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        self.token = "mjt_bench_" + uuid.uuid4().hex
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.repo = workdir / "repo"
        self.repo_id = 0

    def env(self, **extra: str) -> dict[str, str]:
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("MINIJENKIN_", "PG")) and key != "DATABASE_URL"}
        return {**base, "MINIJENKIN_DATABASE_URL": self.url,
                "MINIJENKIN_DATA_DIR": str(self.workdir / "data"),
                "MINIJENKIN_ADMIN_TOKEN": self.token, "MINIJENKIN_LOG_LEVEL": "WARNING", **extra}

    def start_api(self) -> None:
        log = (self.workdir / "api.log").open("ab")
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "minijenkin", "api", "--port", str(self.port)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("the API did not start; see api.log")

    def start_worker(self, concurrency: int) -> subprocess.Popen[bytes]:
        log = (self.workdir / "worker.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "minijenkin", "worker", "--concurrency", str(concurrency)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop_worker(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        process.wait(timeout=60)
        self.processes.remove(process)

    def run_pipeline(self, pipeline: str) -> int:
        """Commit `pipeline`, create a run through the product's SQL, return the run id."""
        if not self.repo.exists():
            self.repo.mkdir()
            _git(self.repo, "init", "--quiet", "--initial-branch=main")
            self.repo_id = self.db.execute(
                "INSERT INTO repositories (name, url) VALUES ('bench/logs', %s) RETURNING id",
                (self.repo.as_uri(),)).fetchone()["id"]
        (self.repo / ".minijenkin.yml").write_text(pipeline)
        _git(self.repo, "add", ".minijenkin.yml")
        _git(self.repo, "commit", "--quiet", "--allow-empty", "-m", "bench")
        commit = _git(self.repo, "rev-parse", "HEAD")
        return self.db.execute(
            "SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'bench', 'bench', "
            "'{}') AS id", (self.repo_id, commit)).fetchone()["id"]

    def wait_run(self, run_id: int) -> str:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status = self.db.execute("SELECT status FROM pipeline_runs WHERE id = %s",
                                     (run_id,)).fetchone()["status"]
            if status not in ("pending", "queued", "running"):
                return status
            time.sleep(0.2)
        raise RuntimeError(f"run {run_id} did not finish within {TIMEOUT_SECONDS} s")

    def wait_job(self, run_id: int, key: str) -> int:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = self.db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = %s",
                                  (run_id, key)).fetchone()
            if row:
                return row["id"]
            time.sleep(0.05)
        raise RuntimeError(f"job {key} of run {run_id} was never planned")

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.db.close()
        drop_database(self.server, self.url)


def _git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                           *args], cwd=path, check=True, capture_output=True,
                          text=True).stdout.strip()


# -- measurements -----------------------------------------------------------

def ingest_rate(install: Installation, run_id: int) -> tuple[int, float]:
    """(step lines stored, lines/s from the first step line to the last job's end)."""
    row = install.db.execute("""
        SELECT count(*) AS lines,
               extract(epoch FROM max(a.finished_at) - min(l.ts)) AS seconds
        FROM jobs j
        JOIN job_attempts a ON a.job_id = j.id
        JOIN job_logs l ON l.job_id = j.id AND l.attempt = a.attempt AND l.stream = 1
        WHERE j.run_id = %s AND j.kind = 'script'
    """, (run_id,)).fetchone()
    return int(row["lines"]), int(row["lines"]) / float(row["seconds"])


def bench_ingest(install: Installation) -> dict[str, float]:
    worker = install.start_worker(CONCURRENT_JOBS)
    try:
        one_job_rounds = []
        for _ in range(CHATTY_ROUNDS):
            run_id = install.run_pipeline(
                f"jobs:\n  chatty:\n    steps:\n      - run: seq -f 'compiling module %g of the "
                f"build' 1 {CHATTY_LINES}\n")
            assert install.wait_run(run_id) == "succeeded"
            lines, rate = ingest_rate(install, run_id)
            assert lines == CHATTY_LINES, lines
            one_job_rounds.append(rate)
        one_job = statistics.median(one_job_rounds)

        jobs = "".join(
            f"  job{n}:\n    steps:\n      - run: seq -f 'job {n} line %g' 1 {CONCURRENT_LINES}\n"
            for n in range(CONCURRENT_JOBS))
        run_id = install.run_pipeline("jobs:\n" + jobs)
        assert install.wait_run(run_id) == "succeeded"
        lines, concurrent = ingest_rate(install, run_id)
        assert lines == CONCURRENT_JOBS * CONCURRENT_LINES, lines
    finally:
        install.stop_worker(worker)

    size = install.db.execute("""
        SELECT sum(pg_total_relation_size(c.oid)) AS bytes
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'job_logs'::regclass""").fetchone()["bytes"]
    count = install.db.execute("SELECT count(*) AS n, avg(octet_length(line)) AS text "
                               "FROM job_logs").fetchone()
    return {"one_job": one_job, "one_job_rounds": one_job_rounds, "concurrent": concurrent,
            "bytes_per_line": float(size) / count["n"], "text_bytes_per_line": float(count["text"])}


LATENCY_STEP = f"""\
python3 -c '
import time
time.sleep(3)
start = time.time()
for i in range({LATENCY_RATE * LATENCY_SECONDS}):
    target = start + i / {LATENCY_RATE}
    pause = target - time.time()
    if pause > 0:
        time.sleep(pause)
    print("t=%.6f n=%d" % (time.time(), i), flush=True)
print("searchable-token-%s" % "SEARCHTOKEN", flush=True)
print("t=%.6f end" % time.time(), flush=True)
time.sleep(1)
'
"""


def bench_latency(install: Installation) -> dict[str, float]:
    token = "tok" + uuid.uuid4().hex[:12]
    step = LATENCY_STEP.replace("SEARCHTOKEN", token)
    pipeline = "jobs:\n  paced:\n    steps:\n      - run: |\n" + "".join(
        f"          {line}\n" for line in step.splitlines())
    worker = install.start_worker(1)
    latencies: list[float] = []
    token_printed: list[float] = []
    try:
        run_id = install.run_pipeline(pipeline)
        job_id = install.wait_job(run_id, "paced")
        headers = {"Authorization": f"Bearer {install.token}", "Accept": "text/event-stream"}
        with httpx.Client(base_url=install.api_url, timeout=httpx.Timeout(30, read=None)) as client, \
                connect_sse(client, "GET", f"/api/jobs/{job_id}/logs", headers=headers) as source:
            for event in source.iter_sse():
                received = time.time()
                if event.event == "end":
                    break
                if event.event != "line":
                    continue  # keep-alive ping
                text = json.loads(event.data)["text"]
                match = re.match(r"t=([0-9.]+) ", text)
                if match:
                    latencies.append(received - float(match.group(1)))
                elif text.startswith("searchable-token-"):
                    token_printed.append(received)
        searchable = _wait_searchable(install, token, token_printed[0])
        install.wait_run(run_id)
    finally:
        install.stop_worker(worker)
    latencies_ms = [value * 1000 for value in latencies]
    return {"lines": len(latencies_ms), "p50": percentile(latencies_ms, 0.50),
            "p95": percentile(latencies_ms, 0.95), "p99": percentile(latencies_ms, 0.99),
            "max": max(latencies_ms), "searchable_seconds": searchable}


def _wait_searchable(install: Installation, token: str, since: float) -> float:
    headers = {"Authorization": f"Bearer {install.token}"}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = httpx.get(f"{install.api_url}/api/search", params={"q": token}, headers=headers,
                             timeout=30)
        if response.status_code == 200 and response.json()["hits"]:
            return time.time() - since
        time.sleep(0.1)
    raise RuntimeError("the token line never became searchable")


WORDS = ("build compile link test deploy fetch checkout cache restore upload artifact docker "
         "image layer pull push npm install resolve package module warning error failed passed "
         "skipped timeout retry connection database migrate schema index query worker runner "
         "step job pipeline stage matrix python node go rust java gradle maven webpack bundle "
         "lint format coverage report junit assert expected actual diff snapshot").split()


def bench_search(install: Installation, total_lines: int) -> dict[str, float]:
    """Store `total_lines` synthetic lines in SEARCH_JOBS jobs, index them, time searches."""
    per_job = total_lines // SEARCH_JOBS
    db = install.db
    run_id = db.execute("SELECT mj_run_create_v1(%s, 'push', 'refs/heads/main', %s, NULL, 'search', "
                        "'bench', '{}') AS id", (install.repo_id, "b" * 40)).fetchone()["id"]
    job_ids = [db.execute(
        "INSERT INTO jobs (run_id, repo_id, key, name, status, attempt, started_at, finished_at) "
        "VALUES (%s, %s, %s, %s, 'succeeded', 1, now(), now()) RETURNING id",
        (run_id, install.repo_id, f"search{n}", f"search{n}")).fetchone()["id"]
        for n in range(SEARCH_JOBS)]
    day = db.execute("SELECT (now() AT TIME ZONE 'UTC')::date AS day").fetchone()["day"]
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (day, day))
    words = "{" + ",".join(WORDS) + "}"
    started = time.perf_counter()
    for job_id in job_ids:
        # Each line: four vocabulary words and a number; one line in 100,000
        # carries the rare word "zebrafish".
        db.execute("""
            INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line)
            SELECT %(job)s, 1, g, %(day)s, 1, now(),
                   w[1 + (g * 7) %% cardinality(w)] || ' ' || w[1 + (g * 13) %% cardinality(w)] || ' '
                   || w[1 + (g * 31 + %(job)s) %% cardinality(w)] || ' ' || g::text || ' '
                   || CASE WHEN (g + %(job)s) %% 100000 = 0 THEN 'zebrafish ' ELSE '' END
                   || w[1 + (g * 17 + %(job)s * 3) %% cardinality(w)]
            FROM generate_series(1, %(lines)s) AS g, (SELECT %(words)s::text[] AS w) v
        """, {"job": job_id, "day": day, "lines": per_job, "words": words})
        db.execute("INSERT INTO job_log_index_queue (job_id, attempt, day, first_seq, last_seq) "
                   "VALUES (%s, 1, %s, 1, %s)", (job_id, day, per_job))
    insert_seconds = time.perf_counter() - started

    # The API's indexer loop takes part too. Indexing is done when the queue
    # is empty and this call found nothing, because SKIP LOCKED hides the
    # batches the API is still indexing.
    started = time.perf_counter()
    while True:
        indexed = db.execute("SELECT attempts FROM mj_logs_index_v1(50000)").fetchone()["attempts"]
        left = db.execute("SELECT count(*) AS n FROM job_log_index_queue").fetchone()["n"]
        if not indexed and not left:
            break
        if not indexed:
            time.sleep(0.1)
    index_seconds = time.perf_counter() - started
    db.execute("VACUUM ANALYZE job_log_search")
    stored = db.execute("SELECT count(*) AS n FROM job_logs").fetchone()["n"]

    headers = {"Authorization": f"Bearer {install.token}"}
    # Line 1 of every job starts with WORDS[7] WORDS[13] (see the INSERT).
    queries = {"rare word": {"q": "zebrafish"},
               "common word": {"q": "timeout"},
               "two words": {"q": f"{WORDS[13]} {WORDS[7]}"},
               "phrase": {"q": f'"{WORDS[7]} {WORDS[13]}"'},
               "common word, branch filter": {"q": "error", "branch": "main"}}
    timings: dict[str, float] = {}
    with httpx.Client(base_url=install.api_url, headers=headers, timeout=60) as client:
        for label, params in queries.items():
            samples = []
            for _ in range(7):
                began = time.perf_counter()
                response = client.get("/api/search", params=params)
                samples.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
                assert response.json()["hits"], label
            timings[label] = statistics.median(samples)
    search_size = db.execute("""
        SELECT sum(pg_total_relation_size(c.oid)) AS bytes
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'job_log_search'::regclass""").fetchone()["bytes"]
    return {"lines": stored, "insert_seconds": insert_seconds, "index_seconds": index_seconds,
            "index_lines_per_second": stored / index_seconds,
            "search_bytes_per_line": float(search_size) / stored, **{
                f"query:{label}": value for label, value in timings.items()}}


# -- report -----------------------------------------------------------------

def report(results: dict, command: str) -> str:
    ref = results["pgbench"]
    copy = results["copy_lines_per_second"]
    ingest = results["ingest"]
    latency = results["latency"]
    search = results["search"]
    searches = [value for key, value in search.items() if key.startswith("query:")]
    lines = [
        "## Logs",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {results['server_version']}  ",
        f"Date: {results['date']}; load average (1 min) {results['load'][0]:.1f} before, "
        f"{results['load'][1]:.1f} after (the machine is shared)",
        "",
        "References measured in the same run: `pgbench -N -c 2 -T 10` "
        f"{ref['tps']:.0f} tps, mean latency {ref['latency_ms']:.2f} ms; plain COPY of "
        f"{COPY_REFERENCE_LINES:,} short lines into a table with job_logs' primary key "
        f"{copy:,.0f} lines/s.",
        "",
        "| figure | value | target | ratio to reference |",
        "| --- | --- | --- | --- |",
        f"| ingest, one chatty job ({CHATTY_LINES:,} lines, median of {CHATTY_ROUNDS} rounds: "
        f"{', '.join(f'{rate:,.0f}' for rate in ingest['one_job_rounds'])}) | "
        f"{ingest['one_job']:,.0f} lines/s | "
        f"≥ 150,000 lines/s | {ingest['one_job'] / copy:.2f} × plain COPY; "
        f"{ingest['one_job'] / ref['tps']:.1f} lines per pgbench transaction |",
        f"| ingest, {CONCURRENT_JOBS} concurrent jobs ({CONCURRENT_LINES:,} lines each, one worker "
        f"process) | {ingest['concurrent']:,.0f} lines/s | | {ingest['concurrent'] / copy:.2f} × "
        "plain COPY |",
        f"| live latency print → SSE client at {LATENCY_RATE:,} lines/s ({latency['lines']:,} lines) "
        f"p50 / p95 / p99 / max | {latency['p50']:.1f} / {latency['p95']:.1f} / "
        f"{latency['p99']:.1f} / {latency['max']:.1f} ms | p99 < 50 ms | p99 = "
        f"{latency['p99'] / ref['latency_ms']:.1f} × pgbench mean latency |",
        f"| bytes stored per line (job_logs heap + primary key; text averages "
        f"{ingest['text_bytes_per_line']:.0f} bytes) | {ingest['bytes_per_line']:.0f} B | | "
        f"{ingest['bytes_per_line'] / ingest['text_bytes_per_line']:.1f} × the text |",
        f"| search index bytes per line (job_log_search) | {search['search_bytes_per_line']:.0f} B | | |",
        f"| line searchable after being printed (indexer every 2 s) | "
        f"{latency['searchable_seconds']:.1f} s | < 60 s | |",
        f"| indexing {search['lines']:,} stored lines | {search['index_lines_per_second']:,.0f} "
        f"lines/s | | {search['index_lines_per_second'] / copy:.2f} × plain COPY |",
    ]
    for key, value in search.items():
        if key.startswith("query:"):
            lines.append(f"| search over {search['lines']:,} lines, {key[6:]} (median of 7, "
                         f"through the API) | {value:.0f} ms | < 200 ms | "
                         f"{value / ref['latency_ms']:.0f} × pgbench mean latency |")
    lines += [
        "",
        "Ingest counts from the first line a step printed to the end of the last job, so it "
        "includes the worker reading pipes, splitting lines and storing them: batches of "
        f"{DIRECT_COPY_MIN_BYTES // 1024} KiB or more go by COPY straight into job_logs after "
        "a lease check, smaller ones by COPY into the staging table and the fenced insert. "
        "Latency compares the step's own clock with the SSE client's on the same machine. The "
        "searchable delay is measured right after the ingest runs, so the indexer first works "
        "through their backlog of lines. A search checks the exact query (a phrase) on the "
        f"newest {SCAN_CHUNKS:,} chunks of 64 lines that contain every word, found with the "
        f"GIN index alone, and ranks the newest {CANDIDATE_CHUNKS:,} that match.",
        "",
        "Targets: " + "; ".join(
            f"{name}: {value}, {'met' if met else 'missed'}" for name, value, met in (
                ("one chatty job at least 150,000 lines/s", f"{ingest['one_job']:,.0f}",
                 ingest["one_job"] >= 150_000),
                ("live p99 under 50 ms", f"{latency['p99']:.1f} ms", latency["p99"] < 50),
                ("searchable within 60 s", f"{latency['searchable_seconds']:.1f} s",
                 latency["searchable_seconds"] < 60),
                ("every search under 200 ms", f"slowest {max(searches):.0f} ms",
                 max(searches) < 200),
            )) + ".",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace the text between this script's markers in BENCHMARKS.md, or append it."""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    section = f"{SECTION_START}\n{text}{SECTION_END}\n"
    if SECTION_START in current:
        before = current.split(SECTION_START, 1)[0]
        after = current.split(SECTION_END, 1)[1].lstrip("\n")
        current = before + section + ("\n" + after if after else "")
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("MINIJENKIN_BENCH_URL", DEFAULT_SERVER))
    parser.add_argument("--search-lines", type=int, default=10_000_000)
    parser.add_argument("--write", action="store_true", help="Update BENCHMARKS.md.")
    args = parser.parse_args()
    if shutil.which("pgbench") is None:
        sys.exit("pgbench is required for the reference figure")

    results: dict = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}
    load_before = os.getloadavg()[0]
    with psycopg.connect(args.server) as conn:
        results["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    print("pgbench reference ...", flush=True)
    results["pgbench"] = pgbench_reference(args.server)
    workdir = Path(tempfile.mkdtemp(prefix="mj-bench-logs-"))
    install = Installation(args.server, workdir)
    try:
        results["copy_lines_per_second"] = copy_reference(install.url)
        install.start_api()
        print("ingest ...", flush=True)
        results["ingest"] = bench_ingest(install)
        print("latency ...", flush=True)
        results["latency"] = bench_latency(install)
        print(f"search over {args.search_lines:,} lines ...", flush=True)
        results["search"] = bench_search(install, args.search_lines)
        results["load"] = (load_before, os.getloadavg()[0])
    finally:
        install.close()
        shutil.rmtree(workdir, ignore_errors=True)

    command = "python -m bench.logs" + ("" if args.search_lines == 10_000_000 else
                                        f" --search-lines {args.search_lines}") + " --write"
    text = report(results, command)
    print(json.dumps(results, indent=2, default=str))
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
