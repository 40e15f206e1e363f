"""POST /hooks/{forge} for every forge over real HTTP: events, credentials, replays, records."""

from __future__ import annotations

from typing import get_args
from urllib.parse import urlencode

import httpx
import psycopg

from minijenkin.api import schemas
from minijenkin.forges.registry import FORGES
from tests.support import forges
from tests.support.api import ApiServer
from tests.support.github import push_payload

SECRET = "webhook-secret-1"
HEAD = "b" * 40
BASE = "c" * 40


def _register(client: httpx.Client, name: str, url: str) -> int:
    response = client.post("/api/repos", json={"name": name, "url": url, "webhook_secret": SECRET})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _run(db: psycopg.Connection, run_id: int) -> dict:
    return db.execute("SELECT event, ref, commit_sha, before_sha, message, author, trigger "
                      "FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()


def _post_github(client: httpx.Client, payload: dict, event: str = "push",
                 secret: str = SECRET) -> httpx.Response:
    """Post `payload` to /hooks/github, signed with `secret` as GitHub signs it."""
    body = forges.encode(payload)
    return client.post("/hooks/github", content=body,
                       headers=forges.github_headers(secret, body, event=event))


def _run_repo_id(db: psycopg.Connection, run_id: int) -> int:
    return db.execute("SELECT repo_id FROM pipeline_runs WHERE id = %s", (run_id,)).fetchone()["repo_id"]


def _count_runs(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"]


# -- GitHub -------------------------------------------------------------------


def test_github_pull_request_runs_head_commit(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "acme/web", "https://github.com/acme/web.git")
        results = {}
        for action in ("opened", "synchronize", "reopened", "closed", "labeled"):
            body = forges.encode(forges.github_pull_request(
                full_name="acme/web", clone_url="https://github.com/acme/web.git", action=action,
                number=42, head_sha=HEAD, base_sha=BASE,
                before="d" * 40 if action == "synchronize" else None))
            results[action] = client.post("/hooks/github", content=body, headers=forges.github_headers(
                SECRET, body, event="pull_request"))

    assert {action: response.status_code for action, response in results.items()} == {
        "opened": 201, "synchronize": 201, "reopened": 201, "closed": 202, "labeled": 202}
    assert results["closed"].json()["detail"] == (
        "pull request #42: the action 'closed' starts no run; only opened, synchronize, reopened "
        "start one")
    run = _run(db, results["opened"].json()["run_id"])
    assert run["event"] == "pull_request"
    assert run["ref"] == "refs/pull/42/head"
    assert run["commit_sha"] == HEAD
    assert run["trigger"]["pull_request"] == {
        "number": 42, "title": "Add feature", "head_ref": "feature", "base_ref": "main",
        "base_sha": BASE, "action": "opened", "fork": False,
        "url": "https://github.com/acme/web/pull/42"}
    assert run["trigger"]["source"] == "webhook"
    assert _run(db, results["synchronize"].json()["run_id"])["before_sha"] == "d" * 40
    assert _count_runs(db) == 3


def test_github_pull_request_from_fork_is_marked(api_server: ApiServer,
                                                 db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "acme/web", "https://github.com/acme/web.git")
        body = forges.encode(forges.github_pull_request(
            full_name="acme/web", clone_url="https://github.com/acme/web.git", action="opened",
            number=7, head_sha=HEAD, base_sha=BASE, head_full_name="stranger/web"))
        response = client.post("/hooks/github", content=body,
                               headers=forges.github_headers(SECRET, body, event="pull_request"))

    assert response.status_code == 201
    assert _run(db, response.json()["run_id"])["trigger"]["pull_request"]["fork"] is True


def test_github_form_encoded_push(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = push_payload(full_name="acme/web", clone_url="https://github.com/acme/web.git",
                           after=HEAD, message="Form body")
    body = urlencode({"payload": forges.encode(payload).decode()}).encode()

    with api_server.client() as client:
        _register(client, "acme/web", "https://github.com/acme/web.git")
        response = client.post("/hooks/github", content=body, headers=forges.github_headers(
            SECRET, body, event="push", content_type="application/x-www-form-urlencoded"))
        tampered = body.replace(b"Form+body", b"Form+bodx")
        forged = client.post("/hooks/github", content=tampered, headers={
            **forges.github_headers(SECRET, body, event="push",
                                    content_type="application/x-www-form-urlencoded")})

    assert response.status_code == 201, response.text
    run = _run(db, response.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"], run["message"]) == (
        "push", "refs/heads/main", HEAD, "Form body")
    assert forged.status_code == 401
    assert forged.json() == {"detail": "invalid X-Hub-Signature-256 signature"}


def test_github_tag_push_starts_tag_run(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = push_payload(full_name="acme/web", clone_url="https://github.com/acme/web.git",
                           ref="refs/tags/v2.0.0", after=HEAD)
    body = forges.encode(payload)

    with api_server.client() as client:
        _register(client, "acme/web", "https://github.com/acme/web.git")
        response = client.post("/hooks/github", content=body,
                               headers=forges.github_headers(SECRET, body, event="push"))

    assert response.status_code == 201, response.text
    run = _run(db, response.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"]) == ("tag", "refs/tags/v2.0.0", HEAD)
    assert (run["trigger"]["tag"], run["trigger"]["branch"]) == ("v2.0.0", None)


def test_github_annotated_tag_runs_its_commit(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = push_payload(full_name="acme/web", clone_url="https://github.com/acme/web.git",
                           ref="refs/tags/v2.1.0", after=HEAD)
    payload["after"] = "e" * 40

    with api_server.client() as client:
        _register(client, "acme/web", "https://github.com/acme/web.git")
        response = _post_github(client, payload)

    assert response.status_code == 201, response.text
    assert _run(db, response.json()["run_id"])["commit_sha"] == HEAD


def test_github_repository_name_case_differs(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = push_payload(full_name="Acme/Web", clone_url="https://github.com/Acme/Web.git",
                           after=HEAD)

    with api_server.client() as client:
        repo_id = _register(client, "acme/web", "https://github.com/acme/web.git")
        response = _post_github(client, payload)

    assert response.status_code == 201, response.text
    assert _run_repo_id(db, response.json()["run_id"]) == repo_id


def test_github_clone_url_beats_name_case(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = push_payload(full_name="ACME/Tools", clone_url="https://github.com/ACME/Tools.git",
                           after=HEAD)

    with api_server.client() as client:
        _register(client, "acme/tools", "https://gitlab.example.com/acme/tools.git")
        mirror_id = _register(client, "gh-tools", "https://github.com/ACME/Tools.git")
        response = _post_github(client, payload)

    assert response.status_code == 201, response.text
    assert _run_repo_id(db, response.json()["run_id"]) == mirror_id


def test_github_organization_ping(api_server: ApiServer, db: psycopg.Connection) -> None:
    def ping(organization: str, secret: str) -> httpx.Response:
        return _post_github(client, {"zen": "Speak like a human.", "hook_id": 9,
                                     "hook": {"type": "Organization"},
                                     "organization": {"login": organization, "id": 5}},
                            event="ping", secret=secret)

    with api_server.client() as client:
        client.post("/api/repos", json={"name": "acme/api", "url": "https://github.com/acme/api.git"})
        repo_id = _register(client, "acme/web", "https://github.com/acme/web.git")
        accepted = ping("Acme", SECRET)
        forged = ping("acme", "another-secret")
        unknown = ping("globex", SECRET)

    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"detail": "pong", "run_id": None}
    recorded = db.execute("SELECT repo_id, outcome FROM webhook_deliveries WHERE status_code = 200"
                          ).fetchone()
    assert (recorded["repo_id"], recorded["outcome"]) == (repo_id, "ping")
    assert forged.status_code == 401
    assert forged.json() == {"detail": "invalid X-Hub-Signature-256 signature: it matches the "
                                       "webhook secret of no repository of 'acme'"}
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "no registered repository belongs to 'globex', so this "
                                        "webhook of the whole organization or user is refused"}
    assert _count_runs(db) == 0


# -- GitLab -------------------------------------------------------------------

GITLAB_URL = "https://gitlab.example.com/mike/diaspora.git"


def test_gitlab_push_tag_and_merge_request(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "mike/diaspora", GITLAB_URL)
        push = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after=HEAD,
                                                before=BASE, added=["CHANGELOG"]))
        pushed = client.post("/hooks/gitlab", content=push,
                             headers=forges.gitlab_headers(SECRET, event="Push Hook"))
        tag = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after="e" * 40,
                                               ref="refs/tags/v1.0.0", tag=True,
                                               checkout_sha="f" * 40))
        tagged = client.post("/hooks/gitlab", content=tag,
                             headers=forges.gitlab_headers(SECRET, event="Tag Push Hook"))
        opened = forges.encode(forges.gitlab_merge_request(
            path="mike/diaspora", url=GITLAB_URL, action="open", iid=1, head_sha="a" * 40))
        merge_request = client.post("/hooks/gitlab", content=opened,
                                    headers=forges.gitlab_headers(SECRET, event="Merge Request Hook"))
        relabelled = forges.encode(forges.gitlab_merge_request(
            path="mike/diaspora", url=GITLAB_URL, action="update", iid=1, head_sha="a" * 40))
        ignored = client.post("/hooks/gitlab", content=relabelled,
                              headers=forges.gitlab_headers(SECRET, event="Merge Request Hook"))
        new_commits = forges.encode(forges.gitlab_merge_request(
            path="mike/diaspora", url=GITLAB_URL, action="update", iid=1, head_sha="9" * 40,
            oldrev="a" * 40))
        updated = client.post("/hooks/gitlab", content=new_commits,
                              headers=forges.gitlab_headers(SECRET, event="Merge Request Hook"))

    assert pushed.status_code == 201, pushed.text
    run = _run(db, pushed.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"], run["before_sha"], run["author"]) == (
        "push", "refs/heads/main", HEAD, BASE, "Jordi Mallach")
    assert run["trigger"]["changed_files"] == ["CHANGELOG", "README.md"]
    assert run["trigger"]["forge"] == "gitlab"
    assert run["trigger"]["sender"] == "jsmith"

    assert tagged.status_code == 201, tagged.text
    run = _run(db, tagged.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"]) == ("tag", "refs/tags/v1.0.0", "f" * 40)
    assert run["trigger"]["tag"] == "v1.0.0"

    assert merge_request.status_code == 201, merge_request.text
    run = _run(db, merge_request.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"]) == (
        "pull_request", "refs/merge-requests/1/head", "a" * 40)
    assert run["trigger"]["pull_request"] == {
        "number": 1, "title": "MS-Viewport", "head_ref": "ms-viewport", "base_ref": "main",
        "base_sha": None, "action": "open", "fork": False,
        "url": "https://gitlab.example.com/mike/diaspora/-/merge_requests/1"}
    assert ignored.status_code == 202
    assert updated.status_code == 201
    assert _run(db, updated.json()["run_id"])["before_sha"] == "a" * 40


def test_gitlab_wrong_or_missing_token_is_401(api_server: ApiServer, db: psycopg.Connection) -> None:
    body = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after=HEAD))

    with api_server.client() as client:
        _register(client, "mike/diaspora", GITLAB_URL)
        wrong = client.post("/hooks/gitlab", content=body,
                            headers=forges.gitlab_headers("not-the-secret", event="Push Hook"))
        prefix = client.post("/hooks/gitlab", content=body,
                             headers=forges.gitlab_headers(SECRET[:-1], event="Push Hook"))
        missing = client.post("/hooks/gitlab", content=body,
                              headers=forges.gitlab_headers(None, event="Push Hook"))

    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid X-Gitlab-Token token"}
    assert prefix.status_code == 401
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing X-Gitlab-Token header: set a secret on the webhook"}
    assert _count_runs(db) == 0
    stored = db.execute("SELECT headers FROM webhook_deliveries ORDER BY id").fetchall()
    assert len(stored) == 3
    assert all("x-gitlab-token" not in row["headers"] for row in stored)


def test_gitlab_replay_by_idempotency_key_or_event_uuid(api_server: ApiServer,
                                                        db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "mike/diaspora", GITLAB_URL)
        first_body = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL,
                                                      after=HEAD))
        headers = forges.gitlab_headers(SECRET, event="Push Hook",
                                        idempotency_key="908a6d9e-45fd-46c8-97e6-c4f350f219dd")
        first = client.post("/hooks/gitlab", content=first_body, headers=headers)
        # A retry keeps the Idempotency-Key; GitLab sends a fresh event UUID with it.
        retry = client.post("/hooks/gitlab", content=first_body, headers={
            **headers, "X-Gitlab-Event-UUID": "9d7e4c3b-0000-4000-8000-000000000001"})
        other_body = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL,
                                                      after="e" * 40, ref="refs/heads/dev"))
        old_gitlab = forges.gitlab_headers(SECRET, event="Push Hook",
                                           event_uuid="13792a34-cac6-4fda-95a8-c58e00a3954e")
        second = client.post("/hooks/gitlab", content=other_body, headers=old_gitlab)
        second_retry = client.post("/hooks/gitlab", content=other_body, headers=old_gitlab)

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["run_id"] == first.json()["run_id"]
    assert retry.json()["duplicate"] is True
    assert (second.status_code, second_retry.status_code) == (201, 200)
    assert _count_runs(db) == 2


