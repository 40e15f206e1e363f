"""Dashboard pages over HTTP: rendering, filters, paging, escaping and the live event stream."""

from __future__ import annotations

import html
import json
import re

import psycopg
from httpx_sse import connect_sse

from tests.support import factories
from tests.support.api import ApiServer
from tests.support.dashboard import create_run, wait_for_log_partitions
from tests.support.deploys import acquire, deploy_entry, lock_connection
from tests.support.logs import store_lines
from tests.support.waiting import wait_for

RUN_ROW = re.compile(r'<tr data-run-id="(\d+)">')


def listed_runs(page: str) -> list[int]:
    return [int(run_id) for run_id in RUN_ROW.findall(page)]


def test_runs_page_filters_by_repository_branch_status_trigger(
    api_server: ApiServer, db: psycopg.Connection,
) -> None:
    web = factories.create_repo(db, "acme/web")
    api = factories.create_repo(db, "acme/api")
    main_push = create_run(db, web)
    feature_push = create_run(db, web, ref="refs/heads/feature/x")
    manual = create_run(db, web, event="manual")
    other_repo = create_run(db, api)
    db.execute("UPDATE pipeline_runs SET status = 'failed' WHERE id = %s", (feature_push,))

    with api_server.client() as client:
        everything = client.get("/")
        by_repo = client.get("/", params={"repo": "acme/api"})
        by_branch = client.get("/", params={"branch": "feature/x"})
        by_status = client.get("/", params={"status": "failed"})
        by_trigger = client.get("/", params={"trigger": "manual"})
        empty_filters = client.get("/", params={"repo": "", "branch": "", "status": "",
                                                "trigger": ""})
        bad_status = client.get("/", params={"status": "exploded"})

    assert everything.status_code == 200
    assert everything.headers["content-type"] == "text/html; charset=utf-8"
    assert listed_runs(everything.text) == [other_repo, manual, feature_push, main_push]
    assert listed_runs(by_repo.text) == [other_repo]
    assert listed_runs(by_branch.text) == [feature_push]
    assert listed_runs(by_status.text) == [feature_push]
    assert listed_runs(by_trigger.text) == [manual]
    assert listed_runs(empty_filters.text) == [other_repo, manual, feature_push, main_push]
    assert bad_status.status_code == 422
    assert "status: invalid value &#39;exploded&#39;" in bad_status.text


