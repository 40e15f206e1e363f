"""The demo `make run` shows: a local repository, a signed push, a run to watch.

It creates (once) a git repository under the data directory with a
three-job pipeline, registers it through the API, commits a change, posts a
push webhook signed exactly as GitHub signs it, and prints the run's
progress until it ends.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from minijenkin.forges import sign_hmac_sha256
from minijenkin.supervisor import LOCAL_TOKEN_FILE

DEMO_REPO_NAME = "demo/hello"
STATUS_STYLE = {
    "succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow",
    "skipped": "dim", "running": "cyan", "queued": "blue", "pending": "dim",
}

PIPELINE = """\
# Two jobs run in parallel; `package` starts when both have succeeded.
name: demo
jobs:
  lint:
    steps:
      - name: Check files
        run: |
          echo "checking $(git ls-files | wc -l) tracked files"
          test -s README.md && echo "README.md is present"
  test:
    steps:
      - name: Run tests
        run: |
          for case in parse plan run; do
            echo "test $case ... ok"
            sleep 0.3
          done
  package:
    needs: [lint, test]
    steps:
      - name: Build archive
        run: |
          tar czf "$RUNNER_TEMP/hello.tgz" --exclude=.git .
          echo "built hello.tgz for commit ${GITHUB_SHA:0:12} on $GITHUB_REF_NAME"
"""


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Mini-Jenkin Demo", "-c", "user.email=demo@minijenkin.invalid",
         "-c", "init.defaultBranch=main", *args],
        cwd=repo, check=True, capture_output=True, text=True)
    return result.stdout.strip()


def prepare_repository(root: Path) -> tuple[Path, str, str]:
    """Create or update the demo repository; return (path, before sha, new sha)."""
    repo = root / "repo"
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "--quiet")
        (repo / ".minijenkin.yml").write_text(PIPELINE)
        (repo / "README.md").write_text("# hello\n\nThe Mini-Jenkin demo repository.\n")
        _git(repo, "add", ".")
        _git(repo, "commit", "--quiet", "-m", "Add the demo pipeline")
    before = _git(repo, "rev-parse", "HEAD")
    with (repo / "CHANGES.md").open("a") as changes:
        changes.write(f"- demo push {uuid.uuid4().hex[:8]}\n")
    _git(repo, "add", "CHANGES.md")
    _git(repo, "commit", "--quiet", "-m", "Record a demo push")
    after = _git(repo, "rev-parse", "HEAD")
    return repo, before, after


def github_push_payload(repo: Path, name: str, before: str, after: str) -> dict[str, Any]:
    message = _git(repo, "log", "-1", "--format=%s", after)
    url = repo.resolve().as_uri()
    return {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {"full_name": name, "name": name.split("/")[-1], "clone_url": url,
                       "html_url": url},
        "pusher": {"name": "demo", "email": "demo@minijenkin.invalid"},
        "sender": {"login": "demo"},
        "head_commit": {"id": after, "message": message,
                        "author": {"name": "Mini-Jenkin Demo", "username": "demo"},
                        "added": [], "removed": [], "modified": ["CHANGES.md"]},
        "commits": [{"id": after, "message": message, "added": [], "removed": [],
                     "modified": ["CHANGES.md"]}],
    }


async def _ensure_repo(client: httpx.AsyncClient, root: Path, url: str) -> str:
    secret_file = root / "webhook-secret"
    response = await client.get("/api/repos")
    response.raise_for_status()
    exists = any(repo["name"] == DEMO_REPO_NAME for repo in response.json()["repos"])
    if exists and secret_file.exists():
        return secret_file.read_text().strip()
    if exists:
        raise RuntimeError(
            f"repository {DEMO_REPO_NAME} exists but its secret file {secret_file} is missing")
    secret = secrets.token_hex(16)
    response = await client.post("/api/repos", json={
        "name": DEMO_REPO_NAME, "url": url, "webhook_secret": secret})
    response.raise_for_status()
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    return secret


async def run_demo(api_url: str, data_dir: Path, console: Console | None = None) -> str:
    """Push to the demo repository, follow the run, and return its final status."""
    console = console or Console()
    root = data_dir / "demo"
    root.mkdir(parents=True, exist_ok=True)
    repo, before, after = await asyncio.to_thread(prepare_repository, root)
    token_file = data_dir / LOCAL_TOKEN_FILE
    token = token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:
        secret = await _ensure_repo(client, root, repo.resolve().as_uri())
        body = json.dumps(github_push_payload(repo, DEMO_REPO_NAME, before, after)).encode()
        response = await client.post("/hooks/github", content=body, headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + sign_hmac_sha256(secret, body),
            "User-Agent": "GitHub-Hookshot/minijenkin-demo",
        })
        response.raise_for_status()
        run_id = response.json()["run_id"]
        console.print(f"[bold]demo:[/] pushed {after[:12]} to {DEMO_REPO_NAME}; "
                      f"webhook created run {run_id}")
        status = await follow_run(client, run_id, console)
    console.print()
    console.print(f"[bold]demo run {run_id} {status}[/]")
    console.print(f"  dashboard: {api_url}/runs/{run_id} (sign in at {api_url}/signin with the "
                  "admin token)", soft_wrap=True)
    console.print(f"  API docs:  {api_url}/docs")
    # Commands are printed without wrapping so that they can be pasted whole.
    console.print(f"  this run:  curl -H \"Authorization: Bearer $(cat {token_file})\" "
                  f"{api_url}/api/runs/{run_id}", soft_wrap=True)
    console.print(f"  job logs:  {api_url}/api/jobs/<job id>/logs (same header)", soft_wrap=True)
    console.print(f"  admin token for the CLI and the dashboard: {token_file}", soft_wrap=True)
    console.print("  The API stays up; press Ctrl-C to stop Mini-Jenkin.")
    return status


async def follow_run(client: httpx.AsyncClient, run_id: int, console: Console) -> str:
    """Print each job's status changes until the run ends; return its final status."""
    seen: dict[str, str] = {}
    while True:
        response = await client.get(f"/api/runs/{run_id}")
        response.raise_for_status()
        run = response.json()
        for job in run["jobs"]:
            if seen.get(job["key"]) != job["status"]:
                seen[job["key"]] = job["status"]
                style = STATUS_STYLE.get(job["status"], "")
                duration = (f" in {job['duration_seconds']:.1f} s"
                            if job["duration_seconds"] is not None else "")
                console.print(f"  {job['name']:<10} [{style}]{job['status']}[/]{duration}")
        if run["status"] not in ("pending", "queued", "running"):
            return str(run["status"])
        await asyncio.sleep(0.3)
