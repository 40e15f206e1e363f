"""A real API server on 127.0.0.1 in a background thread, for tests."""

from __future__ import annotations

import secrets
import threading
import time

import httpx
import uvicorn

from minijenkin.api.app import create_app
from minijenkin.config import Settings

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
