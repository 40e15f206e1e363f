"""POST /hooks/github over real HTTP: signatures, replays, deletions, errors."""

from __future__ import annotations

import psycopg

from tests.support.api import ApiServer
from tests.support.factories import create_repo
from tests.support.github import ZERO, encode, push_payload, signed_headers

SECRET = "webhook-secret-1"
REPO = "acme/web"
CLONE_URL = "https://github.com/acme/web.git"


def _push(after: str = "b" * 40, **overrides: object) -> bytes:
    return encode(push_payload(full_name=REPO, clone_url=CLONE_URL, after=after, **overrides))


def test_signed_push_creates_run_and_plan(api_server: ApiServer, db: psycopg.Connection) -> None:
    repo_id = create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push(message="Add feature")

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))

    assert response.status_code == 201
    run_id = response.json()["run_id"]
    run = db.execute("SELECT repo_id, status, event, ref, commit_sha, message FROM pipeline_runs "
                     "WHERE id = %s", (run_id,)).fetchone()
    assert run == {"repo_id": repo_id, "status": "queued", "event": "push",
                   "ref": "refs/heads/main", "commit_sha": "b" * 40, "message": "Add feature"}
    jobs = db.execute("SELECT kind, status FROM jobs WHERE run_id = %s", (run_id,)).fetchall()
    assert jobs == [{"kind": "plan", "status": "queued"}]


def test_replayed_delivery_creates_nothing(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push()
    headers = signed_headers(SECRET, body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")

    with api_server.client() as client:
        first = client.post("/hooks/github", content=body, headers=headers)
        second = client.post("/hooks/github", content=body, headers=headers)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["run_id"] == first.json()["run_id"]
    assert second.json()["duplicate"] is True
    count = db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"]
    assert count == 1


def test_bad_signature_is_rejected(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push()
    headers = signed_headers("another-secret", body)

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid X-Hub-Signature-256 signature"}
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0
    delivery = db.execute("SELECT accepted, status_code, outcome FROM webhook_deliveries").fetchone()
    assert delivery == {"accepted": False, "status_code": 401, "outcome": "rejected"}


def test_missing_signature_is_rejected(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push()
    headers = signed_headers(SECRET, body)
    del headers["X-Hub-Signature-256"]

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=headers)

    assert response.status_code == 401
    assert "missing X-Hub-Signature-256 header" in response.json()["detail"]


def test_forged_delivery_does_not_block_real_one(api_server: ApiServer,
                                                 db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push()
    delivery = "0b6d6e2c-0000-4000-8000-000000000001"

    with api_server.client() as client:
        forged = client.post("/hooks/github", content=body,
                             headers=signed_headers("wrong-secret", body, delivery=delivery))
        real = client.post("/hooks/github", content=body,
                           headers=signed_headers(SECRET, body, delivery=delivery))

    assert forged.status_code == 401
    assert real.status_code == 201


def test_unknown_repository_is_404(api_server: ApiServer, db: psycopg.Connection) -> None:
    body = _push()

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))

    assert response.status_code == 404
    assert response.json() == {"detail": "repository 'acme/web' is not registered"}


def test_branch_deletion_creates_no_run(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = _push(after=ZERO, before="c" * 40, deleted=True, ref="refs/heads/feature")

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))

    assert response.status_code == 202
    assert response.json() == {
        "detail": "refs/heads/feature was deleted; a deletion starts no run", "run_id": None}
    assert db.execute("SELECT count(*) AS n FROM pipeline_runs").fetchone()["n"] == 0


def test_invalid_json_is_400(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = b'{"ref": "refs/heads/main", '

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("invalid JSON body:")


def test_ping_is_200(api_server: ApiServer, db: psycopg.Connection) -> None:
    create_repo(db, REPO, CLONE_URL, SECRET)
    body = encode({"zen": "Design for failure.", "hook_id": 42,
                   "repository": {"full_name": REPO, "clone_url": CLONE_URL}})

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body,
                               headers=signed_headers(SECRET, body, event="ping"))

    assert response.status_code == 200
    assert response.json() == {"detail": "pong", "run_id": None}


def test_oversized_body_is_413(api_server: ApiServer, db: psycopg.Connection) -> None:
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00",
               "Content-Type": "application/json"}
    body = b" " * (25 * 1024 * 1024 + 1)

    with api_server.client() as client:
        response = client.post("/hooks/github", content=body, headers=headers)

    assert response.status_code == 413