# -- Gitea and Forgejo --------------------------------------------------------

GITEA_URL = "http://localhost:3000/gitea/webhooks.git"


def test_gitea_push_and_pull_request(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "gitea/webhooks", GITEA_URL)
        push = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                               after=HEAD, before=BASE))
        push_headers = forges.gitea_headers(SECRET, push, event="push")
        pushed = client.post("/hooks/gitea", content=push, headers=push_headers)
        replayed = client.post("/hooks/gitea", content=push, headers=push_headers)
        tag = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                              after="e" * 40, ref="refs/tags/v2"))
        tagged = client.post("/hooks/gitea", content=tag,
                             headers=forges.gitea_headers(SECRET, tag, event="push"))
        pull = forges.encode(forges.gitea_pull_request(
            full_name="gitea/webhooks", clone_url=GITEA_URL, action="synchronized", number=3,
            head_sha="a" * 40, base_sha=BASE))
        pulled = client.post("/hooks/gitea", content=pull,
                             headers=forges.gitea_headers(SECRET, pull, event="pull_request"))
        deleted = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                                  after=forges.ZERO, before=HEAD))
        deletion = client.post("/hooks/gitea", content=deleted,
                               headers=forges.gitea_headers(SECRET, deleted, event="push"))

    assert pushed.status_code == 201, pushed.text
    run = _run(db, pushed.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"], run["message"], run["author"]) == (
        "push", "refs/heads/develop", HEAD, "Webhooks Yay!", "gitea")
    assert run["trigger"]["changed_files"] == ["README.md"]
    assert replayed.status_code == 200
    assert replayed.json()["run_id"] == pushed.json()["run_id"]
    assert tagged.status_code == 201
    assert _run(db, tagged.json()["run_id"])["event"] == "tag"
    assert pulled.status_code == 201, pulled.text
    run = _run(db, pulled.json()["run_id"])
    assert (run["event"], run["ref"], run["commit_sha"]) == ("pull_request", "refs/pull/3/head",
                                                            "a" * 40)
    assert run["trigger"]["pull_request"]["base_sha"] == BASE
    assert run["trigger"]["pull_request"]["action"] == "synchronized"
    assert deletion.status_code == 202


