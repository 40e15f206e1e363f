"""Dispatcher processes for tests: real `python -m minijenkin dispatcher` children."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.workers import scrubbed_environment

# Short timings so that retry and lease tests finish quickly.
FAST_NOTIFY_ENV = {
    "MINIJENKIN_NOTIFY_POLL_SECONDS": "0.2",
    "MINIJENKIN_NOTIFY_TIMEOUT_SECONDS": "2",
    "MINIJENKIN_NOTIFY_BACKOFF_SECONDS": "0.2",
    "MINIJENKIN_NOTIFY_BACKOFF_MAX_SECONDS": "1",
    "MINIJENKIN_NOTIFY_DEAD_LETTER_SECONDS": "600",
}


class DispatcherProcess:
    def __init__(self, conninfo: str, data_dir: Path, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self.env = {
            **scrubbed_environment(), **FAST_NOTIFY_ENV,
            "MINIJENKIN_DATABASE_URL": conninfo, "MINIJENKIN_DATA_DIR": str(data_dir), **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DispatcherProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minijenkin", "dispatcher"], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    def kill(self) -> None:
        """kill -9 the dispatcher."""
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
