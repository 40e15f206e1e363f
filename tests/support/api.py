"""Real API servers on 127.0.0.1 for tests: in a background thread, or as child processes."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from minijenkin.api.app import create_app
from minijenkin.config import Settings
from tests.support.workers import scrubbed_environment

START_TIMEOUT_SECONDS = 15


class ApiServer:
    """The API with an admin token that `client()` sends unless told otherwise."""

    def __init__(self, settings: Settings, conninfo: str, *, maintenance: bool = True) -> None:
        self.admin_token = settings.admin_token or "mjt_test_" + secrets.token_urlsafe(16)
        settings = settings.model_copy(update={"admin_token": self.admin_token})
        app = create_app(settings, conninfo, maintenance=maintenance)
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)
        self.url = ""

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def client(self, token: str | None = "admin") -> httpx.Client:
        """An HTTP client with the admin token, another `token`, or none (token=None)."""
        headers = {}
        if token is not None:
            value = self.admin_token if token == "admin" else token
            headers["Authorization"] = f"Bearer {value}"
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ApiProcess:
    """`python -m minijenkin api` as a real child process on a free loopback port."""

    def __init__(self, conninfo: str, data_dir: Path, log_path: Path, **env: str) -> None:
        self.admin_token = "mjt_test_" + secrets.token_urlsafe(16)
        self.log_path = log_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **scrubbed_environment(), "MINIJENKIN_DATABASE_URL": conninfo,
            "MINIJENKIN_DATA_DIR": str(data_dir), "MINIJENKIN_ADMIN_TOKEN": self.admin_token,
            "MINIJENKIN_HOST": "127.0.0.1", "MINIJENKIN_PORT": str(self.port), **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "minijenkin", "api"], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS * 2
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API process exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API process did not start: {self.output()}")
            time.sleep(0.1)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
