"""Dashboard actions: manual runs from the form, re-runs, redelivery, each with its scope."""

from __future__ import annotations

import re

import psycopg

from minijenkin.config import Settings
from tests.support import factories
from tests.support.api import ApiServer
from tests.support.dashboard import create_token, sign_in
from tests.support.gitrepo import GitRepo
from tests.support.notify import add_target, claim_deliveries, close_run, outbox_rows, report


def test_manual_run_form_starts_run_with_inputs(api_server: ApiServer, db: psycopg.Connection,
                                                git_repo: GitRepo) -> None:
    head = git_repo.commit({"README": "hello"})
    factories.create_repo(db, "acme/manual", url=git_repo.url)
    token = create_token(api_server, "trigger", name="release manager")

    with sign_in(api_server, token) as session:
        form = session.client.get("/runs/new?repo=acme/manual&ref=release/1.x")
        created = session.client.post("/runs/new", data={
            "csrf_token": session.csrf_token, "repo": "acme/manual", "ref": "main", "commit": "",
            "inputs": "environment=staging\n\ndry_run = true\n"})
        forged = session.client.post("/runs/new", data={"repo": "acme/manual", "ref": "main"})
        invalid = session.client.post("/runs/new", data={
            "csrf_token": session.csrf_token, "repo": "acme/manual", "ref": "main",
            "inputs": "no value here"})
        unknown_ref = session.client.post("/runs/new", data={
            "csrf_token": session.csrf_token, "repo": "acme/manual", "ref": "nope", "inputs": ""})

    assert form.status_code == 200
    assert '<option value="acme/manual" selected>' in form.text
    assert 'name="ref" value="release/1.x"' in form.text
    assert created.status_code == 303, created.text
    run_id = int(re.fullmatch(r"/runs/(\d+)", created.headers["location"]).group(1))
    run = db.execute("SELECT event, ref, commit_sha, trigger FROM pipeline_runs WHERE id = %s",
                     (run_id,)).fetchone()
    assert run["event"] == "manual"
    assert run["ref"] == "refs/heads/main"
    assert run["commit_sha"] == head
    assert run["trigger"]["inputs"] == {"environment": "staging", "dry_run": " true"}
    assert run["trigger"]["actor"] == "release manager"
    assert run["trigger"]["source"] == "dashboard"
    assert forged.status_code == 403
    assert invalid.status_code == 422
    assert "invalid input line &#39;no value here&#39;: use name=value" in invalid.text
    assert 'aria-invalid="true"' in invalid.text
    assert unknown_ref.status_code == 422
    assert "repository &#39;acme/manual&#39; has no branch or tag &#39;nope&#39;" in unknown_ref.text
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 1



def test_manual_run_form_rejects_bad_inputs(api_server: ApiServer, db: psycopg.Connection,
                                            git_repo: GitRepo) -> None:
    git_repo.commit({"README": "hello"})
    factories.create_repo(db, "acme/manual", url=git_repo.url)
    token = create_token(api_server, "trigger")
    forms = {
        "name with space": {"repo": "acme/manual", "ref": "main", "inputs": "dry run=true"},
        "nul in value": {"repo": "acme/manual", "ref": "main", "inputs": "who=a\x00b"},
        "nul in repo": {"repo": "acme/manual\x00", "ref": "main", "inputs": ""},
    }

    with sign_in(api_server, token) as session:
        responses = {case: session.client.post("/runs/new",
                                               data={"csrf_token": session.csrf_token, **form})
                     for case, form in forms.items()}

    for response in responses.values():
        assert response.status_code == 422
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert 'aria-invalid="true"' in response.text
    assert ("invalid input name &#39;dry run&#39;: use letters, digits, &#39;_&#39; and "
            "&#39;-&#39;, starting with a letter or &#39;_&#39;, at most 100 characters"
            in responses["name with space"].text)
    assert ("input &#39;who&#39; must not contain NUL characters"
            in responses["nul in value"].text)
    assert ("invalid repository name &#39;acme/manual\\x00&#39;: it must not contain NUL "
            "characters" in responses["nul in repo"].text)
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0

def test_manual_run_form_needs_trigger_scope(api_server: ApiServer, db: psycopg.Connection) -> None:
    factories.create_repo(db, "acme/manual")
    with sign_in(api_server, create_token(api_server, "read")) as session:
        form = session.client.get("/runs/new")
        refused = session.client.post("/runs/new", data={
            "csrf_token": session.csrf_token, "repo": "acme/manual", "ref": "main",
            "commit": "b" * 40})

    assert "Starting runs needs a token with the <strong>trigger</strong>" in form.text
    assert refused.status_code == 403
    assert "starting a run needs &#39;trigger&#39;" in refused.text
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0


def test_rerun_failed_jobs_from_run_page(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    worker = factories.register_worker(db)
    run_id = factories.start_run_with_graph(db, repo_id, worker, [
        factories.job_entry("build"), factories.job_entry("test", ["build"])])
    build = factories.claim(db, worker)[0]
    factories.finish(db, build, "failed", 2, "exit 2")

    with sign_in(api_server, create_token(api_server, "trigger")) as session:
        page = session.client.get(f"/runs/{run_id}").text
        rerun = session.post_action(f"/api/runs/{run_id}/rerun?failed_only=true")

    assert f'data-action="/api/runs/{run_id}/rerun?failed_only=true"' in page
    assert f'data-action="/api/runs/{run_id}/cancel"' not in page
    assert rerun.status_code == 200, rerun.text
    assert rerun.json() == {"reset": 2}
    assert factories.statuses(db, run_id) == {"plan": "succeeded", "build": "queued",
                                              "test": "pending"}


def test_redeliver_from_deliveries_page(settings: Settings, database_url: str,
                                        db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    add_target(db, repo_id)
    close_run(db, repo_id, factories.register_worker(db))
    claimed = claim_deliveries(db)[0]
    report(db, claimed, "failed", status_code=410, error="HTTP 410 <gone>")
    # No dispatcher in this API, so the delivery stays where the test puts it.
    server = ApiServer(settings, database_url, maintenance=False).start()
    try:
        with sign_in(server, create_token(server, "admin")) as session:
            page = session.client.get("/deliveries?state=dead").text
            redelivered = session.post_action(f"/api/deliveries/{claimed['id']}/redeliver")
    finally:
        server.stop()

    assert f'<tr data-delivery-id="{claimed["id"]}">' in page
    assert "HTTP 410 &lt;gone&gt;" in page
    assert f'data-action="/api/deliveries/{claimed["id"]}/redeliver"' in page
    assert redelivered.status_code == 200, redelivered.text
    assert redelivered.json()["state"] == "pending"
    assert [row["state"] for row in outbox_rows(db)] == ["pending"]
