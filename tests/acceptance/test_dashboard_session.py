"""Dashboard sessions: sign-in with a token, cookie flags, CSRF checks and the token's scope."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from minijenkin.config import Settings
from tests.support import factories
from tests.support.api import ApiServer
from tests.support.dashboard import create_run, create_token, sign_in

NONCE = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


@pytest.fixture
def anonymous_api(settings: Settings, database_url: str) -> Iterator[ApiServer]:
    server = ApiServer(settings.model_copy(update={"anonymous_read": True}), database_url).start()
    yield server
    server.stop()


def signin_form(client: httpx.Client) -> str:
    response = client.get("/signin")
    assert response.status_code == 200
    match = NONCE.search(response.text)
    assert match is not None
    return match.group(1)


def test_signin_keeps_token_in_strict_httponly_cookie(api_server: ApiServer) -> None:
    token = create_token(api_server, "read")
    with httpx.Client(base_url=api_server.url) as client:
        nonce = signin_form(client)
        response = client.post("/signin", data={"csrf_token": nonce, "token": token,
                                                "next": "/workers"})
        page = client.get("/workers")

    assert response.status_code == 303
    assert response.headers["location"] == "/workers"
    cookie = [value for value in response.headers.get_list("set-cookie")
              if value.startswith("mj_session=")]
    assert len(cookie) == 1
    flags = [part.strip().lower() for part in cookie[0].split(";")[1:]]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert "secure" not in flags
    assert cookie[0].split(";")[0].endswith("." + token)
    assert page.status_code == 200
    assert "read user <span class=\"scope\">read</span>" in page.text


def test_signin_rejects_unknown_token_and_foreign_form(api_server: ApiServer) -> None:
    with httpx.Client(base_url=api_server.url) as client:
        nonce = signin_form(client)
        unknown = client.post("/signin", data={"csrf_token": nonce, "token": "mjt_" + "x" * 43})
        no_nonce = client.post("/signin", data={"token": "mjt_" + "x" * 43})
        nonce = signin_form(client)
        foreign = client.post("/signin", data={"csrf_token": nonce, "token": "mjt_" + "x" * 43},
                              headers={"Origin": "http://attacker.example"})

    assert unknown.status_code == 401
    assert "token: unknown, revoked or expired" in unknown.text
    assert "mj_session=" not in unknown.headers.get("set-cookie", "")
    assert no_nonce.status_code == 403
    assert "the sign-in form expired or came from another site" in no_nonce.text
    assert foreign.status_code == 403
    assert "Origin &#39;http://attacker.example&#39; is not this dashboard" in foreign.text


def test_signin_redirects_only_within_the_site(api_server: ApiServer) -> None:
    token = create_token(api_server, "read")
    with httpx.Client(base_url=api_server.url) as client:
        nonce = signin_form(client)
        response = client.post("/signin", data={"csrf_token": nonce, "token": token,
                                                "next": "//attacker.example/x"})

    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_cookie_post_needs_csrf_header_and_same_origin(api_server: ApiServer,
                                                       db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    run_id = create_run(db, repo_id)
    with sign_in(api_server, create_token(api_server, "trigger")) as session:
        client = session.client
        missing = client.post(f"/api/runs/{run_id}/cancel")
        wrong = client.post(f"/api/runs/{run_id}/cancel", headers={"X-CSRF-Token": "0" * 64})
        foreign = session.post_action(f"/api/runs/{run_id}/cancel", Origin="http://attacker.example")
        status_before = factories.run_status(db, run_id)
        accepted = session.post_action(f"/api/runs/{run_id}/cancel", Origin=api_server.url)

    assert missing.status_code == 403
    assert "missing or invalid CSRF token" in missing.json()["detail"]
    assert wrong.status_code == 403
    assert foreign.status_code == 403
    assert status_before == "queued"
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"affected": 1, "outcome": None}
    assert factories.run_status(db, run_id) == "cancelled"


def test_read_scope_sees_no_actions_and_cannot_act(api_server: ApiServer,
                                                   db: psycopg.Connection) -> None:
    repo_id = factories.create_repo(db)
    run_id = create_run(db, repo_id)
    reader_token = create_token(api_server, "read")
    trigger_token = create_token(api_server, "trigger")

    with sign_in(api_server, reader_token) as reader, sign_in(api_server, trigger_token) as trigger:
        reader_page = reader.client.get(f"/runs/{run_id}").text
        trigger_page = trigger.client.get(f"/runs/{run_id}").text
        refused = reader.post_action(f"/api/runs/{run_id}/cancel")
        deliveries = trigger.client.get("/deliveries")

    assert 'data-action="/api/runs/' not in reader_page
    assert f'data-action="/api/runs/{run_id}/cancel"' in trigger_page
    assert refused.status_code == 403
    assert refused.json()["detail"] == "token 'read user' has scope 'read'; this needs 'trigger'"
    assert factories.run_status(db, run_id) == "queued"
    assert deliveries.status_code == 403
    assert "notification deliveries need an admin token" in deliveries.text


def test_signout_clears_the_cookie(api_server: ApiServer) -> None:
    with sign_in(api_server, create_token(api_server, "read")) as session:
        client = session.client
        refused = client.post("/signout", data={})
        response = client.post("/signout", data={"csrf_token": session.csrf_token})
        after = client.get("/")

    assert refused.status_code == 403
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert after.status_code == 303
    assert after.headers["location"] == "/signin?next=/"


def test_revoked_token_sends_the_browser_to_signin(api_server: ApiServer) -> None:
    token = create_token(api_server, "read")
    with sign_in(api_server, token) as session, api_server.client() as admin:
        token_id = [row["id"] for row in admin.get("/api/tokens").json()["tokens"]
                    if row["name"] == "read user"][0]
        assert admin.delete(f"/api/tokens/{token_id}").status_code == 204
        page = session.client.get("/workers")

    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/workers&expired=1"


def test_anonymous_reading_follows_the_setting(api_server: ApiServer,
                                               anonymous_api: ApiServer) -> None:
    with api_server.client(token=None) as closed, anonymous_api.client(token=None) as open_:
        redirected = closed.get("/charts?days=7")
        page = open_.get("/")
        stream_refused = closed.get("/ui/events")

    assert redirected.status_code == 303
    assert redirected.headers["location"] == "/signin?next=/charts%3Fdays%3D7"
    assert page.status_code == 200
    assert "anonymous (read only)" in page.text
    assert stream_refused.status_code == 401
