"""Polling with git ls-remote: new heads start one run, whether or not a webhook also came."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg

from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for

SECRET = "polling-secret-1"
REPO = "acme/polled"


def _runs(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT id, event, ref, commit_sha, before_sha, trigger->>'source' AS source "
                      "FROM pipeline_runs ORDER BY id").fetchall()


def _polled_at(db: psycopg.Connection, repo_id: int) -> object:
    return db.execute("SELECT polled_at FROM repositories WHERE id = %s", (repo_id,)).fetchone()[
        "polled_at"]


def _poll_now(client: httpx.Client, db: psycopg.Connection, repo_id: int) -> None:
    """Ask for a poll and wait until the polling loop has finished it."""
    before = _polled_at(db, repo_id)
    response = client.post(f"/api/repos/{repo_id}/poll")
    assert response.status_code == 202, response.text
    wait_for(lambda: _polled_at(db, repo_id) != before, timeout=30, message="the next poll")


def _webhook(client: httpx.Client, repo: GitRepo, after: str, before: str) -> httpx.Response:
    body = encode(push_payload(full_name=REPO, clone_url=repo.url, after=after, before=before))
    return client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))


def test_poll_and_webhook_build_each_head_once(api_server: ApiServer, db: psycopg.Connection,
                                               git_repo: GitRepo) -> None:
    first = git_repo.commit({"README.md": "one\n"}, "First")
    git_repo.git("branch", "feature")

    with api_server.client() as client:
        created = client.post("/api/repos", json={
            "name": REPO, "url": git_repo.url, "webhook_secret": SECRET,
            "poll_interval_seconds": 3600})
        assert created.status_code == 201, created.text
        repo_id = created.json()["id"]
        assert created.json()["poll_interval_seconds"] == 3600

        # The first poll builds the default branch only; `feature` is recorded as seen.
        wait_for(lambda: _runs(db), timeout=30, message="the first poll's run")
        assert [(r["event"], r["ref"], r["commit_sha"], r["source"]) for r in _runs(db)] == [
            ("push", "refs/heads/main", first, "poll")]

        # The webhook comes first; the poll then finds the head already built.
        second = git_repo.commit({"README.md": "two\n"}, "Second")
        hooked = _webhook(client, git_repo, second, first)
        assert hooked.status_code == 201, hooked.text
        _poll_now(client, db, repo_id)
        assert [(r["commit_sha"], r["source"]) for r in _runs(db)] == [
            (first, "poll"), (second, "webhook")]

        # No webhook this time: the poll builds the new head and the new annotated tag.
        third = git_repo.commit({"README.md": "three\n"}, "Third")
        git_repo.git("tag", "-a", "v1.0", "-m", "Release 1.0")
        _poll_now(client, db, repo_id)
        runs = _runs(db)
        assert [(r["event"], r["ref"], r["commit_sha"], r["before_sha"], r["source"])
                for r in runs[2:]] == [
            ("push", "refs/heads/main", third, second, "poll"),
            ("tag", "refs/tags/v1.0", third, None, "poll")]

        # The late webhook for that head creates nothing and names the poll's run.
        late = _webhook(client, git_repo, third, second)
        assert late.status_code == 200, late.text
        assert late.json()["duplicate"] is True
        assert late.json()["run_id"] == runs[2]["id"]

        # A branch seen in the baseline builds once it moves.
        git_repo.git("checkout", "--quiet", "feature")
        feature = git_repo.commit({"feature.txt": "x\n"}, "Feature work")
        _poll_now(client, db, repo_id)
        _poll_now(client, db, repo_id)

    runs = _runs(db)
    assert [(r["ref"], r["commit_sha"], r["before_sha"]) for r in runs[4:]] == [
        ("refs/heads/feature", feature, first)]
    assert len(runs) == 5
    repo = db.execute("SELECT poll_error FROM repositories WHERE id = %s", (repo_id,)).fetchone()
    assert repo["poll_error"] is None


def test_push_back_to_built_commit_builds_again(api_server: ApiServer, db: psycopg.Connection,
                                                git_repo: GitRepo) -> None:
    first = git_repo.commit({"README.md": "one\n"}, "First")
    second = git_repo.commit({"README.md": "two\n"}, "Second")

    with api_server.client() as client:
        created = client.post("/api/repos", json={"name": REPO, "url": git_repo.url,
                                                  "webhook_secret": SECRET})
        assert created.status_code == 201, created.text
        pushed = [_webhook(client, git_repo, first, "0" * 40), _webhook(client, git_repo, second, first)]
        # A force-push back to the first commit (a rollback), delivered twice
        # with two delivery ids, then a push forward to the second again.
        rollback = _webhook(client, git_repo, first, second)
        rollback_again = _webhook(client, git_repo, first, second)
        forward = _webhook(client, git_repo, second, first)

    assert [response.status_code for response in pushed] == [201, 201]
    assert rollback.status_code == 201, rollback.text
    assert rollback_again.status_code == 200, rollback_again.text
    assert rollback_again.json()["duplicate"] is True
    assert rollback_again.json()["run_id"] == rollback.json()["run_id"]
    assert forward.status_code == 201, forward.text
    assert [(r["commit_sha"], r["before_sha"]) for r in _runs(db)] == [
        (first, None), (second, first), (first, second), (second, first)]


def test_poll_of_unreachable_repository_records_error(api_server: ApiServer,
                                                      db: psycopg.Connection, tmp_path: Path) -> None:
    missing = (tmp_path / "no-such-repo").as_uri()

    with api_server.client() as client:
        created = client.post("/api/repos", json={"name": REPO, "url": missing,
                                                  "poll_interval_seconds": 60})
        repo_id = created.json()["id"]

        def error() -> str | None:
            return db.execute("SELECT poll_error FROM repositories WHERE id = %s",
                              (repo_id,)).fetchone()["poll_error"]

        message = wait_for(error, timeout=30, message="the poll error")
        shown = client.get(f"/api/repos/{repo_id}").json()

    assert message.startswith("cannot read the refs: git ls-remote failed:")
    assert shown["poll_error"] == message
    assert shown["polled_at"] is None
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0


def test_poll_request_for_repository_without_polling_is_409(api_server: ApiServer) -> None:
    with api_server.client() as client:
        repo_id = client.post("/api/repos", json={"name": REPO, "url": "file:///x"}).json()["id"]
        response = client.post(f"/api/repos/{repo_id}/poll")
        too_fast = client.patch(f"/api/repos/{repo_id}", json={"poll_interval_seconds": 1})
        both = client.patch(f"/api/repos/{repo_id}", json={"poll_interval_seconds": 60,
                                                          "disable_polling": True})
        enabled = client.patch(f"/api/repos/{repo_id}", json={"poll_interval_seconds": 60,
                                                             "default_branch": "trunk"})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"repository {repo_id} does not poll: set poll_interval_seconds with "
                  f"PATCH /api/repos/{repo_id} first",
        "field": "poll_interval_seconds"}
    assert too_fast.status_code == 422
    assert too_fast.json()["field"] == "poll_interval_seconds"
    assert both.status_code == 422
    assert both.json()["field"] == "disable_polling"
    assert enabled.status_code == 200
    assert (enabled.json()["poll_interval_seconds"], enabled.json()["default_branch"]) == (60, "trunk")
