"""Worker processes for tests: real `python -m minijenkin worker` children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

# Short timings so that tests about leases and polling finish quickly.
FAST_WORKER_ENV = {
    "MINIJENKIN_WORKER_HEARTBEAT_SECONDS": "0.5",
    "MINIJENKIN_WORKER_LEASE_SECONDS": "3",
    "MINIJENKIN_WORKER_POLL_SECONDS": "1",
    "MINIJENKIN_WORKER_KILL_GRACE_SECONDS": "2",
    "MINIJENKIN_WORKER_SHUTDOWN_GRACE_SECONDS": "10",
    "MINIJENKIN_RETRY_BACKOFF_SECONDS": "0.2",
    "MINIJENKIN_RETRY_BACKOFF_MAX_SECONDS": "1",
}


def scrubbed_environment() -> dict[str, str]:
    """The test process's environment without any Mini-Jenkin or PostgreSQL settings."""
    return {
        key: value for key, value in os.environ.items()
        if not key.startswith(("MINIJENKIN_", "PG")) and key != "DATABASE_URL"
    }


class MinijenkinProcess:
    """A `python -m minijenkin COMMAND` child with its output in `log_path`."""

    command = ""
    fast_env: dict[str, str] = {}

    def __init__(self, conninfo: str, data_dir: Path, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self.env = {
            **scrubbed_environment(), **self.fast_env,
            "MINIJENKIN_DATABASE_URL": conninfo, "MINIJENKIN_DATA_DIR": str(data_dir), **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minijenkin", self.command], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """kill -9 the process."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerProcess(MinijenkinProcess):
    command = "worker"
    fast_env = FAST_WORKER_ENV

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
