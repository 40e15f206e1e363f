"""Job logs end to end: real workers print, the API stores, streams and pages them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from httpx_sse import connect_sse

from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.logs import read_events, stored_lines
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

SECRET = "live-logs-secret"
REPO = "acme/logs"


def start_run(client: httpx.Client, repo: GitRepo, pipeline: str) -> int:
    commit = repo.commit({".minijenkin.yml": pipeline}, "Pipeline")
    response = client.post("/api/repos", json={"name": REPO, "url": repo.url,
                                                "webhook_secret": SECRET})
    assert response.status_code == 201, response.text
    body = encode(push_payload(full_name=REPO, clone_url=repo.url, after=commit))
    response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))
    assert response.status_code == 201, response.text
    return int(response.json()["run_id"])


def wait_for_job(client: httpx.Client, run_id: int, key: str, *, status: str | None = None,
                 timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        for job in client.get(f"/api/runs/{run_id}").json()["jobs"]:
            if job["key"] == key and (status is None or job["status"] == status):
                return job
        return None

    return wait_for(check, timeout=timeout, interval=0.1, message=f"job {key} ({status or 'any'})")


def wait_finished(client: httpx.Client, run_id: int, timeout: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] not in ("pending", "queued", "running") else None

    return wait_for(finished, timeout=timeout, interval=0.2, message=f"run {run_id} to finish")


def step_lines(db: psycopg.Connection, job_id: int, attempt: int = 1) -> list[tuple[int, str]]:
    """(stream, text) of the lines the steps printed, without Mini-Jenkin's own lines."""
    rows = db.execute("SELECT stream, line FROM job_logs WHERE job_id = %s AND attempt = %s "
                      "AND stream <> 3 ORDER BY seq", (job_id, attempt)).fetchall()
    return [(row["stream"], row["line"]) for row in rows]


def test_log_keeps_order_of_200000_lines(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = "jobs:\n  chatty:\n    steps:\n      - run: seq 1 200000\n"
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run(client, git_repo, pipeline))
        job = [job for job in run["jobs"] if job["key"] == "chatty"][0]

    assert run["status"] == "succeeded", worker.output()
    lines = stored_lines(db, job["id"])
    assert [seq for seq, _ in lines] == list(range(1, len(lines) + 1))
    printed = step_lines(db, job["id"])
    assert len(printed) == 200_000
    assert printed == [(1, str(n)) for n in range(1, 200_001)]


def test_killed_log_connection_loses_no_line(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # 40 bursts of 2,500 lines, 0.1 s apart: about 4 s of output to cut into.
    script = 'for b in $(seq 1 40); do seq -f "b$b-%g" 1 2500; sleep 0.1; done'
    pipeline = f"jobs:\n  bursts:\n    steps:\n      - run: '{script}'\n"
    worker = start_worker()
    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        job = wait_for_job(client, run_id, "bursts", status="running")

        killed = 0
        for _ in range(5):
            # Each kill waits for the shipper to be connected (again) first.
            wait_for(lambda: db.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'minijenkin-worker-logs' "
                "AND datname = current_database()").fetchone(), timeout=30,
                message="the log shipper's connection")
            killed += db.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                "WHERE application_name = 'minijenkin-worker-logs' AND datname = current_database()"
            ).fetchone()["n"]
            db.execute("SELECT pg_sleep(0.4)")
        run = wait_finished(client, run_id)

    assert killed >= 3
    assert run["status"] == "succeeded", worker.output()
    assert "log batch not sent; retrying" in worker.output()
    expected = [(1, f"b{b}-{n}") for b in range(1, 41) for n in range(1, 2501)]
    assert step_lines(db, job["id"]) == expected
    seqs = [seq for seq, _ in stored_lines(db, job["id"])]
    assert seqs == list(range(1, len(seqs) + 1))