def test_gitea_form_encoded_push(api_server: ApiServer, db: psycopg.Connection) -> None:
    payload = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                              after=HEAD, message="Form + body"))
    body = urlencode({"payload": payload.decode()}).encode()
    # Gitea signs the JSON, not the form body it sends.
    headers = {**forges.gitea_headers(SECRET, payload, event="push"),
               "Content-Type": "application/x-www-form-urlencoded"}

    with api_server.client() as client:
        _register(client, "gitea/webhooks", GITEA_URL)
        response = client.post("/hooks/gitea", content=body, headers=headers)

    assert response.status_code == 201, response.text
    run = _run(db, response.json()["run_id"])
    assert (run["commit_sha"], run["message"]) == (HEAD, "Form + body")


def test_forgejo_signature_and_delivery(api_server: ApiServer, db: psycopg.Connection) -> None:
    delivery = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
    with api_server.client() as client:
        _register(client, "gitea/webhooks", GITEA_URL)
        body = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                               after=HEAD))
        headers = forges.gitea_headers(SECRET, body, event="push", flavour="Forgejo",
                                       delivery=delivery)
        only_forgejo = {name: value for name, value in headers.items()
                        if not name.startswith(("X-Gitea", "X-Gogs", "X-GitHub", "X-Hub"))}
        accepted = client.post("/hooks/forgejo", content=body, headers=only_forgejo)
        replayed = client.post("/hooks/forgejo", content=body, headers=only_forgejo)
        wrong = client.post("/hooks/forgejo", content=body, headers={
            **only_forgejo, "X-Forgejo-Signature": "0" * 64,
            "X-Forgejo-Delivery": "00000000-0000-4000-8000-000000000000"})
        gitea_wrong = client.post("/hooks/gitea", content=body, headers={
            **forges.gitea_headers("another-secret", body, event="push")})

    assert accepted.status_code == 201, accepted.text
    assert _run(db, accepted.json()["run_id"])["trigger"]["forge"] == "forgejo"
    assert _run(db, accepted.json()["run_id"])["trigger"]["delivery_id"] == delivery
    assert replayed.status_code == 200
    assert replayed.json()["duplicate"] is True
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid X-Forgejo-Signature signature"}
    assert gitea_wrong.status_code == 401
    assert gitea_wrong.json() == {"detail": "invalid X-Gitea-Signature signature"}
    assert _count_runs(db) == 1


