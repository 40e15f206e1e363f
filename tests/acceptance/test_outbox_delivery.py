"""Delivering notifications to receivers on 127.0.0.1: formats, signatures and faults.

The dispatcher runs inside the API server unless a test starts separate
`minijenkin dispatcher` processes. Timings are shortened (poll 0.2 s,
backoff 0.2 s to 1 s, request timeout 2 s) so that retries happen quickly.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from minijenkin.config import Settings
from minijenkin.crypto import load_keyring
from minijenkin.notify.render import discord_body, slack_body, webhook_body
from minijenkin.notify.targets import url_purpose
from tests.support.api import ApiServer
from tests.support.dispatchers import DispatcherProcess
from tests.support.factories import create_repo, register_worker
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.notify import close_run, outbox_rows
from tests.support.receiver import Received, Receiver, Reply, free_port
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

PUBLIC_URL = "https://ci.example.com"
HOOK_SECRET = "receiver-hmac-secret"
FAST_NOTIFY = {
    "public_url": PUBLIC_URL,
    "notify_poll_seconds": 0.2,
    "notify_timeout_seconds": 2.0,
    "notify_backoff_seconds": 0.2,
    "notify_backoff_max_seconds": 1.0,
    "notify_dead_letter_seconds": 600.0,
}


@pytest.fixture
def start_api(settings: Settings, database_url: str) -> Iterator[Callable[..., ApiServer]]:
    """Start API servers with fast notification timings (and `overrides`); stopped at teardown."""
    servers: list[ApiServer] = []

    def start(maintenance: bool = True, **overrides: Any) -> ApiServer:
        server_settings = settings.model_copy(update={**FAST_NOTIFY, **overrides})
        server = ApiServer(server_settings, database_url, maintenance=maintenance).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Receiver]]:
    receivers: list[Receiver] = []

    def start(responder: Callable[[Received], Reply] | None = None, port: int = 0) -> Receiver:
        receiver = Receiver(responder, port).start()
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.stop()


@pytest.fixture
def start_dispatcher(database_url: str, data_dir: Path,
                     tmp_path: Path) -> Iterator[Callable[..., DispatcherProcess]]:
    started: list[DispatcherProcess] = []

    def start(**env: str) -> DispatcherProcess:
        log_path = tmp_path / f"dispatcher-{len(started)}.log"
        dispatcher = DispatcherProcess(database_url, data_dir, log_path, **env).start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop(timeout=15)


def add_target(api: ApiServer, repo_id: int, **body: Any) -> dict[str, Any]:
    with api.client() as client:
        response = client.post(f"/api/repos/{repo_id}/notifications", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_states(db: psycopg.Connection, state: str, count: int,
                    timeout: float = 30) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        rows = outbox_rows(db)
        done = [row for row in rows if row["state"] == state]
        return rows if len(done) == count else None

    return wait_for(check, timeout=timeout, interval=0.1, message=f"{count} deliveries {state}")


def test_webhook_delivery_signed_with_key(start_api: Callable[..., ApiServer], db: psycopg.Connection,
                                          start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver()
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/ci-hook", secret=HOOK_SECRET)

    run_id = close_run(db, repo_id, register_worker(db), "failed")

    [row] = wait_for_states(db, "delivered", 1)
    [request] = receiver.received()
    expected = hmac.new(HOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.path == "/ci-hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-minijenkin-signature"] == f"sha256={expected}"
    assert request.headers["idempotency-key"] == str(row["idempotency_key"])
    assert request.headers["x-minijenkin-event"] == "run.failed"
    assert request.headers["x-minijenkin-delivery"] == str(row["id"])
    body = json.loads(request.body)
    assert body == webhook_body(row["payload"], delivery_id=row["id"],
                                idempotency_key=str(row["idempotency_key"]),
                                run_url=f"{PUBLIC_URL}/runs/{run_id}")
    assert body["url"] == f"{PUBLIC_URL}/runs/{run_id}"
    assert body["run"]["status"] == "failed"
    assert [job["key"] for job in body["jobs"]] == ["build"]
    assert (row["attempts"], row["last_status_code"], row["last_error"]) == (1, 200, None)


def test_slack_and_discord_bodies_delivered(start_api: Callable[..., ApiServer],
                                            db: psycopg.Connection,
                                            start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(lambda request: Reply(204, b""))
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="slack", url=f"{receiver.url}/slack")
    add_target(api, repo_id, kind="discord", url=f"{receiver.url}/discord")

    run_id = close_run(db, repo_id, register_worker(db))

    rows = wait_for_states(db, "delivered", 2)
    by_path = {request.path: request for request in receiver.received()}
    run_url = f"{PUBLIC_URL}/runs/{run_id}"
    assert set(by_path) == {"/slack", "/discord"}
    assert json.loads(by_path["/slack"].body) == slack_body(rows[0]["payload"], run_url)
    assert json.loads(by_path["/discord"].body) == discord_body(rows[1]["payload"], run_url)
    assert json.loads(by_path["/slack"].body)["text"] == f"acme/web #{run_id} succeeded on main"
    assert "x-minijenkin-signature" not in by_path["/slack"].headers


@pytest.mark.slow
def test_receiver_down_30s_then_all_delivered(start_api: Callable[..., ApiServer],
                                               db: psycopg.Connection,
                                               start_receiver: Callable[..., Receiver]) -> None:
    port = free_port()
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"http://127.0.0.1:{port}/hook")
    worker_id = register_worker(db)
    outage_ends = time.monotonic() + 30

    for index in range(5):
        close_run(db, repo_id, worker_id, commit=f"{index:x}" * 40)
    wait_for(lambda: all(row["attempts"] >= 3 for row in outbox_rows(db)), timeout=25,
             message="three failed attempts per delivery")
    # The outage lasts 30 s whatever the retries do.
    time.sleep(max(0.0, outage_ends - time.monotonic()))
    during = outbox_rows(db)
    receiver = start_receiver(port=port)

    assert [row["state"] for row in during if row["state"] in ("delivered", "dead")] == []
    assert all(row["last_error"].startswith("ConnectError") for row in during)
    rows = wait_for_states(db, "delivered", 5)
    keys = collections.Counter(request.headers["idempotency-key"] for request in receiver.received())
    assert set(keys) == {str(row["idempotency_key"]) for row in rows}
    assert all(row["attempts"] >= 4 for row in rows)


def test_429_retry_after_honoured(start_api: Callable[..., ApiServer], db: psycopg.Connection,
                                  start_receiver: Callable[..., Receiver]) -> None:
    def responder(request: Received) -> Reply:
        if len(receiver.received()) == 1:
            return Reply(429, b"rate limited", {"Retry-After": "2"})
        return Reply(200)

    receiver = start_receiver(responder)
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="slack", url=f"{receiver.url}/slack")

    close_run(db, repo_id, register_worker(db))

    [row] = wait_for_states(db, "delivered", 1)
    first, second = receiver.received()
    assert second.at - first.at >= 2.0
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert row["attempts"] == 2


def test_429_non_ascii_retry_after_uses_backoff(start_api: Callable[..., ApiServer],
                                               db: psycopg.Connection,
                                               start_receiver: Callable[..., Receiver],
                                               caplog: pytest.LogCaptureFixture) -> None:
    # "\u00b2" (superscript two) passes str.isdigit() but is not a delay-seconds value.
    def responder(request: Received) -> Reply:
        if len(receiver.received()) == 1:
            return Reply(429, b"rate limited", {"Retry-After": "\u00b2"})
        return Reply(200)

    receiver = start_receiver(responder)
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/limited")

    with caplog.at_level(logging.INFO, logger="minijenkin.notify.dispatcher"):
        close_run(db, repo_id, register_worker(db))
        [row] = wait_for_states(db, "delivered", 1)

    actions = [getattr(record, "action", None) for record in caplog.records]
    retries = [(record.status_code, record.retry_after) for record in caplog.records
               if getattr(record, "action", None) == "delivery_retry"]
    first, second = receiver.received()
    assert "delivery_error" not in actions
    assert retries == [(429, None)]
    # The 0.2 s to 1 s backoff, not the 9 s lease that an attempt which raised leaves behind.
    assert second.at - first.at < 5.0
    assert row["attempts"] == 2


def test_500s_retried_then_delivered(start_api: Callable[..., ApiServer], db: psycopg.Connection,
                                     start_receiver: Callable[..., Receiver]) -> None:
    def responder(request: Received) -> Reply:
        if len(receiver.received()) <= 3:
            return Reply(500, b"internal error")
        return Reply(200)

    receiver = start_receiver(responder)
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="discord", url=f"{receiver.url}/discord")

    close_run(db, repo_id, register_worker(db))

    [row] = wait_for_states(db, "delivered", 1)
    requests = receiver.received()
    assert len(requests) == 4
    assert {request.headers["idempotency-key"] for request in requests} == {
        str(row["idempotency_key"])}
    assert len({request.body for request in requests}) == 1
    # Backoff with jitter: each retry waits at least half the 0.2 s base.
    gaps = [later.at - earlier.at for earlier, later in zip(requests, requests[1:], strict=False)]
    assert all(gap >= 0.1 for gap in gaps), gaps
    assert row["attempts"] == 4


def test_slow_receiver_times_out_then_retried(start_api: Callable[..., ApiServer],
                                              db: psycopg.Connection,
                                              start_receiver: Callable[..., Receiver],
                                              caplog: pytest.LogCaptureFixture) -> None:
    def responder(request: Received) -> Reply:
        # The first response comes after the 2 s request timeout.
        return Reply(200, delay=4.0 if len(receiver.received()) == 1 else 0.0)

    receiver = start_receiver(responder)
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/slow")

    with caplog.at_level(logging.INFO, logger="minijenkin.notify.dispatcher"):
        close_run(db, repo_id, register_worker(db))
        [row] = wait_for_states(db, "delivered", 1)

    retries = [(record.error, record.status_code) for record in caplog.records
               if getattr(record, "action", None) == "delivery_retry"]
    first, second = receiver.received()
    assert retries == [("timed out after 2 s", None)]
    assert second.at - first.at >= 2.0
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert row["attempts"] == 2


def test_target_deleted_mid_delivery_not_resent(start_api: Callable[..., ApiServer],
                                                db: psycopg.Connection,
                                                start_receiver: Callable[..., Receiver],
                                                caplog: pytest.LogCaptureFixture) -> None:
    # The receiver returns 503 after 1 s, so the attempt is in flight when the target is deleted.
    receiver = start_receiver(lambda request: Reply(503, delay=1.0))
    api = start_api()
    repo_id = create_repo(db)
    target = add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/busy")

    with caplog.at_level(logging.INFO, logger="minijenkin.notify.dispatcher"):
        close_run(db, repo_id, register_worker(db))
        receiver.wait_for_requests(1)
        with api.client() as client:
            deleted = client.delete(f"/api/repos/{repo_id}/notifications/{target['id']}")
        stale = wait_for(lambda: [record for record in caplog.records
                                  if getattr(record, "action", None) == "delivery_stale"],
                         timeout=10, message="the outcome of the deleted delivery")
        time.sleep(1.0)

    assert deleted.status_code == 204, deleted.text
    assert outbox_rows(db) == []
    assert [record.getMessage() for record in stale] == [
        "delivery outcome ignored: the delivery was deleted with its target, or another "
        "dispatcher took over the row after this one's lease ended"]
    assert len(receiver.received()) == 1


def test_permanent_404_dead_lettered(start_api: Callable[..., ApiServer], db: psycopg.Connection,
                                     start_receiver: Callable[..., Receiver]) -> None:
    answer = {"status": 404}

    def responder(request: Received) -> Reply:
        return Reply(answer["status"], b"no such hook" if answer["status"] == 404 else b"ok")

    receiver = start_receiver(responder)
    api = start_api()
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/gone")

    close_run(db, repo_id, register_worker(db))

    [row] = wait_for_states(db, "dead", 1)
    assert (row["last_status_code"], row["last_error"], row["attempts"]) == (
        404, "HTTP 404: no such hook", 1)
    assert row["dead_at"] is not None
    assert len(receiver.received()) == 1
    with api.client() as client:
        dead = client.get("/api/deliveries", params={"state": "dead"}).json()["deliveries"]
        pending = client.get("/api/deliveries", params={"state": "pending"}).json()["deliveries"]
        answer["status"] = 200
        redelivered = client.post(f"/api/deliveries/{row['id']}/redeliver")
    assert [(item["id"], item["state"], item["last_status_code"], item["last_error"])
            for item in dead] == [(row["id"], "dead", 404, "HTTP 404: no such hook")]
    assert pending == []
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["id"] == row["id"]
    [again] = wait_for_states(db, "delivered", 1)
    first, second = receiver.received()
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == str(
        again["idempotency_key"])


def test_stored_invalid_url_dead_lettered(start_api: Callable[..., ApiServer],
                                          db: psycopg.Connection, settings: Settings) -> None:
    start_api()  # its dispatcher delivers the row
    repo_id = create_repo(db)
    # The API rejects this URL, but a target stored before that check may have it.
    target_id = db.execute(
        "INSERT INTO notification_targets (repo_id, kind, url_encrypted, url_display, events) "
        "VALUES (%s, 'webhook', 'placeholder', 'https://xn--zz.example', %s) RETURNING id",
        (repo_id, ["run.succeeded"])).fetchone()["id"]
    keyring = load_keyring(settings.secret_key, settings.data_dir)
    url_encrypted = keyring.encrypt("https://xn--zz.example/hook", purpose=url_purpose(target_id))
    db.execute("UPDATE notification_targets SET url_encrypted = %s WHERE id = %s",
               (url_encrypted, target_id))

    close_run(db, repo_id, register_worker(db))

    [row] = wait_for_states(db, "dead", 1)
    assert row["attempts"] == 1
    assert row["last_status_code"] is None
    assert row["last_error"].startswith("invalid URL: "), row["last_error"]


def test_commit_statuses_posted_to_forges(start_api: Callable[..., ApiServer],
                                          db: psycopg.Connection,
                                          start_receiver: Callable[..., Receiver]) -> None:
    receiver = start_receiver(lambda request: Reply(201, b'{"id": 1}',
                                                    {"Content-Type": "application/json"}))
    api = start_api(github_api_url=f"{receiver.url}/github-api")
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="github-status", secret="ghp_statustoken1")
    add_target(api, repo_id, kind="gitlab-status", url=f"{receiver.url}/gitlab",
               secret="glpat-statustoken", project="group/sub/web", context="ci/minijenkin")
    commit = "c" * 40

    run_id = close_run(db, repo_id, register_worker(db), "failed", commit=commit,
                       ref="refs/heads/feature/x")

    wait_for_states(db, "delivered", 2)
    by_path = {request.path: request for request in receiver.received()}
    assert set(by_path) == {f"/github-api/repos/acme/web/statuses/{commit}",
                            f"/gitlab/api/v4/projects/group%2Fsub%2Fweb/statuses/{commit}"}
    github = by_path[f"/github-api/repos/acme/web/statuses/{commit}"]
    assert github.method == "POST"
    assert github.headers["authorization"] == "Bearer ghp_statustoken1"
    assert github.headers["accept"] == "application/vnd.github+json"
    assert github.headers["x-github-api-version"] == "2022-11-28"
    assert github.headers["user-agent"].startswith("Mini-Jenkin/")
    assert json.loads(github.body) == {
        "state": "failure", "target_url": f"{PUBLIC_URL}/runs/{run_id}",
        "description": f"Run #{run_id} failed: job build failed", "context": "minijenkin"}
    gitlab = by_path[f"/gitlab/api/v4/projects/group%2Fsub%2Fweb/statuses/{commit}"]
    assert gitlab.headers["private-token"] == "glpat-statustoken"
    assert gitlab.headers["content-type"] == "application/json"
    assert json.loads(gitlab.body) == {
        "state": "failed", "ref": "feature/x", "name": "ci/minijenkin",
        "target_url": f"{PUBLIC_URL}/runs/{run_id}",
        "description": f"Run #{run_id} failed: job build failed"}


def test_two_dispatchers_share_the_outbox(start_api: Callable[..., ApiServer],
                                          db: psycopg.Connection,
                                          start_receiver: Callable[..., Receiver],
                                          start_dispatcher: Callable[..., DispatcherProcess]) -> None:
    receiver = start_receiver(lambda request: Reply(200, delay=0.2))
    api = start_api(maintenance=False)
    repo_id = create_repo(db)
    for index in range(4):
        add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/hook-{index}")
    dispatchers = [start_dispatcher(MINIJENKIN_NOTIFY_CONCURRENCY="1") for _ in range(2)]
    for dispatcher in dispatchers:
        wait_for(lambda d=dispatcher: "dispatcher started" in d.output(), timeout=30,
                 message="the dispatcher to start")
    worker_id = register_worker(db)

    for index in range(5):
        close_run(db, repo_id, worker_id, commit=f"{index:x}" * 40)

    rows = wait_for_states(db, "delivered", 20, timeout=60)
    keys = collections.Counter(request.headers["idempotency-key"] for request in receiver.received())
    assert sorted(keys.values()) == [1] * 20
    assert set(keys) == {str(row["idempotency_key"]) for row in rows}
    names = {f"{socket.gethostname()}:{dispatcher.process.pid}" for dispatcher in dispatchers}
    assert {row["dispatcher"] for row in rows} == names


def test_killed_dispatcher_redelivers_same_key(start_api: Callable[..., ApiServer],
                                               db: psycopg.Connection,
                                               start_receiver: Callable[..., Receiver],
                                               start_dispatcher: Callable[..., DispatcherProcess]) -> None:
    release = threading.Event()

    def responder(request: Received) -> Reply:
        if len(receiver.received()) == 1:
            release.wait(timeout=60)  # hold the first request until its sender is gone
        return Reply(200)

    receiver = start_receiver(responder)
    api = start_api(maintenance=False)
    repo_id = create_repo(db)
    add_target(api, repo_id, kind="webhook", url=f"{receiver.url}/hook", secret=HOOK_SECRET)
    first_dispatcher = start_dispatcher()

    close_run(db, repo_id, register_worker(db))
    receiver.wait_for_requests(1)
    first_dispatcher.kill()
    [in_flight] = outbox_rows(db)
    second_dispatcher = start_dispatcher()

    [row] = wait_for_states(db, "delivered", 1, timeout=60)
    release.set()
    first, second = receiver.received()
    assert in_flight["state"] == "delivering"
    assert in_flight["dispatcher"] == f"{socket.gethostname()}:{first_dispatcher.process.pid}"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == str(
        row["idempotency_key"])
    assert first.body == second.body
    assert first.headers["x-minijenkin-signature"] == second.headers["x-minijenkin-signature"]
    assert row["dispatcher"] == f"{socket.gethostname()}:{second_dispatcher.process.pid}"
    assert row["attempts"] == 2


def test_pushed_run_notifies_webhook(start_api: Callable[..., ApiServer], db: psycopg.Connection,
                                     start_receiver: Callable[..., Receiver], git_repo: GitRepo,
                                     start_worker: Callable[..., WorkerProcess]) -> None:
    receiver = start_receiver()
    api = start_api()
    commit = git_repo.commit({".minijenkin.yml": "jobs:\n  hello:\n    steps:\n      - run: echo hi\n"})
    with api.client() as client:
        repo = client.post("/api/repos", json={"name": "acme/push", "url": git_repo.url,
                                               "webhook_secret": "push-secret"}).json()
    add_target(api, repo["id"], kind="webhook", url=f"{receiver.url}/hook",
               events=["run.succeeded"])
    start_worker()

    body = encode(push_payload(full_name="acme/push", clone_url=git_repo.url, after=commit,
                               message="Say hi"))
    with httpx.Client(base_url=api.url, timeout=30) as client:
        pushed = client.post("/hooks/github", content=body,
                             headers=signed_headers("push-secret", body))

    assert pushed.status_code == 201, pushed.text
    [request] = receiver.wait_for_requests(1, timeout=90)
    delivered = json.loads(request.body)
    assert delivered["event"] == "run.succeeded"
    assert delivered["run"]["id"] == pushed.json()["run_id"]
    assert delivered["commit"]["sha"] == commit
    assert delivered["commit"]["message"] == "Say hi"
    assert [(job["key"], job["status"]) for job in delivered["jobs"]] == [("hello", "succeeded")]
