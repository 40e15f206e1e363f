"""Real worker processes under control: cancel, timeout, stop, pause, labels, retries, re-runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.api import ApiServer
from tests.support.factories import create_repo, create_run
from tests.support.gitrepo import GitRepo
from tests.support.queue import (
    add_repo,
    attempts,
    job_id,
    job_status,
    plan_run,
    run_finished,
    script_job,
    worker_ids,
)
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, scrubbed_environment

Start = Callable[..., WorkerProcess]


def _pid_from(path: Path) -> int | None:
    """The process id a step wrote to `path`, once it is there."""
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text else None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_running_job_kills_step_and_skips_dependents(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "step.pid"
    # The step ignores SIGTERM (and so does sleep, which inherits that), so
    # only the SIGKILL that follows the grace period can end it.
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("build", f"echo $$ > {pid_file}; trap '' TERM; sleep 60"),
        script_job("deploy", "echo never", needs=["build"]),
    ])
    worker = start_worker()
    step_pid = wait_for(lambda: _pid_from(pid_file), timeout=60, message="the step to start")
    build_id = job_id(db, run_id, "build")

    with api_server.client() as client:
        response = client.post(f"/api/jobs/{build_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "cancel_requested"
        final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")
        job = client.get(f"/api/jobs/{build_id}").json()

    assert final == "cancelled", worker.output()
    assert job["status"] == "cancelled"
    assert job["reason"] == "cancelled by a user"
    assert [attempt["status"] for attempt in job["attempts"]] == ["cancelled"]
    assert job_status(db, job_id(db, run_id, "deploy")) == "skipped"
    wait_for(lambda: not _process_exists(step_pid), timeout=30, message="the step to be killed")
    assert "action=job_stop" in worker.output()


def test_cancel_run_through_api(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("long", f"touch {started}; sleep 60"),
        script_job("after", "echo never", needs=["long"]),
    ])
    start_worker()
    wait_for(started.exists, timeout=60, message="the step to start")

    with api_server.client() as client:
        response = client.post(f"/api/runs/{run_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["affected"] == 2
        wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")
        run = client.get(f"/api/runs/{run_id}").json()

    assert run["status"] == "cancelled"
    assert {job["key"]: job["status"] for job in run["jobs"]} == {
        "plan": "succeeded", "long": "cancelled", "after": "cancelled"}


def test_timeout_marks_job_timed_out(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Start, tmp_path: Path,
) -> None:
    pid_file = tmp_path / "step.pid"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("slow", f"echo $$ > {pid_file}; sleep 60", timeout_seconds=1),
        script_job("after", "echo never", needs=["slow"]),
    ])
    start_worker()

    final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")

    slow = db.execute("SELECT status, reason, exit_code FROM jobs WHERE id = %s",
                      (job_id(db, run_id, "slow"),)).fetchone()
    assert final == "failed"
    assert slow == {"status": "timed_out", "reason": "timed out after 1 s", "exit_code": None}
    assert job_status(db, job_id(db, run_id, "after")) == "skipped"
    step_pid = _pid_from(pid_file)
    assert step_pid is not None
    wait_for(lambda: not _process_exists(step_pid), timeout=30, message="the step to be killed")


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte.

    git fetching from it waits for a response until its own time limit.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def all_closed_by_client(self) -> bool:
        """Whether every accepted connection was closed by its client (git has ended)."""
        for connection in self.accepted:
            connection.settimeout(0.1)
            try:
                if connection.recv(4096) != b"":
                    return False
            except TimeoutError:
                return False
            except OSError:
                continue
        return True

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=10)
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_cancel_run_while_plan_fetch_hangs(
    api_server: ApiServer, db: psycopg.Connection, silent_server: SilentServer,
    start_worker: Start,
) -> None:
    repo_id = create_repo(db, "acme/silent", f"http://127.0.0.1:{silent_server.port}/silent.git")
    run_id = create_run(db, repo_id)
    worker = start_worker()
    wait_for(lambda: silent_server.accepted, timeout=60, message="git to connect")

    with api_server.client() as client:
        response = client.post(f"/api/runs/{run_id}/cancel")
        assert response.status_code == 200, response.text
        final = wait_for(lambda: run_finished(db, run_id), timeout=30, message="the run to end")

    plan = db.execute("SELECT status, reason FROM jobs WHERE run_id = %s AND kind = 'plan'",
                      (run_id,)).fetchone()
    assert final == "cancelled", worker.output()
    assert plan == {"status": "cancelled", "reason": "cancelled by a user"}
    assert wait_for(silent_server.all_closed_by_client, timeout=30, message="git to end")


def test_timeout_while_checkout_hangs(
    db: psycopg.Connection, silent_server: SilentServer, start_worker: Start,
) -> None:
    repo_id = create_repo(db, "acme/silent", f"http://127.0.0.1:{silent_server.port}/silent.git")
    run_id = plan_run(db, repo_id, "b" * 40, [script_job("build", "echo never", timeout_seconds=2)])
    worker = start_worker()

    final = wait_for(lambda: run_finished(db, run_id), timeout=30, message="the run to end")

    build = db.execute("SELECT status, reason, exit_code FROM jobs WHERE id = %s",
                       (job_id(db, run_id, "build"),)).fetchone()
    assert final == "failed", worker.output()
    assert build == {"status": "timed_out", "reason": "timed out after 2 s", "exit_code": None}
    assert silent_server.accepted
    assert wait_for(silent_server.all_closed_by_client, timeout=30, message="git to end")


def test_script_retry_reruns_failed_step(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    policy = {"max": 2, "script": True, "timeout": False, "infra": True}
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("flaky", 'test "$MINIJENKIN_ATTEMPT" -ge 3', retry=policy)])
    start_worker()

    final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")

    rows = attempts(db, job_id(db, run_id, "flaky"))
    assert final == "succeeded"
    assert [(row["attempt"], row["status"], row["exit_code"]) for row in rows] == [
        (1, "failed", 1), (2, "failed", 1), (3, "succeeded", 0)]


def test_rerun_failed_only_through_api(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("lint", "true"),
        script_job("test", 'test "$MINIJENKIN_ATTEMPT" -ge 2'),
        script_job("package", "true", needs=["lint", "test"]),
    ])
    start_worker()
    assert wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end") == "failed"

    with api_server.client() as client:
        response = client.post(f"/api/runs/{run_id}/rerun", params={"failed_only": "true"})
        assert response.status_code == 200, response.text
        assert response.json() == {"reset": 2}
        final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the re-run")
        jobs = {job["key"]: job for job in client.get(f"/api/runs/{run_id}").json()["jobs"]}

    assert final == "succeeded"
    assert {key: (job["status"], job["attempt"]) for key, job in jobs.items()} == {
        "plan": ("succeeded", 1), "lint": ("succeeded", 1), "test": ("succeeded", 2),
        "package": ("succeeded", 1)}


def test_graceful_stop_lets_running_job_finish(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Start, tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("build", f"touch {started}; sleep 1; echo built")])
    worker = start_worker(MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS="60")
    wait_for(started.exists, timeout=60, message="the step to start")

    worker.signal(signal.SIGTERM)
    exit_code = worker.process.wait(timeout=60) if worker.process else None

    assert exit_code == 0, worker.output()
    assert run_finished(db, run_id) == "succeeded"
    rows = attempts(db, job_id(db, run_id, "build"))
    assert [row["status"] for row in rows] == ["succeeded"]
    assert db.execute("SELECT status FROM workers WHERE pid = %s", (worker.pid,)).fetchone() == {
        "status": "stopped"}


def test_graceful_stop_hands_back_after_grace(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Start, tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("build", f'touch {started}; test "$MINIJENKIN_ATTEMPT" -ge 2 || sleep 60')])
    first = start_worker(MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    wait_for(started.exists, timeout=60, message="the step to start")

    first.signal(signal.SIGTERM)
    assert (first.process.wait(timeout=60) if first.process else None) == 0, first.output()
    build_id = job_id(db, run_id, "build")
    assert job_status(db, build_id) == "queued"
    second = start_worker()
    final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")

    rows = attempts(db, build_id)
    assert final == "succeeded", second.output()
    assert [(row["status"], row["reason"]) for row in rows] == [
        ("handed_back", "worker stopped"), ("succeeded", None)]
    assert rows[0]["worker_id"] == worker_ids(db, first.pid)[0]
    assert rows[1]["worker_id"] == worker_ids(db, second.pid)[0]


def test_second_stop_signal_hands_back_at_once(
    db: psycopg.Connection, git_repo: GitRepo, start_worker: Start, tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("build", f"touch {started}; sleep 60")])
    worker = start_worker(MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS="600")
    wait_for(started.exists, timeout=60, message="the step to start")

    worker.signal(signal.SIGTERM)
    wait_for(lambda: "action=worker_stopping" in worker.output(), timeout=30,
             message="the first signal to be handled")
    worker.signal(signal.SIGTERM)
    exit_code = worker.process.wait(timeout=60) if worker.process else None

    assert exit_code == 0, worker.output()
    assert [row["status"] for row in attempts(db, job_id(db, run_id, "build"))] == ["handed_back"]
    assert job_status(db, job_id(db, run_id, "build")) == "queued"


def test_paused_worker_late_result_is_ignored(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("build", f"touch {started}; sleep 2; echo attempt $MINIJENKIN_ATTEMPT")])
    paused = start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
    wait_for(started.exists, timeout=60, message="the step to start")
    build_id = job_id(db, run_id, "build")

    # Paused for longer than the lease (3 s): the reaper declares the worker
    # lost and another worker runs the job again.
    paused.signal(signal.SIGSTOP)
    try:
        other = start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
        final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the re-run")
    finally:
        paused.signal(signal.SIGCONT)
    late = wait_for(
        lambda: [line for line in paused.output().splitlines()
                 if f"job_id={build_id}" in line
                 and ("action=job_result_stale" in line or "action=job_abandon" in line)],
        timeout=30, message="the resumed worker to drop its result")

    rows = attempts(db, build_id)
    assert final == "succeeded", other.output()
    assert [(row["attempt"], row["status"], row["reason"]) for row in rows] == [
        (1, "lost", "worker lost"), (2, "succeeded", None)]
    assert rows[0]["worker_id"] == worker_ids(db, paused.pid)[0]
    assert rows[1]["worker_id"] == worker_ids(db, other.pid)[0]
    assert rows[0]["finished_at"] <= rows[1]["started_at"]
    assert len(late) == 1
    # The late result changed nothing.
    assert job_status(db, build_id) == "succeeded"
    assert [row["status"] for row in attempts(db, build_id)] == ["lost", "succeeded"]


def test_job_longer_than_lease_runs_once(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, start_worker: Start,
) -> None:
    # The lease is 3 s and the reaper runs every 0.5 s; heartbeats every
    # 0.5 s keep the worker, and so its job, alive for the whole 6 s.
    run_id = plan_run(db, *add_repo(db, git_repo), [script_job("long", "sleep 6")])
    start_worker()

    final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")

    assert final == "succeeded"
    assert [row["status"] for row in attempts(db, job_id(db, run_id, "long"))] == ["succeeded"]


def test_concurrency_runs_over_fixed_connections(
    db: psycopg.Connection, database_url: str, git_repo: GitRepo, start_worker: Start,
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job(f"job{index}", f"while [ ! -e {release} ]; do sleep 0.1; done")
        for index in range(6)])
    worker = start_worker(MINIJENKIN_WORKER_CONCURRENCY="6")
    database = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]

    wait_for(lambda: db.execute("SELECT count(*) AS n FROM jobs WHERE run_id = %s AND "
                                "status = 'running'", (run_id,)).fetchone()["n"] == 6,
             timeout=60, message="six jobs running at once")
    connections = db.execute(
        "SELECT application_name, count(*) AS n FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY application_name",
        (database,)).fetchall()
    running_on = db.execute("SELECT DISTINCT worker_id FROM jobs WHERE run_id = %s AND "
                            "status = 'running'", (run_id,)).fetchall()
    release.touch()
    final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")

    by_name = {row["application_name"]: row["n"] for row in connections}
    assert [row["worker_id"] for row in running_on] == worker_ids(db, worker.pid)
    # Queue calls share a pool of at most two; LISTEN and log shipping have one each.
    assert set(by_name) <= {"minijenkin-worker", "minijenkin-worker-listen",
                            "minijenkin-worker-logs"}
    assert 1 <= by_name.get("minijenkin-worker", 0) <= 2
    assert by_name.get("minijenkin-worker-listen") == 1
    assert by_name.get("minijenkin-worker-logs", 0) <= 1
    assert final == "succeeded"


def test_job_without_capable_worker_is_shown(
    api_server: ApiServer, db: psycopg.Connection, database_url: str, git_repo: GitRepo,
    start_worker: Start,
) -> None:
    run_id = plan_run(db, *add_repo(db, git_repo), [
        script_job("gpu", "echo on gpu", labels=["gpu"]), script_job("plain", "true")])
    plain_worker = start_worker()
    gpu_id = job_id(db, run_id, "gpu")
    wait_for(lambda: job_status(db, job_id(db, run_id, "plain")) == "succeeded", timeout=60,
             message="the unlabelled job to run")

    with api_server.client() as client:
        waiting = client.get(f"/api/jobs/{gpu_id}").json()
        run_jobs = {job["key"]: job for job in client.get(f"/api/runs/{run_id}").json()["jobs"]}
        run_page = client.get(f"/runs/{run_id}").text
        shown = subprocess.run(
            [sys.executable, "-m", "minijenkin", "show", str(run_id)],
            env={**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url,
                 "COLUMNS": "200"},
            text=True, capture_output=True, timeout=60, check=False)
        gpu_worker = start_worker(MINIJENKIN_WORKER_LABELS="gpu,linux")
        final = wait_for(lambda: run_finished(db, run_id), timeout=60, message="the run to end")
        done = client.get(f"/api/jobs/{gpu_id}").json()
        done_page = client.get(f"/runs/{run_id}").text

    waiting_text = "waiting for a worker with the labels gpu"
    assert waiting["status"] == "queued"
    assert waiting["has_capable_worker"] is False
    assert run_jobs["gpu"]["has_capable_worker"] is False
    assert run_jobs["plain"]["has_capable_worker"] is True
    assert waiting_text in run_page
    assert shown.returncode == 0, shown.stderr
    assert waiting_text in shown.stdout
    assert final == "succeeded", plain_worker.output()
    assert done["has_capable_worker"] is True
    assert waiting_text not in done_page
    assert [attempt["worker_id"] for attempt in done["attempts"]] == [
        str(worker_ids(db, gpu_worker.pid)[0])]