# -- Bitbucket Cloud ----------------------------------------------------------


def test_bitbucket_push_starts_run_per_change(api_server: ApiServer, db: psycopg.Connection) -> None:
    body = forges.encode(forges.bitbucket_push(full_name="emma/app", changes=[
        forges.bitbucket_change(kind="branch", name="main", new_hash=HEAD, old_hash=BASE),
        forges.bitbucket_change(kind="tag", name="v3.1", new_hash="e" * 40),
        forges.bitbucket_change(kind="branch", name="old-feature", new_hash=None, old_hash=BASE),
    ]))
    request_uuid = "3f1e9a52-1111-4c3b-9c1e-8d2f4b6a7c90"

    with api_server.client() as client:
        _register(client, "emma/app", "https://bitbucket.org/emma/app.git")
        response = client.post("/hooks/bitbucket", content=body, headers=forges.bitbucket_headers(
            SECRET, body, request_uuid=request_uuid))
        replay = client.post("/hooks/bitbucket", content=body, headers=forges.bitbucket_headers(
            SECRET, body, request_uuid=request_uuid))
        wrong = client.post("/hooks/bitbucket", content=body, headers=forges.bitbucket_headers(
            "another-secret", body))
        unsigned = client.post("/hooks/bitbucket", content=body,
                               headers=forges.bitbucket_headers(None, body))

    assert response.status_code == 201, response.text
    run_ids = response.json()["run_ids"]
    assert len(run_ids) == 2
    runs = [_run(db, run_id) for run_id in run_ids]
    assert [(run["event"], run["ref"], run["commit_sha"], run["before_sha"]) for run in runs] == [
        ("push", "refs/heads/main", HEAD, BASE), ("tag", "refs/tags/v3.1", "e" * 40, None)]
    assert runs[0]["author"] == "Emma"
    assert runs[0]["trigger"]["sender"] == "emma"
    assert replay.status_code == 200
    assert replay.json()["run_id"] == run_ids[0]
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid X-Hub-Signature signature"}
    assert unsigned.status_code == 401
    assert _count_runs(db) == 2


