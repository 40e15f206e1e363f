"""An HTTP receiver on 127.0.0.1 that records every request, for notification tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.waiting import wait_for


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # time.monotonic() when the request arrived.
    at: float


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before sending the response.
    delay: float = 0.0


Responder = Callable[[Received], Reply]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Receiver:
    """Record requests and respond with `responder(request)` (200 "ok" by default)."""

    def __init__(self, responder: Responder | None = None, port: int = 0) -> None:
        self.responder = responder or (lambda request: Reply())
        self.port = port
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server dispatches to)
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(self.command, self.path,
                                   {name.lower(): value for name, value in self.headers.items()},
                                   self.rfile.read(length), time.monotonic())
                with receiver.lock:
                    receiver.requests.append(request)
                reply = receiver.responder(request)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client went away (a killed dispatcher)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver",
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def wait_for_requests(self, count: int, timeout: float = 30) -> list[Received]:
        return wait_for(lambda: len(self.received()) >= count and self.received(), timeout=timeout,
                        message=f"{count} requests at the receiver")
