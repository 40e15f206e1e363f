"""The log API behind the dashboard's viewer: tails, line windows, HTML, find and raw download."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg

from tests.support import factories
from tests.support.api import ApiServer
from tests.support.dashboard import wait_for_log_partitions
from tests.support.deploys import acquire, deploy_entry, lock_connection
from tests.support.logs import read_events, store_lines
from tests.support.receiver import free_port
from tests.support.workers import scrubbed_environment


def job_with_lines(db: psycopg.Connection, lines: list[str]) -> dict:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    store_lines(db, plan, lines)
    return plan


def test_tail_returns_last_lines_before_a_seq(api_server: ApiServer, db: psycopg.Connection) -> None:
    plan = job_with_lines(db, [f"line {n}" for n in range(1, 101)])

    with api_server.client() as client:
        tail = client.get(f"/api/jobs/{plan['job_id']}/logs", params={"tail": 3}).json()
        earlier = client.get(f"/api/jobs/{plan['job_id']}/logs",
                             params={"tail": 2, "before": 50}).json()
        window = client.get(f"/api/jobs/{plan['job_id']}/logs",
                            params={"after": 10, "limit": 2}).json()
        misuse = client.get(f"/api/jobs/{plan['job_id']}/logs", params={"before": 5})

    assert [line["text"] for line in tail["lines"]] == ["line 98", "line 99", "line 100"]
    assert tail["last_seq"] == 100
    assert tail["next_after"] == 100
    assert tail["complete"] is False
    assert "html" not in tail["lines"][0]
    assert [line["seq"] for line in earlier["lines"]] == [48, 49]
    assert [line["seq"] for line in window["lines"]] == [11, 12]
    assert window["last_seq"] == 100
    assert misuse.status_code == 422
    assert misuse.json()["field"] == "before"


SEQ_MAX = 2**31 - 1


def test_seq_beyond_integer_is_422(api_server: ApiServer, db: psycopg.Connection) -> None:
    # Log line seq numbers are PostgreSQL integers. A larger value that reached
    # a query became a 422 without a field, or an SSE stream that broke off.
    plan = job_with_lines(db, ["one", "two"])
    logs = f"/api/jobs/{plan['job_id']}/logs"
    cases = [
        (logs, {"after": SEQ_MAX + 1}, {}, "after"),
        (logs, {"after": SEQ_MAX + 1}, {"Accept": "text/event-stream"}, "after"),
        (logs, {"tail": 5, "before": SEQ_MAX + 2}, {}, "before"),
        (f"{logs}/find", {"q": "one", "start": SEQ_MAX + 1}, {}, "start"),
        (logs, {}, {"Accept": "text/event-stream", "Last-Event-ID": str(SEQ_MAX + 1)},
         "Last-Event-ID"),
        (logs, {}, {"Accept": "text/event-stream", "Last-Event-ID": "9" * 5000}, "Last-Event-ID"),
    ]

    with api_server.client() as client:
        for path, params, headers, field in cases:
            response = client.get(path, params=params, headers=headers)
            assert response.status_code == 422, (params, headers, response.text)
            assert response.json()["field"] == field, response.text
        # Latin-1 superscript two: str.isdigit() accepts it, int() does not.
        superscript = client.get(logs, headers={"Accept": "text/event-stream",
                                                "Last-Event-ID": b"\xb2"})
        at_max = client.get(logs, params={"after": SEQ_MAX}).json()
        tail_all = client.get(logs, params={"tail": 5, "before": SEQ_MAX + 1}).json()

    assert superscript.status_code == 422, superscript.text
    assert superscript.json()["field"] == "Last-Event-ID"
    assert at_max["lines"] == []
    assert [line["text"] for line in tail_all["lines"]] == ["one", "two"]


def test_html_lines_are_escaped_with_colours(api_server: ApiServer, db: psycopg.Connection) -> None:
    plan = job_with_lines(db, ["<b>plain</b>", "\x1b[32mgreen & <i>\x1b[0m", "\x1b]0;title\x07x"])

    with api_server.client() as client:
        page = client.get(f"/api/jobs/{plan['job_id']}/logs", params={"html": "true"}).json()
        events = read_events(client, plan["job_id"], params={"html": "true"}, stop_after=3)

    assert [line["html"] for line in page["lines"]] == [
        "&lt;b&gt;plain&lt;/b&gt;",
        '<span style="color: #00aa00">green &amp; &lt;i&gt;</span>',
        "x",
    ]
    assert [data["html"] for _, _, data in events] == [line["html"] for line in page["lines"]]
    assert [data["text"] for _, _, data in events] == ["<b>plain</b>", "\x1b[32mgreen & <i>\x1b[0m",
                                                      "\x1b]0;title\x07x"]


def test_find_walks_matches_in_both_directions(api_server: ApiServer,
                                               db: psycopg.Connection) -> None:
    lines = [f"step {n}" for n in range(1, 301)]
    lines[9] = "ERROR: first"
    lines[199] = "an Error again"
    plan = job_with_lines(db, lines)
    path = f"/api/jobs/{plan['job_id']}/logs/find"

    with api_server.client() as client:
        first = client.get(path, params={"q": "error"}).json()
        second = client.get(path, params={"q": "error", "start": 10}).json()
        none_after = client.get(path, params={"q": "error", "start": 200}).json()
        last = client.get(path, params={"q": "ERROR", "direction": "previous"}).json()
        before = client.get(path, params={"q": "error", "direction": "previous", "start": 200}).json()
        empty = client.get(path, params={"q": ""})

    assert first == {"job_id": plan["job_id"], "attempt": 1, "seq": 10, "continue_from": None}
    assert second["seq"] == 200
    assert none_after["seq"] is None
    assert none_after["continue_from"] is None
    assert last["seq"] == 200
    assert before["seq"] == 10
    assert empty.status_code == 422


def test_raw_download_is_plain_text(api_server: ApiServer, db: psycopg.Connection) -> None:
    lines = [f"line {n}" for n in range(1, 25_001)]
    lines[0] = "\x1b[1;31mbold red\x1b[0m <tag>"
    plan = job_with_lines(db, lines)

    with api_server.client() as client:
        response = client.get(f"/api/jobs/{plan['job_id']}/logs/raw")
        missing = client.get("/api/jobs/999999/logs/raw")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="job-{plan["job_id"]}-attempt-1.log"')
    text_lines = response.text.split("\n")
    assert text_lines[0] == "bold red <tag>"
    assert text_lines[1:25_000] == lines[1:]
    assert text_lines[25_000] == ""
    assert len(text_lines) == 25_001
    assert missing.status_code == 404


def test_cli_logs_follows_port_setting(api_server: ApiServer, db: psycopg.Connection,
                                       tmp_path: Path) -> None:
    plan = job_with_lines(db, ["hello from the log"])
    port = api_server.url.rsplit(":", 1)[1]
    (tmp_path / "admin-token").write_text(api_server.admin_token + "\n")
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(tmp_path), "MINIJENKIN_PORT": port}

    found = subprocess.run([sys.executable, "-m", "minijenkin", "logs", str(plan["job_id"])],
                           env=env, capture_output=True, text=True, timeout=60)
    unreachable = subprocess.run(
        [sys.executable, "-m", "minijenkin", "logs", str(plan["job_id"])],
        env={**env, "MINIJENKIN_PORT": str(free_port())}, capture_output=True, text=True, timeout=60)

    assert found.returncode == 0, found.stderr
    assert found.stdout == "hello from the log\n"
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: cannot reach the API at http://127.0.0.1:")
    assert "set MINIJENKIN_API_URL" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_stream_waits_while_deploy_awaits_approval(
    api_server: ApiServer, db: psycopg.Connection, database_url: str,
) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    worker_id = factories.register_worker(db)
    factories.start_run_with_graph(db, factories.create_repo(db), worker_id,
                                   [deploy_entry("deploy")])
    [job] = factories.claim(db, worker_id, limit=1)
    with lock_connection(database_url) as conn:
        assert acquire(conn, job)["outcome"] == "awaiting_approval"
    events: list[tuple[str, str | None, dict]] = []

    with api_server.client() as client:
        reader = threading.Thread(target=lambda: events.extend(read_events(client, job["job_id"])))
        reader.start()
        # The parked job has no attempt yet, so its stream must wait for one
        # rather than end at once.
        reader.join(timeout=2)
        still_open = reader.is_alive()
        rejected = client.post(f"/api/jobs/{job['job_id']}/approve", params={"reject": "true"})
        reader.join(timeout=30)

    assert still_open
    assert rejected.status_code == 200
    assert not reader.is_alive()
    assert events == [("end", None, {
        "job_id": job["job_id"], "attempt": 0, "status": "skipped", "exit_code": None,
        "reason": "deploy to production rejected by MINIJENKIN_ADMIN_TOKEN"})]
