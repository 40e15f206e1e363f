"""Take the dashboard screenshots used in docs/getting-started.md.

    .venv/bin/python docs/screenshots.py

Starts `minijenkin up --demo` on a free loopback port with a temporary data
directory and lets the demo pipeline run once from a GitHub push. Then it
pushes again through a GitLab push webhook and photographs the dashboard
with Debian's Chromium (/usr/bin/chromium) through Playwright, which never
downloads a browser. The PNG files go to docs/images/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from minijenkin.demo import DEMO_REPO_NAME, prepare_repository

IMAGES = Path(__file__).resolve().parent / "images"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 720}
DEMO_TIMEOUT_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_demo(log_path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"demo run (\d+) succeeded", log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        time.sleep(0.5)
    raise RuntimeError(f"the demo run did not succeed; see {log_path}")


def _push_through_gitlab(api_url: str, data_dir: Path, token: str) -> int:
    """Commit to the demo repository and deliver it as a GitLab push hook; return the run id."""
    repo, before, after = prepare_repository(data_dir / "demo")
    secret = (data_dir / "demo" / "webhook-secret").read_text().strip()
    payload = {
        "object_kind": "push", "ref": "refs/heads/main", "before": before, "after": after,
        "checkout_sha": after, "user_username": "demo", "total_commits_count": 1,
        "project": {"path_with_namespace": DEMO_REPO_NAME, "git_http_url": repo.resolve().as_uri()},
        "commits": [{"id": after, "message": "Record a demo push", "author": {"name": "Demo"},
                     "added": [], "modified": ["CHANGES.md"], "removed": []}],
    }
    response = httpx.post(f"{api_url}/hooks/gitlab", content=json.dumps(payload), headers={
        "Content-Type": "application/json", "X-Gitlab-Event": "Push Hook",
        "X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": str(uuid.uuid4())})
    response.raise_for_status()
    run_id = response.json()["run_id"]

    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = httpx.get(f"{api_url}/api/runs/{run_id}",
                        headers={"Authorization": f"Bearer {token}"}).json()
        if run["status"] == "succeeded":
            return run_id
        time.sleep(0.5)
    raise RuntimeError(f"run {run_id} from the GitLab webhook did not succeed")


def _shoot(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    path = IMAGES / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def take_screenshots(api_url: str, token: str, run_id: int) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport=VIEWPORT).new_page()

        page.goto(f"{api_url}/signin")
        _shoot(page, "signin")
        page.fill("#token", token)
        page.click("button[type=submit]")

        page.goto(f"{api_url}/")
        _shoot(page, "runs")
        page.goto(f"{api_url}/runs/{run_id}")
        _shoot(page, "run-graph")
        run = httpx.get(f"{api_url}/api/runs/{run_id}",
                        headers={"Authorization": f"Bearer {token}"}).json()
        [test_job] = [job for job in run["jobs"] if job["key"] == "test"]
        page.goto(f"{api_url}/jobs/{test_job['id']}")
        page.wait_for_selector("text=test parse ... ok")
        _shoot(page, "job-log")
        page.goto(f"{api_url}/workers")
        _shoot(page, "workers")
        browser.close()


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="minijenkin-screenshots-") as temporary:
        data_dir = Path(temporary) / "data"
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("MINIJENKIN_") and key != "DATABASE_URL"}
        env["MINIJENKIN_DATA_DIR"] = str(data_dir)
        log_path = Path(temporary) / "up.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "minijenkin", "up", "--demo", "--port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_demo(log_path, process)
            token = (data_dir / "admin-token").read_text().strip()
            run_id = _push_through_gitlab(api_url, data_dir, token)
            take_screenshots(api_url, token, run_id)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
