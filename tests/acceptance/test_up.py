"""`minijenkin up` as a user runs it: start, serve, stop cleanly on a signal."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from minijenkin.db.embedded import EmbeddedPostgres
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
