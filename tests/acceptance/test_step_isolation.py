"""Steps run in a scrubbed environment, a private workspace, optionally as another user,
and nothing they start outlives their job."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.gitrepo import GitRepo
from tests.support.queue import add_repo, job_id, plan_run, run_finished, script_job
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

WORKER_ONLY = {
    "MINIJENKIN_SECRET_KEY": "c2VjcmV0LWtleS1vZi10aGUtd29ya2VyLWZvci10ZXN0cw==",
    "MINIJENKIN_WORKER_LABELS": "isolation-canary",
    "DATABASE_URL": "postgresql://leak@127.0.0.1:9/leak",
    "PGPASSWORD": "pg-password-canary",
    "PGHOST": "127.0.0.1",
    "ISOLATION_CANARY": "worker-environment-canary",
}


def _log_texts(db: psycopg.Connection, job: int) -> list[str]:
    rows = db.execute("SELECT line FROM job_logs WHERE job_id = %s AND stream <> 3 ORDER BY seq",
                      (job,)).fetchall()
    return [row["line"] for row in rows]


def _run(db: psycopg.Connection, git_repo: GitRepo, worker: WorkerProcess,
         graph: list[dict]) -> int:
    repo_id, commit = add_repo(db, git_repo)
    run_id = plan_run(db, repo_id, commit, graph)
    try:
        wait_for(lambda: run_finished(db, run_id), timeout=60, interval=0.1,
                 message=f"run {run_id} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker output:\n{worker.output()}") from None
    return run_id


def test_step_environment_is_scrubbed(db: psycopg.Connection, database_url: str, git_repo: GitRepo,
                                      start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(**WORKER_ONLY)
    run_id = _run(db, git_repo, worker, [script_job("env", "env -0 | tr '\\0' '\\n' | cut -d= -f1 | sort")])

    assert run_finished(db, run_id) == "succeeded", worker.output()
    names = set(_log_texts(db, job_id(db, run_id, "env")))
    assert "HOME" in names
    assert "MINIJENKIN_JOB_ID" in names
    leaked = {name for name in names if name.startswith("PG") or name in WORKER_ONLY
              or name in ("MINIJENKIN_DATABASE_URL", "MINIJENKIN_WORKER_DATABASE_URL",
                          "MINIJENKIN_DATA_DIR")
              or name.startswith("MINIJENKIN_WORKER_")}
    assert leaked == set()


def test_step_values_hold_no_credentials(db: psycopg.Connection, database_url: str,
                                         git_repo: GitRepo,
                                         start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(**WORKER_ONLY)
    run_id = _run(db, git_repo, worker, [script_job("env", "env")])

    text = "\n".join(_log_texts(db, job_id(db, run_id, "env")))
    assert run_finished(db, run_id) == "succeeded", worker.output()
    for value in (database_url, *WORKER_ONLY.values()):
        assert value not in text


def test_workspace_gone_for_next_job(db: psycopg.Connection, git_repo: GitRepo,
                                     start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")
    first = script_job("first", 'echo private > secret.txt; echo "$PWD/secret.txt"; '
                                'stat -c %a "$(dirname "$PWD")"')
    second = script_job("second", 'ls -d "$(dirname "$(dirname "$GITHUB_WORKSPACE")")"/job-* | wc -l',
                        needs=["first"])
    run_id = _run(db, git_repo, worker, [first, second])

    assert run_finished(db, run_id) == "succeeded", worker.output()
    path, mode = _log_texts(db, job_id(db, run_id, "first"))
    assert mode == "700"
    assert not Path(path).exists()
    # Only the second job's own folder is left in the work root.
    assert _log_texts(db, job_id(db, run_id, "second")) == ["1"]


def _processes_with(argument: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if argument in (process.info["cmdline"] or []):
            found.append(process)
    return found


def test_daemon_dies_with_job(db: psycopg.Connection, git_repo: GitRepo,
                              start_worker: Callable[..., WorkerProcess]) -> None:
    worker = start_worker()
    # One daemon detaches with setsid into its own session; the other also
    # double-forks, so its parent is gone before the job ends.
    daemons = script_job(
        "daemons",
        "setsid sleep 3117 </dev/null >/dev/null 2>&1 &",
        "( setsid bash -c 'sleep 3118' </dev/null >/dev/null 2>&1 & ) ; sleep 0.2",
        "test -n \"$(pgrep -f 'sleep 311[78]')\" && echo both started",
    )
    run_id = _run(db, git_repo, worker, [daemons])

    assert run_finished(db, run_id) == "succeeded", worker.output()
    assert "both started" in _log_texts(db, job_id(db, run_id, "daemons"))
    wait_for(lambda: not (_processes_with("3117") or _processes_with("sleep 3118")), timeout=10,
             interval=0.1, message="the daemons to be killed")
    assert "action=job_leftovers_killed" in worker.output()


def _duration_seconds(db: psycopg.Connection, job: int) -> float:
    row = db.execute("SELECT finished_at - started_at AS took FROM jobs WHERE id = %s",
                     (job,)).fetchone()
    return row["took"].total_seconds()


def test_silent_background_process_ends_step(db: psycopg.Connection, git_repo: GitRepo,
                                             start_worker: Callable[..., WorkerProcess]) -> None:
    """A background process holding the step's output open, printing nothing, does not hold the step."""
    worker = start_worker()
    run_id = _run(db, git_repo, worker, [script_job("server", "sleep 3119 & echo started")])
    job = job_id(db, run_id, "server")

    assert run_finished(db, run_id) == "succeeded", worker.output()
    assert _log_texts(db, job) == ["started"]
    # The shell exits at once, and the output is read until it has been silent for 1 s.
    assert _duration_seconds(db, job) < 10
    wait_for(lambda: not _processes_with("3119"), timeout=10, interval=0.1,
             message="the background process to be killed")