# -- Records, limits and routing ------------------------------------------------


def test_deliveries_are_listed_with_outcomes(api_server: ApiServer, db: psycopg.Connection) -> None:
    with api_server.client() as client:
        _register(client, "mike/diaspora", GITLAB_URL)
        body = forges.encode(forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after=HEAD))
        created = client.post("/hooks/gitlab", content=body,
                              headers=forges.gitlab_headers(SECRET, event="Push Hook",
                                                            idempotency_key="key-1"))
        client.post("/hooks/gitlab", content=body,
                    headers=forges.gitlab_headers("bad-token-value", event="Push Hook"))
        client.post("/hooks/gitlab", content=body,
                    headers=forges.gitlab_headers(SECRET, event="Pipeline Hook"))
        listing = client.get("/api/webhooks/deliveries", params={"repo": "mike/diaspora"})
        rejected = client.get("/api/webhooks/deliveries", params={"outcome": "rejected"})
        detail = client.get(f"/api/webhooks/deliveries/{listing.json()['deliveries'][-1]['id']}")
        missing = client.get("/api/webhooks/deliveries/999999")
        bad_outcome = client.get("/api/webhooks/deliveries", params={"outcome": "rejectd"})
        bad_forge = client.get("/api/webhooks/deliveries", params={"forge": "sourcehut"})

    assert listing.status_code == 200
    deliveries = listing.json()["deliveries"]
    assert [(d["forge"], d["event"], d["status_code"], d["outcome"], d["accepted"])
            for d in deliveries] == [
        ("gitlab", "Pipeline Hook", 202, "ignored", True),
        ("gitlab", "Push Hook", 401, "rejected", False),
        ("gitlab", "Push Hook", 201, "created", True)]
    assert deliveries[2]["run_id"] == created.json()["run_id"]
    assert deliveries[2]["delivery_id"] == "key-1"
    assert [d["message"] for d in rejected.json()["deliveries"]] == ["invalid X-Gitlab-Token token"]
    headers = detail.json()["headers"]
    assert headers["x-gitlab-event"] == "Push Hook"
    assert "x-gitlab-token" not in headers
    assert missing.status_code == 404
    assert bad_outcome.status_code == 422
    assert bad_outcome.json()["field"] == "outcome"
    assert bad_forge.status_code == 422
    assert bad_forge.json()["field"] == "forge"


