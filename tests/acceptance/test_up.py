"""`minijenkin up` as a user runs it: start, serve, stop cleanly on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from minijenkin.db.embedded import EmbeddedPostgres
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for
from tests.support.workers import scrubbed_environment


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_up_stops_workers_and_database(tmp_path: Path, stop_signal: signal.Signals) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(data_dir)}
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "minijenkin", "up", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _healthy(url) or process.poll() is not None, timeout=120,
                 message="minijenkin up to answer /healthz")
        assert process.poll() is None, (tmp_path / "up.log").read_text()
        server = EmbeddedPostgres(data_dir)
        assert server.is_running() is True
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM workers WHERE status = 'active'")
                     .fetchone()[0] == 2, timeout=60, message="both workers to register")
        token = (data_dir / "admin-token").read_text().strip()
        workers = httpx.get(f"{url}/api/runs", headers={"Authorization": f"Bearer {token}"})
        assert workers.status_code == 200

        process.send_signal(stop_signal)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    output = (tmp_path / "up.log").read_text()
    assert code == 0, output
    assert "stopping embedded PostgreSQL" in output
    assert EmbeddedPostgres(data_dir).is_running() is False
    assert output.count("worker stopped") == 2


@pytest.mark.parametrize(("presses", "attempts"), [(1, ["succeeded"]), (2, ["handed_back"])])
def test_up_ctrl_c_lets_running_job_finish(tmp_path: Path, presses: int,
                                           attempts: list[str]) -> None:
    """Ctrl-C in a terminal signals up's whole process group: once lets the job finish,
    twice hands it back at once."""
    repo = GitRepo(tmp_path / "repo")
    repo.commit({".minijenkin.yml": "jobs:\n  slow:\n    steps:\n"
                                    "      - run: sleep 4 && echo slow-job-done\n"}, "Slow job")
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    process = _start_up(data_dir, port, log_path,
                        MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS="60")
    try:
        _wait_healthy(process, url, log_path)
        token = (data_dir / "admin-token").read_text().strip()
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            created = client.post("/api/repos", json={"name": "acme/slow", "url": repo.url})
            assert created.status_code == 201, created.text
            run = client.post("/api/runs", json={"repo": "acme/slow", "ref": "main"})
            assert run.status_code == 201, run.text
        with psycopg.connect(EmbeddedPostgres(data_dir).conninfo(), autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM jobs WHERE key = 'slow' AND "
                                          "status = 'running'").fetchone()[0] == 1,
                     timeout=60, message="the slow job to start")

        for _ in range(presses):
            os.killpg(process.pid, signal.SIGINT)
            time.sleep(0.3)
        code = process.wait(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # up stopped its database on the way out; start it again to read the outcome.
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            recorded = [row[0] for row in conn.execute(
                "SELECT a.status FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                "WHERE j.key = 'slow' ORDER BY a.attempt")]
            logged = [row[0] for row in conn.execute(
                "SELECT l.line FROM job_logs l JOIN jobs j ON j.id = l.job_id "
                "WHERE j.key = 'slow' AND l.line = 'slow-job-done'")]
    finally:
        server.stop()
    assert code == 0, log_path.read_text()
    assert recorded == attempts
    assert logged == (["slow-job-done"] if presses == 1 else [])


def test_worker_stops_when_up_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    log_path = tmp_path / "up.log"
    process = _start_up(data_dir, port, log_path)
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}", log_path)
        with psycopg.connect(EmbeddedPostgres(data_dir).conninfo(), autocommit=True) as conn:
            worker_pid = wait_for(lambda: conn.execute(
                "SELECT pid FROM workers WHERE status = 'active'").fetchone(), timeout=60,
                message="the worker to register")[0]

        process.kill()
        process.wait()
        wait_for(lambda: not psutil.pid_exists(worker_pid)
                 or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE,
                 timeout=30, interval=0.2, message="the worker to stop after up died")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # The server outlives a killed up; taking it over stops it.
        leftover = EmbeddedPostgres(data_dir)
        leftover.start()
        leftover.stop()

    assert "worker stopped" in log_path.read_text()


def _start_up(data_dir: Path, port: int, log_path: Path, *, workers: int = 1, demo: bool = False,
              **env: str) -> subprocess.Popen[bytes]:
    """Start `minijenkin up` in a session of its own, with extra variables in `env`."""
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(data_dir), **env}
    demo_options = ["--demo"] if demo else []
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "minijenkin", "up", "--port", str(port),
             "--workers", str(workers), *demo_options],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    wait_for(lambda: _healthy(url) or process.poll() is not None, timeout=120,
             message="minijenkin up to answer /healthz")
    assert process.poll() is None, log_path.read_text()


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def test_up_demo_points_to_dashboard(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "up.log"
    process = _start_up(data_dir, port, log_path, demo=True)
    try:
        wait_for(lambda: "The API stays up" in log_path.read_text(errors="replace")
                 or process.poll() is not None, timeout=180, message="the demo run to end")
        output = log_path.read_text(errors="replace")
    finally:
        _stop(process)

    assert "demo run 1 succeeded" in output, output
    assert f"  dashboard: {url}/runs/1 (sign in at {url}/signin with the admin token)" in output
    assert f"  admin token for the CLI and the dashboard: {data_dir / 'admin-token'}" in output


def test_second_up_on_same_data_dir_is_rejected(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    first = _start_up(data_dir, port, tmp_path / "first.log")
    try:
        _wait_healthy(first, url, tmp_path / "first.log")

        second = subprocess.run(
            [sys.executable, "-m", "minijenkin", "up", "--port", str(_free_port()), "--workers", "1"],
            env={**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(data_dir)},
            capture_output=True, text=True, timeout=60, check=False)

        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another process (pid {first.pid}) runs the embedded PostgreSQL" in second.stderr
        assert "Traceback" not in second.stderr
        assert _healthy(url)
    finally:
        code = _stop(first)

    assert code == 0, (tmp_path / "first.log").read_text()
    assert EmbeddedPostgres(data_dir).is_running() is False


def test_up_after_crash_takes_over_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    crashed = _start_up(data_dir, port, tmp_path / "crashed.log")
    try:
        _wait_healthy(crashed, url, tmp_path / "crashed.log")
    finally:
        # SIGKILL to the whole process group, as an OOM killer or `kill -9` does.
        # The server survives because pg_ctl starts it in a session of its own.
        os.killpg(crashed.pid, signal.SIGKILL)
        crashed.wait(timeout=30)
    try:
        assert EmbeddedPostgres(data_dir).is_running() is True

        restarted = _start_up(data_dir, port, tmp_path / "restarted.log")
        try:
            _wait_healthy(restarted, url, tmp_path / "restarted.log")
        finally:
            code = _stop(restarted)
    finally:
        left = EmbeddedPostgres(data_dir)
        if left.is_running():
            left.start()
            left.stop()

    output = (tmp_path / "restarted.log").read_text()
    assert code == 0, output
    assert "action=embedded_adopt" in output
    assert "embedded PostgreSQL stopped" in output
    assert EmbeddedPostgres(data_dir).is_running() is False


def test_up_with_unusable_data_dir_names_it(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")

    result = subprocess.run(
        [sys.executable, "-m", "minijenkin", "up", "--port", str(_free_port()), "--workers", "0"],
        env={**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(not_a_directory / "data")},
        capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    assert f"cannot create the data directory {not_a_directory / 'data'}" in result.stderr
    assert "MINIJENKIN_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_with_external_database_creates_data_dir(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "new" / "data"
    port = _free_port()
    log_path = tmp_path / "up.log"
    process = _start_up(data_dir, port, log_path, workers=0,
                        MINIJENKIN_DATABASE_URL=database_url)
    try:
        _wait_healthy(process, f"http://127.0.0.1:{port}", log_path)
    finally:
        code = _stop(process)

    with psycopg.connect(database_url) as conn:
        tokens = conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0]
    assert code == 0, log_path.read_text()
    assert (data_dir / "admin-token").stat().st_mode & 0o777 == 0o600
    assert tokens == 1


def test_up_with_port_in_use_exits(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log_path = tmp_path / "up.log"
        process = _start_up(data_dir, port, log_path)
        try:
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    output = log_path.read_text()
    assert code == 3, output
    assert "address already in use" in output
    assert (f"another program uses port {port} on 127.0.0.1, so the API cannot listen there. "
            "Stop that program, or choose another port with --port or MINIJENKIN_PORT") in output
    # The workers started before the API were stopped with it (up exits
    # within about a second, often before they log anything).
    assert _processes_with_data_dir(data_dir) == []
    assert EmbeddedPostgres(data_dir).is_running() is False


def _processes_with_data_dir(data_dir: Path) -> list[int]:
    """Return the ids of live processes whose environment names `data_dir` (workers of that up)."""
    marker = f"MINIJENKIN_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # exited meanwhile, or not readable
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_up_with_incomplete_cluster_fails_fast(tmp_path: Path) -> None:
    # An initdb killed before its last step leaves a cluster without the
    # database "postgres"; dropping it reproduces that state.
    data_dir = tmp_path / "data"
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        with psycopg.connect(server.conninfo("template1"), autocommit=True) as conn:
            conn.execute("DROP DATABASE postgres")
    finally:
        server.stop()

    result = subprocess.run(
        [sys.executable, "-m", "minijenkin", "up", "--port", str(_free_port()), "--workers", "0"],
        env={**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(data_dir)},
        capture_output=True, text=True, timeout=45, check=False)

    assert result.returncode == 1, result.stderr
    assert "is incomplete (it has no database 'postgres')" in result.stderr
    assert "Traceback" not in result.stderr
    assert EmbeddedPostgres(data_dir).is_running() is False