def test_background_writer_is_cut_off(db: psycopg.Connection, git_repo: GitRepo,
                                      start_worker: Callable[..., WorkerProcess]) -> None:
    writer = "for i in $(seq 1 400); do echo tick; sleep 0.25; done"
    worker = start_worker()
    run_id = _run(db, git_repo, worker, [script_job("ticks", f"bash -c '{writer}' & echo started")])
    job = job_id(db, run_id, "ticks")
    system_lines = [row["line"] for row in db.execute(
        "SELECT line FROM job_logs WHERE job_id = %s AND stream = 3 ORDER BY seq", (job,))]

    assert run_finished(db, run_id) == "succeeded", worker.output()
    cut_off = [line for line in system_lines if line.startswith("stopped reading the step's output")]
    assert len(cut_off) == 1, system_lines
    assert cut_off[0].endswith(
        "s after its shell exited: a process it started in the background still writes to it")
    # Cut after 10 s of output, not the writer's 100 s.
    assert _duration_seconds(db, job) < 30
    wait_for(lambda: not _processes_with(writer), timeout=10, interval=0.1,
             message="the writer to be killed")


def test_killed_worker_takes_step_processes_along(
    db: psycopg.Connection, git_repo: GitRepo, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """kill -9 of the worker ends what its step runs, also a daemon of an earlier step."""
    child_ticks = tmp_path / "child.ticks"
    daemon_ticks = tmp_path / "daemon.ticks"
    loop = 'while :; do echo tick >> "$1"; sleep 0.1; done'
    worker = start_worker()
    plan_run(db, *add_repo(db, git_repo), [script_job(
        "long",
        f"setsid bash -c '{loop}' guard-daemon-3131 {daemon_ticks} </dev/null >/dev/null 2>&1 &",
        f"bash -c '{loop}' guard-child-3132 {child_ticks}")])
    wait_for(lambda: child_ticks.exists() and daemon_ticks.exists(), timeout=60, interval=0.1,
             message="both writers to start")

    worker.kill()
    wait_for(lambda: not (_processes_with("guard-child-3132") or _processes_with("guard-daemon-3131")),
             timeout=10, interval=0.1, message="the writers to be killed")
    sizes = (child_ticks.stat().st_size, daemon_ticks.stat().st_size)
    time.sleep(0.5)

    assert (child_ticks.stat().st_size, daemon_ticks.stat().st_size) == sizes


def test_step_environment_stays_out_of_guard(db: psycopg.Connection, git_repo: GitRepo,
                                            start_worker: Callable[..., WorkerProcess]) -> None:
    """The process above the step's shell, which may run as root, never gets the step's variables."""
    worker = start_worker()
    job = script_job(
        "guarded",
        'echo "LD_PRELOAD=/nonexistent/guard-test.so" >> "$GITHUB_ENV"; '
        'echo "MARKER=from-step" >> "$GITHUB_ENV"',
        'tr "\\0" "\\n" < /proc/$PPID/cmdline | grep -c step_guard.py; '
        'tr "\\0" "\\n" < /proc/$PPID/environ | grep -c -E "^(LD_PRELOAD|MARKER|GITHUB_SHA)=" || true; '
        'echo "$MARKER"')
    run_id = _run(db, git_repo, worker, [job])

    assert run_finished(db, run_id) == "succeeded", worker.output()
    texts = _log_texts(db, job_id(db, run_id, "guarded"))
    assert [text for text in texts if "LD_PRELOAD" not in text] == ["1", "0", "from-step"]


def test_cancel_kills_detached_writer(db: psycopg.Connection, git_repo: GitRepo,
                                      start_worker: Callable[..., WorkerProcess]) -> None:
    """A cancel ends the step although a setsid writer keeps its output open."""
    writer = "for i in $(seq 1 400); do echo tick; sleep 0.3; done"
    worker = start_worker()
    repo_id, commit = add_repo(db, git_repo)
    run_id = plan_run(db, repo_id, commit, [
        script_job("detached", f"setsid bash -c '{writer}' & sleep 3120")])
    job = job_id(db, run_id, "detached")
    wait_for(lambda: _processes_with(writer), timeout=60, interval=0.1,
             message="the writer to start")

    db.execute("SELECT mj_job_cancel_v1(%s, 'stop it')", (job,))
    status = wait_for(lambda: run_finished(db, run_id), timeout=20, interval=0.1,
                      message="the cancelled run to end")

    assert status == "cancelled", worker.output()
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()["status"] == "cancelled"
    assert _processes_with(writer) == []
    assert _processes_with("3120") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a worker running as root")
def test_steps_run_as_user(db: psycopg.Connection, git_repo: GitRepo, data_dir: Path,
                           start_worker: Callable[..., WorkerProcess]) -> None:
    user = pwd.getpwnam("nobody")
    worker = start_worker(MINIJENKIN_WORKER_RUN_AS="nobody")
    job = script_job(
        "who",
        "id -u; id -G",
        'echo built > "$GITHUB_WORKSPACE/out.txt"; echo "NAME=value" >> "$GITHUB_ENV"',
        'echo "$NAME"; cat README.md',
        f"ls {data_dir} 2>/dev/null || echo data directory unreadable",
        "git rev-parse HEAD",
    )
    run_id = _run(db, git_repo, worker, [job])

    commit = db.execute("SELECT commit_sha FROM pipeline_runs WHERE id = %s",
                        (run_id,)).fetchone()["commit_sha"]
    assert run_finished(db, run_id) == "succeeded", worker.output()
    assert _log_texts(db, job_id(db, run_id, "who")) == [
        str(user.pw_uid), str(user.pw_gid), "value", "acme/queue", "data directory unreadable",
        commit]
    # The checkout copied the mirror's objects: none became the user's.
    given_away = [path for path in data_dir.rglob("*") if path.lstat().st_uid == user.pw_uid]
    assert given_away == []


def test_run_as_needs_existing_user(database_url: str, data_dir: Path, tmp_path: Path) -> None:
    env = {**WorkerProcess(database_url, data_dir, tmp_path / "w.log").env,
           "MINIJENKIN_WORKER_RUN_AS": "no-such-user-here"}

    result = subprocess.run([sys.executable, "-m", "minijenkin", "worker"], env=env,
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert "MINIJENKIN_WORKER_RUN_AS: no user 'no-such-user-here' on this host" in result.stderr
