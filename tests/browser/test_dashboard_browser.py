"""The dashboard in a real browser (Debian's Chromium driven by Playwright).

Each test signs in through the form, uses the pages as a person does and
saves a screenshot of what it saw in test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
from playwright.sync_api import expect

from tests.browser.conftest import WAIT_MS, BrowserPage, sign_in_browser
from tests.support import factories
from tests.support.api import ApiServer
from tests.support.dashboard import create_run, create_token, wait_for_log_partitions
from tests.support.gitrepo import GitRepo
from tests.support.logs import store_lines
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

HOSTILE_MESSAGE = "Fix <script>alert('commit')</script> & <img src=x onerror=alert(2)>"
HOSTILE_LINE = "printed <script>alert('log')</script> live"


def test_runs_list_shows_runs_and_escapes_commit_message(
    api_server: ApiServer, db: psycopg.Connection, browser_page: BrowserPage,
) -> None:
    repo_id = factories.create_repo(db, "acme/web")
    plain = create_run(db, repo_id, message="Add the login page")
    hostile = create_run(db, repo_id, message=HOSTILE_MESSAGE, ref="refs/heads/<b>bold</b>")
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "read", name="viewer"))
    rows = page.locator("#runs-table tbody tr")

    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-run-id", str(hostile))
    expect(rows.nth(1)).to_have_attribute("data-run-id", str(plain))
    expect(rows.nth(0).locator(".message")).to_have_text(HOSTILE_MESSAGE)
    expect(rows.nth(0).locator(".ref-name")).to_have_text("<b>bold</b>")
    expect(page.locator(".topbar .principal")).to_contain_text("viewer")
    assert page.locator("#runs-table img").count() == 0
    assert page.locator("#runs-table b").count() == 0

    page.select_option("select[name=status]", "queued")
    page.fill("input[name=branch]", "<b>bold</b>")
    page.click("#run-filters button[type=submit]")
    expect(rows).to_have_count(1)
    browser_page.screenshot("runs")

    page.click(f"a[href='/runs/{hostile}']")
    expect(page.locator("#commit-message")).to_have_text(HOSTILE_MESSAGE)
    assert browser_page.dialogs.alerts == []
    assert browser_page.errors == []


def test_running_job_streams_a_line_and_cancels(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess], browser_page: BrowserPage,
) -> None:
    go = tmp_path / "go"
    # The step waits (at most 60 s) until the test creates `go`, so the line
    # is printed while the page is already open.
    script = (f"echo waiting; for i in $(seq 1 600); do [ -e {go} ] && break; sleep 0.1; done; "
              f"echo \"{HOSTILE_LINE}\"; sleep 120")
    pipeline = ("jobs:\n  slow:\n    timeout-minutes: 5\n    steps:\n"
                f"      - run: |\n          {script}\n")
    git_repo.commit({".minijenkin.yml": pipeline})
    worker = start_worker()
    with api_server.client() as client:
        assert client.post("/api/repos", json={"name": "acme/live", "url": git_repo.url}
                           ).status_code == 201
        run = client.post("/api/runs", json={"repo": "acme/live", "ref": "main"})
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]

        def running_slow() -> int | None:
            jobs = client.get(f"/api/runs/{run_id}").json()["jobs"]
            return next((job["id"] for job in jobs
                         if job["key"] == "slow" and job["status"] == "running"), None)

        job_id = wait_for(running_slow, timeout=90, interval=0.2, message="job slow running")
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "trigger"))
    page.goto(f"{api_server.url}/jobs/{job_id}")
    viewer = page.locator("#log-viewer")
    expect(viewer).to_contain_text("waiting")
    expect(page.locator(".page-head .badge")).to_have_text("running")
    go.write_text("go")

    expect(viewer).to_contain_text(HOSTILE_LINE, timeout=WAIT_MS)
    line = viewer.locator(".log-line", has_text="printed")
    expect(line.locator(".text")).to_have_text(HOSTILE_LINE)
    assert line.locator("script").count() == 0
    expect(page.locator("#log-follow")).to_be_checked()
    browser_page.screenshot("job-running")

    page.click("#cancel-job")
    expect(page.locator(".page-head .badge")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(page.locator("#flash")).to_have_text("Cancel requested")
    assert browser_page.dialogs.confirms == ["Cancel job slow?"]
    assert browser_page.dialogs.alerts == []
    assert browser_page.errors == []
    browser_page.screenshot("job-cancelled")
    assert db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"] \
        == "cancelled", worker.output()


def test_run_page_draws_the_job_graph(api_server: ApiServer, db: psycopg.Connection,
                                      browser_page: BrowserPage) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    matrix = {"steps": [], "strategy": {"job": "test", "fail_fast": True, "max_parallel": None}}
    run_id = factories.start_run_with_graph(db, repo_id, worker, [
        factories.job_entry("build"),
        factories.job_entry("lint"),
        *[factories.job_entry(f"test ({version})", ["build"], spec=matrix)
          for version in ("3.11", "3.12", "3.13")],
        factories.job_entry("deploy", ["lint", "test (3.11)", "test (3.12)", "test (3.13)"]),
    ])
    build = [job for job in factories.claim(db, worker) if job["key"] == "build"][0]
    factories.finish(db, build)
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "read"))
    page.goto(f"{api_server.url}/runs/{run_id}")
    graph = page.locator("#job-graph")

    expect(graph.locator("a.node")).to_have_count(7)
    expect(graph.locator("g.group")).to_have_count(1)
    expect(graph.locator(".group-label")).to_contain_text("test · 0/3 succeeded")
    expect(graph.locator("a.node[data-job-key='build']")).to_have_attribute("data-status", "succeeded")
    expect(graph.locator("path.edge")).to_have_count(5)
    browser_page.screenshot("run")

    graph.locator("a.node[data-job-key='deploy']").click()
    expect(page.locator("h1 .job-name")).to_have_text("deploy")
    assert browser_page.errors == []



def test_long_job_name_wraps_within_page(api_server: ApiServer, db: psycopg.Connection,
                                         browser_page: BrowserPage) -> None:
    long_name = "integration-" + "x" * 240
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    run_id = factories.start_run_with_graph(db, repo_id, worker, [
        factories.job_entry("integration", name=long_name),
    ])
    job_id = db.execute("SELECT id FROM jobs WHERE run_id = %s AND key = 'integration'",
                        (run_id,)).fetchone()["id"]
    page = browser_page.page
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"

    sign_in_browser(page, api_server, create_token(api_server, "read"))
    page.goto(f"{api_server.url}/runs/{run_id}")
    expect(page.locator("table.jobs")).to_contain_text(long_name)
    browser_page.screenshot("run-long-job-name")
    run_page_overflow = page.evaluate(overflow)
    page.goto(f"{api_server.url}/jobs/{job_id}")
    expect(page.locator("h1 .job-name")).to_have_text(long_name)
    browser_page.screenshot("job-long-job-name")
    job_page_overflow = page.evaluate(overflow)

    assert run_page_overflow == 0
    assert job_page_overflow == 0
    assert browser_page.errors == []

def test_log_viewer_stays_small_on_a_million_lines(
    api_server: ApiServer, db: psycopg.Connection, browser_page: BrowserPage,
) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    store_lines(db, plan, ["first line"])
    db.execute(
        "INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line) "
        "SELECT %(job)s, 1, s, (a.started_at AT TIME ZONE 'UTC')::date, 1, now(), "
        "       CASE WHEN s = 654321 THEN 'the needle is here' ELSE 'line ' || s END "
        "FROM jobs a, generate_series(2, 1000000) AS s "
        "WHERE a.id = %(job)s", {"job": plan["job_id"]})
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "read"))
    page.goto(f"{api_server.url}/jobs/{plan['job_id']}")
    viewer = page.locator("#log-viewer")

    expect(page.locator("#log-count")).to_have_text("1,000,000 lines")
    expect(viewer.locator("#L1000000")).to_be_visible()
    expect(viewer.locator("#L1000000 .text")).to_have_text("line 1000000")
    assert viewer.locator(".log-line").count() < 400

    page.goto(f"{api_server.url}/jobs/{plan['job_id']}#L1")
    expect(viewer.locator("#L1 .text")).to_have_text("first line")
    expect(viewer.locator("#L1")).to_have_class("log-line stdout target")

    page.fill("#log-find-text", "NEEDLE")
    page.press("#log-find-text", "Enter")
    expect(page.locator("#log-find-status")).to_have_text("line 654321")
    expect(viewer.locator("#L654321 .text")).to_have_text("the needle is here")
    expect(viewer.locator("#L654321 mark")).to_have_text("needle")
    assert viewer.locator(".log-line").count() < 400
    browser_page.screenshot("log-million-lines")

    viewer.locator("#L654325 a.ln").click()
    assert page.url.endswith("#L654325")
    download_href = page.locator("#log-raw").get_attribute("href")
    assert download_href == f"/api/jobs/{plan['job_id']}/logs/raw?attempt=1"
    assert browser_page.errors == []


def test_metrics_page_draws_every_chart(api_server: ApiServer, db: psycopg.Connection,
                                        browser_page: BrowserPage) -> None:
    repo_id = factories.create_repo(db)
    # Five days of finished runs, one in four failed, so the history charts have lines.
    db.execute(
        "INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, created_at, "
        "                           started_at, finished_at) "
        "SELECT %s, CASE WHEN g %% 4 = 0 THEN 'failed' ELSE 'succeeded' END, 'push', "
        "       'refs/heads/main', repeat('c', 40), now() - g * interval '1 hour', "
        "       now() - g * interval '1 hour', now() - g * interval '1 hour' + g * interval '1 s' "
        "FROM generate_series(1, 120) AS g", (repo_id,))
    db.execute("SELECT mj_metrics_refresh_v1(0)")
    wait_for(lambda: db.execute("SELECT count(*) AS n FROM metrics_queue_samples").fetchone()["n"],
             timeout=30, message="a queue sample")
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "read"))
    page.goto(f"{api_server.url}/charts?days=7")

    expect(page.locator("body")).to_have_attribute("data-charts-drawn", "5")
    canvases = page.locator("#charts canvas")
    expect(canvases).to_have_count(5)
    for index in range(5):
        drawn = canvases.nth(index).evaluate(
            "canvas => { const pixels = canvas.getContext('2d')"
            ".getImageData(0, 0, canvas.width, canvas.height).data;"
            " let painted = 0; for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;"
            " return painted; }")
        assert drawn > 100, f"chart {index} has {drawn} painted pixels"
    expect(page.locator("#chart-queue-depth figcaption")).to_contain_text("Queue depth")
    for chart in ("run-duration", "success-rate"):
        # Pixels in the first series' colour (#0969da): the data line, not only the axes.
        line = page.locator(f"#chart-{chart} canvas").evaluate(
            "canvas => { const pixels = canvas.getContext('2d')"
            ".getImageData(0, 0, canvas.width, canvas.height).data;"
            " let line = 0; for (let i = 0; i < pixels.length; i += 4)"
            "   if (pixels[i] < 40 && pixels[i + 1] > 80 && pixels[i + 1] < 130 && pixels[i + 2] > 190)"
            "     line++;"
            " return line; }")
        assert line > 50, f"chart {chart} has {line} pixels of its data line"
    browser_page.screenshot("metrics")
    assert browser_page.errors == []


def test_every_page_renders_in_the_browser(api_server: ApiServer, db: psycopg.Connection,
                                           start_worker: Callable[..., WorkerProcess],
                                           browser_page: BrowserPage) -> None:
    start_worker(MINIJENKIN_WORKER_LABELS="linux,docker")
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    factories.create_run(db, repo_id)
    plan = factories.claim(db, worker)[0]
    wait_for_log_partitions(db)
    store_lines(db, plan, ["compiling <script>alert('search')</script> module", "done"])
    with api_server.client() as client:
        # The API's indexer loop makes stored lines searchable within a few seconds.
        wait_for(lambda: client.get("/api/search", params={"q": "compiling"}).json()["hits"],
                 timeout=30, interval=0.2, message="the line to be indexed")
    page = browser_page.page

    sign_in_browser(page, api_server, create_token(api_server, "admin"))
    page.goto(f"{api_server.url}/workers")
    # The page refreshes itself every 5 s, so the worker appears once it has registered.
    expect(page.locator("#workers-table")).to_contain_text("docker")
    expect(page.locator("#workers-table")).to_contain_text("linux")
    browser_page.screenshot("workers")

    page.goto(f"{api_server.url}/search?q=compiling")
    hit = page.locator("#search-hits .snippet")
    expect(hit).to_have_text("compiling <script>alert('search')</script> module")
    browser_page.screenshot("search")

    page.goto(f"{api_server.url}/environments")
    expect(page.locator("#environments-empty")).to_contain_text("No deployment environments.")
    browser_page.screenshot("environments")

    page.goto(f"{api_server.url}/deliveries")
    expect(page.locator("#deliveries-table")).to_contain_text("No deliveries")
    browser_page.screenshot("deliveries")

    page.goto(f"{api_server.url}/runs/new")
    expect(page.locator("select#repo")).to_contain_text("acme/web")
    browser_page.screenshot("new-run")

    page.click("button.link")  # sign out
    page.wait_for_url(f"{api_server.url}/signin")
    browser_page.screenshot("signin")
    assert browser_page.dialogs.alerts == []
    assert browser_page.errors == []


def test_environment_deploy_approved_in_browser(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess], browser_page: BrowserPage,
) -> None:
    pipeline = ("jobs:\n  deploy:\n    environment: production\n    steps:\n"
                "      - run: echo deployed\n")
    git_repo.commit({".minijenkin.yml": pipeline})
    worker = start_worker()
    with api_server.client() as client:
        assert client.put("/api/environments/production", json={"requires_approval": True}
                          ).status_code == 200
        assert client.post("/api/repos", json={"name": "acme/deploy", "url": git_repo.url}
                           ).status_code == 201
        run = client.post("/api/runs", json={"repo": "acme/deploy", "ref": "main"})
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]

        def awaiting_deploy() -> int | None:
            jobs = client.get(f"/api/runs/{run_id}").json()["jobs"]
            return next((job["id"] for job in jobs
                         if job["key"] == "deploy" and job["status"] == "awaiting_approval"), None)

        job_id = wait_for(awaiting_deploy, timeout=90, interval=0.2,
                          message="deploy awaiting approval")
    page = browser_page.page

    sign_in_browser(page, api_server, api_server.admin_token)
    page.goto(f"{api_server.url}/environments")
    production = page.locator("section.environment[data-environment='production']")
    queued = production.locator(f".deploy-queue tr[data-job='{job_id}']")
    expect(queued).to_contain_text("awaiting approval")
    browser_page.screenshot("environment-awaiting-approval")

    queued.locator("button", has_text="Approve").click()
    expect(page.locator("#flash")).to_have_text("Deploy approved", timeout=WAIT_MS)

    def finished() -> str | None:
        status = db.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()["status"]
        return status if status in ("succeeded", "failed", "skipped", "cancelled") else None

    assert wait_for(finished, timeout=90, interval=0.2, message="deploy finished") == "succeeded", \
        worker.output()
    page.goto(f"{api_server.url}/environments")
    history = page.locator("section.environment[data-environment='production'] .deploy-history")
    expect(history.locator("tbody tr")).to_have_count(1)
    expect(history.locator("tbody tr").first).to_contain_text("succeeded")
    browser_page.screenshot("environment-deployed")
    decisions = db.execute("SELECT decision, decided_by, status FROM deployments WHERE job_id = %s",
                           (job_id,)).fetchall()
    assert [row["decision"] for row in decisions] == ["approved"]
    assert [row["status"] for row in decisions] == ["succeeded"]
    assert decisions[0]["decided_by"] == "MINIJENKIN_ADMIN_TOKEN"
    assert browser_page.dialogs.alerts == []
    assert browser_page.errors == []