def test_delivery_filter_choices_match_code() -> None:
    assert set(get_args(schemas.ForgeName)) == set(FORGES)


def test_unknown_forge_is_404(api_server: ApiServer) -> None:
    with api_server.client() as client:
        response = client.post("/hooks/sourcehut", content=b"{}")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "unknown forge 'sourcehut': use github, gitlab, gitea, forgejo, bitbucket"}


def test_oversized_gitlab_body_is_413(api_server: ApiServer) -> None:
    body = b" " * (25 * 1024 * 1024 + 1)

    with api_server.client() as client:
        response = client.post("/hooks/gitlab", content=body,
                               headers=forges.gitlab_headers(SECRET, event="Push Hook"))

    assert response.status_code == 413


def test_payload_missing_field_is_400(api_server: ApiServer) -> None:
    payload = forges.gitlab_merge_request(path="mike/diaspora", url=GITLAB_URL, action="open",
                                          iid=1, head_sha=HEAD)
    del payload["object_attributes"]["last_commit"]
    body = forges.encode(payload)

    with api_server.client() as client:
        _register(client, "mike/diaspora", GITLAB_URL)
        response = client.post("/hooks/gitlab", content=body,
                               headers=forges.gitlab_headers(SECRET, event="Merge Request Hook"))

    assert response.status_code == 400
    assert response.json() == {"detail": "the payload has no field 'object_attributes.last_commit.id'"}


def test_webhooks_use_signatures_not_api_tokens(api_server: ApiServer, db: psycopg.Connection) -> None:
    body = forges.encode(forges.gitea_push(full_name="gitea/webhooks", clone_url=GITEA_URL,
                                           after=HEAD))
    with api_server.client() as admin:
        _register(admin, "gitea/webhooks", GITEA_URL)
        # An admin API token does not stand in for the webhook signature.
        forged = admin.post("/hooks/gitea", content=body,
                            headers=forges.gitea_headers("not-the-secret", body, event="push"))
    with api_server.client(token=None) as anonymous:
        signed = anonymous.post("/hooks/gitea", content=body,
                                headers=forges.gitea_headers(SECRET, body, event="push"))

    assert forged.status_code == 401
    assert signed.status_code == 201
    assert _count_runs(db) == 1