def test_runs_page_pages_older_runs(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    created = [create_run(db, repo_id) for _ in range(53)]

    with api_server.client() as client:
        first = client.get("/", params={"repo": "acme/web"})
        older = re.search(r'<a rel="next" href="([^"]+)">', first.text)
        assert older is not None
        second = client.get(html.unescape(older.group(1)))

    newest_first = list(reversed(created))
    assert listed_runs(first.text) == newest_first[:50]
    assert html.unescape(older.group(1)) == f"/?repo=acme%2Fweb&before={newest_first[49]}"
    assert listed_runs(second.text) == newest_first[50:]
    assert 'rel="next"' not in second.text


def test_pages_render_event_text_as_text(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    message = "<script>alert('message')</script> & more"
    branch = "refs/heads/<img src=x onerror=alert(1)>"
    run_id = create_run(db, repo_id, message=message, ref=branch, author="<b>bold</b>",
                        trigger={"sender": "<i>sender</i>", "source": "webhook"})

    with api_server.client() as client:
        listing = client.get("/").text
        run_page = client.get(f"/runs/{run_id}").text

    for page in (listing, run_page):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>bold</b>" not in page
        assert "&lt;script&gt;alert(&#39;message&#39;)&lt;/script&gt; &amp; more" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;i&gt;sender&lt;/i&gt;" in run_page
    assert "<i>sender</i>" not in run_page


def test_pages_send_security_headers(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        response = client.get("/")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_run_page_draws_graph_with_matrix_group(api_server: ApiServer,
                                                db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    matrix = {"strategy": {"job": "test", "fail_fast": True, "max_parallel": None}}
    graph = [
        factories.job_entry("build"),
        factories.job_entry("test (3.11)", ["build"], name="test (3.11)",
                            spec={"steps": [], **matrix}),
        factories.job_entry("test (3.12)", ["build"], name="test (3.12)",
                            spec={"steps": [], **matrix}),
        deploy_entry("deploy", needs=["test (3.11)", "test (3.12)"]),
    ]
    run_id = factories.start_run_with_graph(db, repo_id, worker, graph)

    with api_server.client() as client:
        page = client.get(f"/runs/{run_id}").text

    svg = page[page.index('<svg class="graph"'):page.index("</svg>")]
    assert re.findall(r'data-job-key="([^"]+)"', svg) == ["plan", "build", "test (3.11)",
                                                          "test (3.12)", "deploy"]
    assert re.findall(r'data-matrix="([^"]+)"', svg) == ["test"]
    assert "0/2 succeeded" in svg
    ids = {row["key"]: row["id"] for row in db.execute(
        "SELECT key, id FROM jobs WHERE run_id = %s", (run_id,)).fetchall()}
    assert sorted(re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', svg)) == sorted([
        (f"job:{ids['plan']}", f"job:{ids['build']}"),
        (f"job:{ids['build']}", "matrix:test"),
        ("matrix:test", f"job:{ids['deploy']}"),
    ])
    statuses = dict(re.findall(r'data-job-key="([^"]+)" data-status="([^"]+)"', svg))
    assert statuses == {"plan": "succeeded", "build": "queued", "test (3.11)": "pending",
                        "test (3.12)": "pending", "deploy": "pending"}
    assert "→ production" in svg
    assert '<span class="env">→ production</span>' in page


def test_job_page_embeds_the_log_tail(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    store_lines(db, plan, [f"line {n}" for n in range(1, 251)] + ["\x1b[31m<script>red</script>\x1b[0m"])

    with api_server.client() as client:
        page = client.get(f"/jobs/{plan['job_id']}").text

    data = json.loads(html.unescape(re.search(
        r'<script type="application/json" id="log-data">(.*?)</script>', page, re.S).group(1)))
    assert data["job_id"] == plan["job_id"]
    assert data["attempt"] == 1
    assert data["last_seq"] == 251
    assert data["finished"] is False
    assert [line["seq"] for line in data["lines"]] == list(range(52, 252))
    assert data["lines"][0]["html"] == "line 52"
    assert data["lines"][-1]["html"] == (
        '<span style="color: #aa0000">&lt;script&gt;red&lt;/script&gt;</span>')
    assert "<script>red" not in page


def test_page_events_announce_changes_of_the_run(api_server: ApiServer,
                                                 db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    run_id = factories.create_run(db, repo_id)

    with api_server.client() as client, connect_sse(
            client, "GET", "/ui/events", params={"run": run_id}) as source:
        assert source.response.status_code == 200
        factories.claim(db, worker)
        event = next(event for event in source.iter_sse() if event.event == "changed")

    assert event.data == str(run_id)


def test_page_events_announce_new_runs_to_the_runs_list(api_server: ApiServer,
                                                        db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)

    with api_server.client() as client, connect_sse(client, "GET", "/ui/events") as source:
        assert source.response.status_code == 200
        run_id = factories.create_run(db, repo_id)
        event = next(event for event in source.iter_sse() if event.event == "changed")

    assert event.data == str(run_id)


def test_unknown_run_is_an_html_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.get("/runs/999999")
        job = client.get("/jobs/999999")

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "run 999999 does not exist" in response.text
    assert job.status_code == 404
    assert "job 999999 does not exist" in job.text


def test_workers_page_shows_labels_heartbeat_and_running_jobs(
    api_server: ApiServer, db: psycopg.Connection,
) -> None:
    repo_id = factories.create_repo(db)
    busy = factories.register_worker(db, ["linux", "<gpu>"])
    factories.register_worker(db, ["arm"])
    run_id = factories.create_run(db, repo_id)
    plan = factories.claim(db, busy)[0]
    gone = factories.register_worker(db, ["old"])
    db.execute("SELECT mj_worker_stop_v1(%s)", (gone,))

    with api_server.client() as client:
        page = client.get("/workers").text

    live_table = page[page.index('id="workers-table"'):page.index("</table>")]
    assert live_table.count("<tr data-worker=") == 2
    assert '<span class="label">&lt;gpu&gt;</span>' in live_table
    assert f'<a href="/jobs/{plan["job_id"]}">plan</a>' in live_table
    assert f"run #{run_id}" in live_table
    assert "1 / 4" in live_table
    assert "2 live, 1 of 8 job slots busy" in page
    assert "Stopped in the last 24 hours" in page
    assert '<span class="label">old</span>' in page[page.index("Stopped in the last"):]


def test_metrics_page_embeds_chart_series(api_server: ApiServer, db: psycopg.Connection) -> None:
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM metrics_queue_samples").fetchone()["n"],
             timeout=30, message="a queue sample")

    with api_server.client() as client:
        page = client.get("/charts", params={"days": 7})
        bad = client.get("/charts", params={"days": 0})

    assert page.status_code == 200
    charts = json.loads(re.search(
        r'<script type="application/json" id="chart-data">(.*?)</script>', page.text, re.S).group(1))
    assert [chart["id"] for chart in charts] == ["queue-depth", "queue-wait", "run-duration",
                                                 "success-rate", "throughput"]
    queue = charts[0]
    # 24 hours of 10-minute buckets, the first one starting before the window does.
    assert len(queue["times"]) == 145
    assert [series["label"] for series in queue["series"]] == [
        "queued (max)", "queued (mean)", "running (mean)"]
    assert [value for value in queue["series"][0]["values"] if value is not None] == [0]
    for chart in charts[1:]:
        assert len(chart["times"]) in (7, 8)
        assert all(len(series["values"]) == len(chart["times"]) for series in chart["series"])
    assert 'src="/static/vendor/uplot/uPlot.iife.min.js?v=' in page.text
    assert bad.status_code == 422


def test_static_files_are_served_with_the_package(api_server: ApiServer) -> None:
    with api_server.client(token=None) as client:
        chart_library = client.get("/static/vendor/uplot/uPlot.iife.min.js")
        licence = client.get("/static/vendor/uplot/LICENSE")
        missing = client.get("/static/nothing.js")

    assert chart_library.status_code == 200
    assert chart_library.text.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert "Permission is hereby granted" in licence.text
    assert missing.status_code == 404


def test_search_page_shows_escaped_snippets(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    store_lines(db, plan, ["compiling", "<script>alert(1)</script> needle found", "done"])

    with api_server.client() as client:
        # The API's indexer loop makes stored lines searchable within a few seconds.
        wait_for(lambda: client.get("/api/search", params={"q": "needle"}).json()["hits"],
                 timeout=30, interval=0.2, message="the line to be indexed")
        page = client.get("/search", params={"q": "needle"}).text
        unknown_repo = client.get("/search", params={"q": "needle", "repo": "no/such"}).text

    hits = page[page.index('id="search-hits"'):]
    assert f'href="/jobs/{plan["job_id"]}?attempt=1#L2"' in hits
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>needle</mark> found" in hits
    assert "<script>alert" not in page
    assert 'id="search-truncated"' not in page
    assert "repository &#39;no/such&#39; does not exist" in unknown_repo


def test_search_page_notes_truncated_search(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    # 1,001 chunks of 64 lines contain the word: one more than a search ranks.
    store_lines(db, plan, [f"checkpoint {n}" for n in range(64 * 1001)])

    with api_server.client() as client:
        def truncated_result() -> dict | None:
            body = client.get("/api/search", params={"q": "checkpoint"}).json()
            return body if body["truncated"] else None

        result = wait_for(truncated_result, timeout=60, interval=0.5,
                          message="every chunk to be indexed")
        page = client.get("/search", params={"q": "checkpoint"}).text

    assert len(result["hits"]) == 50
    assert 'id="search-truncated"' in page
    assert "Showing matches from the newest logs only" in page


def test_environments_page_shows_empty_state(api_server: ApiServer) -> None:
    with api_server.client() as client:
        page = client.get("/environments")

    assert page.status_code == 200
    assert 'id="environments-empty"' in page.text
    assert "No deployment environments." in page.text


def test_environments_page_shows_holder_queue_history(
    api_server: ApiServer, db: psycopg.Connection, database_url: str,
) -> None:
    db.execute("INSERT INTO environments (name, requires_approval) VALUES ('production', true)")
    worker_id = factories.register_worker(db)
    run_id = factories.start_run_with_graph(db, factories.create_repo(db), worker_id, [
        deploy_entry("<b>deploy</b>", environment="staging"),
        deploy_entry("second", environment="staging"),
        deploy_entry("approve me", environment="production"),
    ])
    first, second, gated = factories.claim(db, worker_id, limit=3)
    with lock_connection(database_url) as holder, lock_connection(database_url) as other:
        assert acquire(holder, first)["outcome"] == "acquired"
        assert acquire(other, second)["outcome"] == "waiting"
        assert acquire(other, gated)["outcome"] == "awaiting_approval"
        with api_server.client() as client:
            page = client.get("/environments").text
        with api_server.client(token=None) as anonymous:
            refused = anonymous.get("/environments", follow_redirects=False)

    production = page[page.index('data-environment="production"'):page.index('data-environment="staging"')]
    staging = page[page.index('data-environment="staging"'):]
    assert "approval required" in production
    assert f'data-action="/api/jobs/{gated["job_id"]}/approve"' in production
    assert f'data-action="/api/jobs/{gated["job_id"]}/approve?reject=true"' in production
    assert "waiting for approval to deploy to production" in production
    assert f'Deploying now: <a href="/jobs/{first["job_id"]}">&lt;b&gt;deploy&lt;/b&gt;</a>' in staging
    assert f"waiting for staging, held by run {run_id} job &lt;b&gt;deploy&lt;/b&gt;" in staging
    assert "1 failed lock attempts" in staging
    assert 'data-deployment=' in staging
    assert "<b>deploy</b>" not in page
    assert refused.status_code in (302, 303, 401)
