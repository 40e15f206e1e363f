"""Faults the queue must survive: a silently broken LISTEN, a database restart, kill -9 chaos."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from minijenkin.config import Settings, load_settings
from minijenkin.db.embedded import EmbeddedPostgres
from minijenkin.db.migrate import migrate
from tests.support import queue
from tests.support.api import ApiServer
from tests.support.factories import create_repo, create_run
from tests.support.gitrepo import GitRepo
from tests.support.postgres import server_directory
from tests.support.proxy import PgProxy
from tests.support.queue import add_repo, plan_run, run_finished, script_job
from tests.support.waiting import wait_for
from tests.support.workers import FAST_WORKER_ENV, WorkerProcess

Start = Callable[..., WorkerProcess]

_CLAIM_WAKE = re.compile(r"action=job_claim .*?job_id=(\d+) .*?wake=(\w+)")


def _claim_wake(worker: WorkerProcess, job_id: int) -> str | None:
    """What woke the claim that took `job_id` (from the worker's log), once it was claimed."""
    for match in _CLAIM_WAKE.finditer(worker.output()):
        if int(match.group(1)) == job_id:
            return match.group(2)
    return None


def _wait_claims(worker: WorkerProcess, wake: str, count: int) -> None:
    """Wait until the worker's log shows `count` claims woken by `wake` (DEBUG level)."""
    wait_for(lambda: len(re.findall(rf"action=claim .*?wake={wake} ", worker.output())) >= count,
             timeout=30, message=f"{count} claims woken by {wake}")


def _plan_job(db: psycopg.Connection, run_id: int) -> int:
    return db.execute("SELECT id FROM jobs WHERE run_id = %s AND kind = 'plan'",
                      (run_id,)).fetchone()["id"]


@pytest.fixture
def proxy(database_url: str) -> Iterator[PgProxy]:
    server = PgProxy(database_url).start()
    yield server
    server.stop()


def test_silently_broken_listen_falls_back_to_polling(
    db: psycopg.Connection, proxy: PgProxy, start_worker: Start,
) -> None:
    # Polling every 2 s; a LISTEN connection that delivers nothing is only
    # found out after 5 s without a notification plus a 5 s query timeout.
    worker = start_worker(MINIJENKIN_DATABASE_URL=proxy.url, MINIJENKIN_WORKER_POLL_SECONDS="2",
                          MINIJENKIN_WORKER_LISTEN_CHECK_SECONDS="5", MINIJENKIN_LOG_LEVEL="DEBUG")
    wait_for(lambda: worker.output().count("action=listen_start") == 1, timeout=30,
             message="the worker to listen")
    repo_id = create_repo(db)

    before = _plan_job(db, create_run(db, repo_id))
    assert wait_for(lambda: _claim_wake(worker, before), timeout=30,
                    message="the first job to be claimed") == "notify"
    # The plan fails at once (its repository URL leads nowhere); the claim
    # its free slot triggers must be over before the next job is queued.
    _wait_claims(worker, "slot_free", 1)

    assert proxy.freeze(b"minijenkin-worker-listen") == 1
    during = _plan_job(db, create_run(db, repo_id))
    assert wait_for(lambda: _claim_wake(worker, during), timeout=30,
                    message="the job queued while LISTEN is broken") == "poll"

    wait_for(lambda: worker.output().count("action=listen_start") == 2, timeout=60,
             message="the LISTEN connection to be replaced")
    _wait_claims(worker, "catch_up", 2)
    after = _plan_job(db, create_run(db, repo_id))
    assert wait_for(lambda: _claim_wake(worker, after), timeout=30,
                    message="the job queued after the reconnect") == "notify"
    assert "action=listen_reconnect" in worker.output()


def _attempt_rows(url: str) -> list[dict[str, object]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT j.id, j.status AS job_status, a.attempt, a.status, a.worker_id, a.started_at, "
            "a.finished_at FROM jobs j LEFT JOIN job_attempts a ON a.job_id = j.id "
            "WHERE j.kind = 'script' ORDER BY j.id, a.attempt").fetchall()


def _reconnect_sessions(db: psycopg.Connection) -> None:
    """End every other session of the test database, as a failover does."""
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_read_only_window_runs_job_once(
    settings: Settings, db: psycopg.Connection, database_url: str, git_repo: GitRepo,
    start_worker: Start, tmp_path: Path,
) -> None:
    """A database read-only for a moment (a failover, a maintenance switch) is retried like an outage.

    Read-only errors are not connection errors (SQLSTATE 25006). A heartbeat
    loop that stopped on one let the reaper hand the running job to another
    worker while the first one still ran it. The lease is 8 s, so that the
    window and the reconnects stay within it on a busy machine, and the job
    runs 20 s, so that a heartbeat that never resumes is reaped before it ends.
    """
    lease = {"MINIJENKIN_WORKER_LEASE_SECONDS": "8", "MINIJENKIN_WORKER_CONCURRENCY": "1"}
    starts = tmp_path / "starts"
    repo_id, commit = add_repo(db, git_repo)
    run_id = plan_run(db, repo_id, commit, [script_job(
        "long", f"echo $$ >> {starts}; for i in $(seq 1 40); do echo tick $i; sleep 0.5; done")])
    reaper = ApiServer(settings.model_copy(update={"worker_lease_seconds": 8.0}), database_url).start()
    try:
        runner = start_worker(**lease)
        idle = start_worker(**lease)
        wait_for(starts.exists, timeout=60, interval=0.1, message="the step to start")
        wait_for(lambda: "action=listen_start" in idle.output(), timeout=30,
                 message="the second worker to listen")

        database = db.execute("SELECT current_database() AS name").fetchone()["name"]
        db.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        _reconnect_sessions(db)
        time.sleep(1.5)
        db.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        _reconnect_sessions(db)
        status = wait_for(lambda: run_finished(db, run_id), timeout=60, interval=0.2,
                          message="the run to end")

        job = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'long'", (run_id,)).fetchone()
        tried = db.execute("SELECT status FROM job_attempts WHERE job_id = %s ORDER BY attempt",
                           (job["id"],)).fetchall()
        ticks = db.execute("SELECT count(*) AS n FROM job_logs WHERE job_id = %s AND line LIKE 'tick %%'",
                           (job["id"],)).fetchone()["n"]
        assert status == "succeeded", runner.output()
        assert [row["status"] for row in tried] == ["succeeded"]
        assert len(starts.read_text().split()) == 1
        assert ticks == 40
        assert runner.process.poll() is None
        assert idle.process.poll() is None, idle.output()
    finally:
        reaper.stop()


def test_postgres_restart_mid_run(tmp_path: Path, git_repo: GitRepo) -> None:
    # This test owns its server: restarting a shared one would break other tests.
    with server_directory("restart-pg") as directory:
        _restart_mid_run(EmbeddedPostgres(directory), tmp_path, git_repo)


def _restart_mid_run(server: EmbeddedPostgres, tmp_path: Path, git_repo: GitRepo) -> None:
    url = server.start()
    migrate(url)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    settings = load_settings(
        data_dir=data_dir,
        worker_heartbeat_seconds=float(FAST_WORKER_ENV["MINIJENKIN_WORKER_HEARTBEAT_SECONDS"]),
        worker_lease_seconds=float(FAST_WORKER_ENV["MINIJENKIN_WORKER_LEASE_SECONDS"]),
        maintenance_interval_seconds=0.5, retry_backoff_seconds=0.2, retry_backoff_max_seconds=1.0)
    api = ApiServer(settings, url).start()
    workers: list[WorkerProcess] = []
    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as db:
            run_id = plan_run(db, *add_repo(db, git_repo), [
                script_job(f"job{index:02d}", "sleep 0.3", max_attempts=10) for index in range(24)])
        workers = [WorkerProcess(url, data_dir, tmp_path / f"worker-{index}.log",
                                 MINIJENKIN_WORKER_CONCURRENCY="2").start() for index in range(2)]
        wait_for(lambda: sum(row["job_status"] == "succeeded" for row in _attempt_rows(url)) >= 4,
                 timeout=60, message="some jobs to finish before the restart")

        server.stop()
        server.start()

        with api.client() as client:
            def finished_run() -> dict[str, object] | None:
                try:
                    response = client.get(f"/api/runs/{run_id}")
                except httpx.TransportError:
                    return None
                if response.status_code != 200:
                    return None
                run = response.json()
                return run if run["status"] not in ("pending", "queued", "running") else None

            run = wait_for(finished_run, timeout=90, interval=0.2, message="the run to end")
    finally:
        for worker in workers:
            worker.stop(timeout=15)
        api.stop()
        server.stop()

    assert run["status"] == "succeeded", [worker.output()[-3000:] for worker in workers]
    assert {job["status"] for job in run["jobs"]} == {"succeeded"}
    assert len(run["jobs"]) == 25
    outputs = "".join(worker.output() for worker in workers)
    assert "action=listen_reconnect" in outputs


def _check_no_overlap(rows: list[dict[str, object]]) -> None:
    by_job: dict[object, list[dict[str, object]]] = {}
    for row in rows:
        by_job.setdefault(row["id"], []).append(row)
    for job_id, attempts in by_job.items():
        assert [row["attempt"] for row in attempts] == list(range(1, len(attempts) + 1)), job_id
        assert [row["status"] for row in attempts][-1] == "succeeded", (job_id, attempts)
        assert {row["status"] for row in attempts[:-1]} <= {"lost", "handed_back"}, (job_id, attempts)
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            assert earlier["finished_at"] is not None, (job_id, attempts)
            assert earlier["finished_at"] <= later["started_at"], (job_id, attempts)


@pytest.mark.slow
def test_chaos_kill9_loses_no_job(
    api_server: ApiServer, db: psycopg.Connection, database_url: str, git_repo: GitRepo,
    start_worker: Start,
) -> None:
    deadline = time.monotonic() + 110
    repo_id, commit = add_repo(db, git_repo)
    run_ids = [plan_run(db, repo_id, commit, [
        script_job(f"job{index:02d}", "sleep 0.2", max_attempts=20) for index in range(30)])
        for _ in range(10)]
    chaos = random.Random(0)  # noqa: S311 (test chaos, not security)
    workers = [start_worker(MINIJENKIN_WORKER_CONCURRENCY="4") for _ in range(4)]
    kills = 0

    def unfinished() -> int:
        return db.execute("SELECT count(*) AS n FROM pipeline_runs WHERE status IN "
                          "('pending', 'queued', 'running')").fetchone()["n"]

    while unfinished() and time.monotonic() < deadline and kills < 60:
        time.sleep(chaos.uniform(1.5, 2.5))
        victim = chaos.randrange(len(workers))
        workers[victim].kill()
        kills += 1
        workers[victim] = start_worker(MINIJENKIN_WORKER_CONCURRENCY="4")

    wait_for(lambda: unfinished() == 0, timeout=max(5.0, deadline - time.monotonic()),
             interval=0.2, message="every run to end")

    rows = _attempt_rows(database_url)
    jobs = {row["id"]: row["job_status"] for row in rows}
    assert len(jobs) == 300
    assert set(jobs.values()) == {"succeeded"}
    assert [run_finished(db, run_id) for run_id in run_ids] == ["succeeded"] * 10
    _check_no_overlap(rows)
    assert kills >= 5
    assert any(row["status"] == "lost" for row in rows)


def test_stalled_queue_connection_fences_running_job(
    settings: Settings, db: psycopg.Connection, database_url: str, git_repo: GitRepo,
    proxy: PgProxy, start_worker: Start, tmp_path: Path,
) -> None:
    """A worker whose queue connections stop responding stops its jobs before they run elsewhere.

    The proxy stops relaying the queue pool's connections of the first
    worker without closing them, as a dropped network path does, so its
    heartbeat waits for a response that never comes. The reaper then hands
    the job to the second worker, and the first must have stopped it by
    then. Each tick of the step records its shell's PID and the time.
    """
    ticks = tmp_path / "ticks"
    repo_id, commit = add_repo(db, git_repo)
    run_id = plan_run(db, repo_id, commit, [script_job(
        "long", f"for i in $(seq 1 40); do echo \"$$ $(date +%s.%N)\" >> {ticks}; sleep 0.5; done")])
    reaper = ApiServer(settings, database_url).start()
    try:
        stalled = start_worker(MINIJENKIN_DATABASE_URL=proxy.url,
                               MINIJENKIN_WORKER_CONCURRENCY="1")
        wait_for(ticks.exists, timeout=60, interval=0.1, message="the step to start")
        healthy = start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
        wait_for(lambda: "action=listen_start" in healthy.output(), timeout=30,
                 message="the second worker to listen")

        assert proxy.freeze(b"application_name\x00minijenkin-worker\x00") >= 1
        status = wait_for(lambda: run_finished(db, run_id), timeout=90, interval=0.2,
                          message="the run to end")
    finally:
        reaper.stop()

    job = queue.job_id(db, run_id, "long")
    tried = [row["status"] for row in queue.attempts(db, job)]
    by_shell: dict[str, list[float]] = {}
    for line in ticks.read_text().split("\n"):
        if line:
            shell, at = line.split()
            by_shell.setdefault(shell, []).append(float(at))
    first, second = sorted(by_shell.values(), key=min)
    assert status == "succeeded", healthy.output()
    assert tried == ["lost", "succeeded"]
    assert len(by_shell) == 2
    assert len(second) == 40
    assert max(first) < min(second), (len(first), max(first) - min(second))
    assert "action=worker_self_fence" in stalled.output()
    assert "timed out: no response from the database within 3 s" in stalled.output()
