"""Request limits: header size, body size, body timeout and page-size caps."""

from __future__ import annotations

import socket
import time

import pytest

from minijenkin.api.routes.hooks import WEBHOOK_BODY_MAX_BYTES
from minijenkin.config import HTTP_BODY_MAX_BYTES_DEFAULT, HTTP_HEADER_MAX_BYTES_DEFAULT, Settings
from tests.support.api import ApiServer

BODY_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"http_body_timeout_seconds": BODY_TIMEOUT_SECONDS})


def _raw_request(server: ApiServer, request: bytes, *, wait: float = 10) -> tuple[bytes, float]:
    """Send raw bytes, return the response head and body and the seconds until it came."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as connection:
        started = time.monotonic()
        connection.sendall(request)
        response = connection.recv(65536)
        return response, time.monotonic() - started


def test_headers_too_large(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/healthz", headers={"X-Padding": "a" * HTTP_HEADER_MAX_BYTES_DEFAULT})

    assert response.status_code == 431
    assert response.json()["detail"].startswith("request headers total ")
    assert response.json()["detail"].endswith(f"bytes, the maximum is {HTTP_HEADER_MAX_BYTES_DEFAULT}")


def test_too_many_headers(api_server: ApiServer) -> None:
    headers = {f"X-Extra-{index}": "1" for index in range(120)}
    with api_server.client() as client:
        response = client.get("/healthz", headers=headers)

    assert response.status_code == 431
    assert response.json()["detail"].startswith("too many request headers: ")
    assert response.json()["detail"].endswith("the maximum is 100")


def test_declared_body_too_large(api_server: ApiServer) -> None:
    body = b"{" + b" " * HTTP_BODY_MAX_BYTES_DEFAULT + b"}"
    with api_server.client() as client:
        response = client.post("/api/repos", content=body,
                               headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json() == {"detail": f"request body of {len(body)} bytes exceeds the maximum "
                                         f"of {HTTP_BODY_MAX_BYTES_DEFAULT} bytes"}


def test_streamed_body_too_large(api_server: ApiServer) -> None:
    def chunks():
        for _ in range(40):
            yield b" " * 65536

    with api_server.client() as client:
        response = client.post("/api/repos", content=chunks(),
                               headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert response.json() == {"detail": f"request body exceeds the maximum of "
                                         f"{HTTP_BODY_MAX_BYTES_DEFAULT} bytes"}


def test_webhook_body_limit_is_larger(api_server: ApiServer) -> None:
    body = b"{" + b" " * (2 * HTTP_BODY_MAX_BYTES_DEFAULT) + b"}"
    with api_server.client(token=None) as client:
        accepted = client.post("/hooks/github", content=body)
        rejected = client.post("/hooks/github", content=b" " * (WEBHOOK_BODY_MAX_BYTES + 1))

    # Past the size check, the delivery is rejected for its missing event header.
    assert accepted.status_code == 400
    assert accepted.json()["detail"] == "missing X-GitHub-Event header"
    assert rejected.status_code == 413
    assert rejected.json()["detail"] == (f"request body of {WEBHOOK_BODY_MAX_BYTES + 1} bytes "
                                         f"exceeds the maximum of {WEBHOOK_BODY_MAX_BYTES} bytes")


def test_slow_body_times_out(api_server: ApiServer) -> None:
    head = (b"POST /api/repos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + api_server.admin_token.encode() + b"\r\n"
            b"Content-Length: 100\r\n\r\n{")

    response, seconds = _raw_request(api_server, head)

    assert response.startswith(b"HTTP/1.1 408 ")
    assert response.endswith(b'{"detail":"request body not received within 1 seconds"}')
    assert BODY_TIMEOUT_SECONDS <= seconds < BODY_TIMEOUT_SECONDS + 5


def test_server_survives_limits(api_server: ApiServer) -> None:
    with api_server.client() as client:
        client.get("/healthz", headers={"X-Padding": "a" * 20000})
        client.post("/api/repos", content=b" " * (2 * HTTP_BODY_MAX_BYTES_DEFAULT))
        response = client.get("/healthz")

    assert response.status_code == 200


@pytest.mark.parametrize(("path", "field", "maximum"), [
    ("/api/runs?limit=1000000", "limit", 200),
    ("/api/repos?limit=501", "limit", 500),
    ("/api/repos?offset=1000001", "offset", 1000000),
    ("/api/search?q=x&limit=100000", "limit", None),
])
def test_page_size_capped(api_server: ApiServer, path: str, field: str, maximum: int | None) -> None:
    with api_server.client() as client:
        response = client.get(path)

    assert response.status_code == 422
    assert response.json()["field"] == field
    if maximum is not None:
        assert response.json()["detail"] == f"{field}: Input should be less than or equal to {maximum}"