def test_sse_resumes_from_last_event_id(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    script = "for i in 1 2 3 4 5 6; do echo \"tick $i\"; sleep 0.3; done"
    pipeline = f"jobs:\n  ticker:\n    steps:\n      - run: '{script}'\n"
    start_worker()
    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        job = wait_for_job(client, run_id, "ticker", status="running")

        first = read_events(client, job["id"], stop_after=3)
        resumed = read_events(client, job["id"], headers={"Last-Event-ID": first[-1][1] or ""})
        page = client.get(f"/api/jobs/{job['id']}/logs").json()

    assert [kind for kind, _, _ in first] == ["line", "line", "line"]
    assert [event_id for _, event_id, _ in first] == ["1", "2", "3"]
    lines = first + resumed[:-1]
    assert [int(event_id or 0) for _, event_id, _ in lines] == list(range(1, len(lines) + 1))
    assert [data["text"] for _, _, data in lines] == [line["text"] for line in page["lines"]]
    assert [data["text"] for _, _, data in lines if data["stream"] == "stdout"] == [
        f"tick {i}" for i in range(1, 7)]
    end_kind, end_id, end = resumed[-1]
    assert end_kind == "end"
    # The end event sets no id of its own; SSE keeps the last one seen.
    assert end_id == str(len(lines))
    assert end == {"job_id": job["id"], "attempt": 1, "status": "succeeded", "exit_code": 0,
                   "reason": None, "last_seq": len(lines)}


def test_viewers_share_one_listen_connection(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    script = "for i in $(seq 1 10); do echo \"step $i\"; sleep 0.2; done"
    pipeline = f"jobs:\n  slow:\n    steps:\n      - run: '{script}'\n"
    start_worker()
    results: list[list[tuple[str, str | None, dict[str, Any]]]] = []

    def view(job_id: int) -> None:
        with api_server.client() as viewer:
            results.append(read_events(viewer, job_id))

    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        job = wait_for_job(client, run_id, "slow", status="running")
        threads = [threading.Thread(target=view, args=(job["id"],)) for _ in range(5)]
        for thread in threads:
            thread.start()
        listeners = wait_for(lambda: db.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = "
            "'minijenkin-api-listen' AND datname = current_database()").fetchone()["n"],
            timeout=10, message="the API's LISTEN connection")
        for thread in threads:
            thread.join(timeout=60)

    assert listeners == 1
    assert len(results) == 5
    for events in results:
        assert events[-1][0] == "end"
        assert [data["text"] for kind, _, data in events if data.get("stream") == "stdout"] == [
            f"step {i}" for i in range(1, 11)]


def test_stream_of_unknown_job_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/api/jobs/999999/logs", headers={"Accept": "text/event-stream"})

    assert response.status_code == 404
    assert response.json()["detail"] == "job 999999 does not exist"


def test_invalid_last_event_id_is_422(
    api_server: ApiServer, db: psycopg.Connection,
) -> None:
    from tests.support import factories

    repo_id = factories.create_repo(db)
    factories.create_run(db, repo_id)
    job_id = db.execute("SELECT id FROM jobs").fetchone()["id"]
    with api_server.client() as client:
        response = client.get(f"/api/jobs/{job_id}/logs", headers={
            "Accept": "text/event-stream", "Last-Event-ID": "abc"})

    assert response.status_code == 422
    assert response.json()["detail"] == (
        "invalid Last-Event-ID 'abc': expected the seq number of a log line")
    assert response.json()["field"] == "Last-Event-ID"


def test_hostile_output_is_stored_visibly(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    script = "\n".join([
        r"printf 'nul\000byte\n'",
        r"printf 'bad \377\376 utf8\n'",
        r"printf '\033[31mred\033[0m <script>alert(1)</script>\n'",
        r"printf '10%%\r50%%\r100%%\n'",
        "head -c 102400 /dev/zero | tr '\\0' x; echo",
        "echo done >&2",
    ])
    pipeline = "jobs:\n  hostile:\n    steps:\n      - run: |\n" + "".join(
        f"          {line}\n" for line in script.splitlines())
    worker = start_worker()
    with api_server.client() as client:
        run = wait_finished(client, start_run(client, git_repo, pipeline))
        job = [job for job in run["jobs"] if job["key"] == "hostile"][0]

    assert run["status"] == "succeeded", worker.output()
    marker = " \u21b5[line continues]"
    assert step_lines(db, job["id"]) == [
        (1, "nul\u2400byte"),
        (1, "bad \ufffd\ufffd utf8"),
        (1, "\x1b[31mred\x1b[0m <script>alert(1)</script>"),
        (1, "100%"),
        (1, "x" * 65536 + marker),
        (1, "x" * (102400 - 65536)),
        (2, "done"),
    ]


def test_log_cap_truncates_while_job_runs(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = ("jobs:\n  noisy:\n    steps:\n      - run: seq 1 5000\n"
                "      - run: echo second step ran\n")
    worker = start_worker(MINIJENKIN_LOG_MAX_BYTES_PER_JOB="4096")
    with api_server.client() as client:
        run = wait_finished(client, start_run(client, git_repo, pipeline))
        job = [job for job in run["jobs"] if job["key"] == "noisy"][0]

    assert run["status"] == "succeeded", worker.output()
    lines = [text for _, text in stored_lines(db, job["id"])]
    notice = ("log truncated: this job's output exceeded 4096 bytes; the job keeps running, "
              "further output is discarded")
    assert notice in lines
    assert lines.count(notice) == 1
    assert "second step ran" not in lines
    assert lines[-1] == "Job succeeded"
    before_notice = lines[:lines.index(notice)]
    assert sum(len(text) + 1 for text in before_notice) <= 4096
    printed = [text for text in before_notice if text.isdigit()]
    assert printed == [str(n) for n in range(1, len(printed) + 1)]
    assert len(printed) > 500


def test_log_cap_counts_utf8_bytes(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Each line has 8 characters and 33 bytes in UTF-8 (4 bytes per key, and the newline).
    line = "\U0001f511" * 8
    pipeline = ("jobs:\n  keys:\n    steps:\n"
                f"      - run: for i in $(seq 1 3000); do echo '{line}'; done\n")
    worker = start_worker(MINIJENKIN_LOG_MAX_BYTES_PER_JOB="4096")
    with api_server.client() as client:
        run = wait_finished(client, start_run(client, git_repo, pipeline))
        job = [job for job in run["jobs"] if job["key"] == "keys"][0]

    assert run["status"] == "succeeded", worker.output()
    lines = [text for _, text in stored_lines(db, job["id"])]
    notice = ("log truncated: this job's output exceeded 4096 bytes; the job keeps running, "
              "further output is discarded")
    assert lines.count(notice) == 1
    before_notice = lines[:lines.index(notice)]
    keys = [text for text in before_notice if text == line]
    stored_bytes = sum(len(text.encode("utf-8")) + 1 for text in before_notice)
    assert stored_bytes <= 4096
    assert stored_bytes > 4096 - 33
    assert len(keys) == len(before_notice) - 2


def test_sse_delivers_lines_while_job_runs(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    # The step waits up to 60 s for the gate, which the test opens only once
    # "first" has arrived: a stream that delivered lines only when the job
    # ended would miss the 30 s deadline below.
    script = (f"echo first; for i in $(seq 1 600); do [ -e {gate} ] && break; sleep 0.1; done; "
              "echo second")
    pipeline = f"jobs:\n  gated:\n    steps:\n      - run: '{script}'\n"
    start_worker()
    texts: list[str] = []

    def view(job_id: int) -> None:
        with api_server.client() as viewer, connect_sse(
                viewer, "GET", f"/api/jobs/{job_id}/logs",
                headers={"Accept": "text/event-stream"}) as source:
            for event in source.iter_sse():
                if event.event == "end":
                    return
                if event.event == "line":
                    texts.append(json.loads(event.data)["text"])

    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        job = wait_for_job(client, run_id, "gated")
        thread = threading.Thread(target=view, args=(job["id"],))
        thread.start()
        wait_for(lambda: "first" in texts, timeout=30, message="the line 'first' while the step runs")
        gate.touch()
        thread.join(timeout=60)
        run = wait_finished(client, run_id)

    assert run["status"] == "succeeded"
    assert [text for text in texts if text in ("first", "second")] == ["first", "second"]


def test_worker_memory_stays_bounded(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # 200 MB in one line without a newline, then 200,000 short lines.
    script = "head -c 200000000 /dev/zero | tr '\\\\0' x; echo; seq 1 200000"
    pipeline = f"jobs:\n  flood:\n    steps:\n      - run: \"{script}\"\n"
    # The default cap of 100 MiB: half the output reaches the shipper, which
    # must hold back the pipe reader while the database catches up.
    worker = start_worker()
    process = psutil.Process(worker.pid)
    peak = 0
    with api_server.client() as client:
        run_id = start_run(client, git_repo, pipeline)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            if client.get(f"/api/runs/{run_id}").json()["status"] not in (
                    "pending", "queued", "running"):
                break
            time.sleep(0.05)
        run = wait_finished(client, run_id)
        job = [job for job in run["jobs"] if job["key"] == "flood"][0]

    assert run["status"] == "succeeded", worker.output()
    # The buffers are bounded (64 KiB line pieces, 32 MiB of unsent lines);
    # 200 MB of output must not show up in the worker's memory.
    assert peak < 150 * 1024 * 1024, peak
    lines = [text for _, text in stored_lines(db, job["id"])]
    assert lines[1].startswith("▶ Run head -c 200000000")
    assert lines[2] == "x" * 65536 + " \u21b5[line continues]"
    assert lines[-2] == ("log truncated: this job's output exceeded 104857600 bytes; the job "
                         "keeps running, further output is discarded")
    assert lines[-1] == "Job succeeded"
