"""Notification bodies, signatures and outcome rules, checked against the receivers' documented shapes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest

from minijenkin import __version__
from minijenkin.notify.dispatcher import classify, error_text, parse_retry_after
from minijenkin.notify.render import (
    Endpoints,
    RenderError,
    build_request,
    discord_body,
    format_duration,
    sign,
    slack_body,
    webhook_body,
)

RUN_URL = "https://ci.example.com/runs/12"
ENDPOINTS = Endpoints("https://ci.example.com", "https://api.github.com", "https://gitlab.com")
KEY = "5f1c1c1e-7c1a-4a55-9d1e-0c7f3c3b9a10"


def failed_payload() -> dict[str, Any]:
    """A payload as mj_outbox_enqueue_run_v1 builds it for a failed run."""
    return {
        "event": "run.failed",
        "occurred_at": "2026-12-04T12:01:05.000Z",
        "previous_status": "succeeded",
        "repository": {"id": 3, "name": "acme/web"},
        "run": {
            "id": 12, "status": "failed", "trigger": "push", "ref": "refs/heads/main",
            "branch": "main", "tag": None, "reason": "job test failed",
            "created_at": "2026-12-04T12:00:00.000Z", "started_at": "2026-12-04T12:00:00.500Z",
            "finished_at": "2026-12-04T12:01:05.000Z", "queued_seconds": 0.5,
            "duration_seconds": 64.5,
        },
        "commit": {"sha": "0123456789abcdef0123456789abcdef01234567", "before": None,
                   "message": "Fix <b>&</b> the *parser*\n\nLonger body", "author": "Ada"},
        "jobs": [
            {"id": 40, "key": "lint", "name": "lint", "status": "succeeded", "attempt": 1,
             "exit_code": 0, "reason": None, "started_at": "2026-12-04T12:00:01.000Z",
             "finished_at": "2026-12-04T12:00:11.000Z", "duration_seconds": 10.0},
            {"id": 41, "key": "test", "name": "test", "status": "failed", "attempt": 1,
             "exit_code": 2, "reason": "step 'pytest' failed with exit code 2",
             "started_at": "2026-12-04T12:00:01.000Z", "finished_at": "2026-12-04T12:01:04.000Z",
             "duration_seconds": 63.0},
        ],
    }


def test_slack_body_shape() -> None:
    assert slack_body(failed_payload(), RUN_URL) == {
        "text": "acme/web #12 failed on main: job test failed",
        "blocks": [
            {"type": "section", "text": {
                "type": "mrkdwn",
                "text": "*<https://ci.example.com/runs/12|acme/web #12>* failed on `main`\n"
                        "job test failed"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn",
                 "text": "*Commit*\n`0123456` Fix &lt;b&gt;&amp;&lt;/b&gt; the *parser*"},
                {"type": "mrkdwn", "text": "*Author*\nAda"},
                {"type": "mrkdwn", "text": "*Duration*\n1m 04s"},
                {"type": "mrkdwn", "text": "*Jobs*\n1/2 succeeded"},
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Failed jobs: test"}]},
        ],
    }


def test_slack_escapes_mentions_in_branch() -> None:
    payload = failed_payload()
    payload["run"]["branch"] = "<!channel>"

    body = slack_body(payload, RUN_URL)

    assert body["blocks"][0]["text"]["text"].endswith("failed on `&lt;!channel&gt;`\njob test failed")
    assert "<!channel>" not in json.dumps(body)


def test_discord_body_shape() -> None:
    assert discord_body(failed_payload(), RUN_URL) == {
        "content": "acme/web #12 failed on main",
        "embeds": [{
            "title": "acme/web #12 failed on main",
            "url": "https://ci.example.com/runs/12",
            "description": "job test failed\nFix \\<b\\>&\\</b\\> the \\*parser\\*",
            "color": 0xCF222E,
            "fields": [
                {"name": "Ref", "value": "main", "inline": True},
                {"name": "Commit", "value": "`0123456`", "inline": True},
                {"name": "Author", "value": "Ada", "inline": True},
                {"name": "Duration", "value": "1m 04s", "inline": True},
                {"name": "Jobs", "value": "1/2 succeeded", "inline": True},
                {"name": "Failed jobs", "value": "test", "inline": False},
            ],
            "timestamp": "2026-12-04T12:01:05.000Z",
            "footer": {"text": "Mini-Jenkin"},
        }],
        "allowed_mentions": {"parse": []},
    }


def test_discord_embed_stays_within_total_limit() -> None:
    payload = failed_payload()
    payload["run"]["branch"] = "b" * 300
    payload["run"]["reason"] = "r" * 3000
    payload["commit"]["message"] = "m" * 5000
    payload["commit"]["author"] = "a" * 2000
    payload["jobs"] = [
        {**payload["jobs"][1], "id": 100 + index, "key": f"{'j' * 90}{index}",
         "name": f"{'j' * 90}{index}"}
        for index in range(12)]

    embed = discord_body(payload, RUN_URL)["embeds"][0]
    total = (len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
             + sum(len(field["name"]) + len(field["value"]) for field in embed["fields"]))

    assert total == 6000
    assert len(embed["description"]) <= 4096
    assert embed["description"].startswith("r" * 100)
    assert embed["description"].endswith("\u2026")


@pytest.mark.parametrize(("event", "status", "colour", "verb"), [
    ("run.succeeded", "succeeded", 0x2DA44E, "succeeded"),
    ("run.fixed", "succeeded", 0x2DA44E, "is fixed"),
    ("run.cancelled", "cancelled", 0x6E7781, "was cancelled"),
])
def test_discord_colour_by_status(event: str, status: str, colour: int, verb: str) -> None:
    payload = failed_payload()
    payload["event"] = event
    payload["run"]["status"] = status

    body = discord_body(payload, RUN_URL)

    assert body["embeds"][0]["color"] == colour
    assert body["content"] == f"acme/web #12 {verb} on main"


def test_discord_deploy_started_is_blue() -> None:
    payload = failed_payload()
    payload["event"] = "deploy.started"
    payload["deployment"] = {"environment": "production", "status": "running", "job_id": 41,
                             "job_name": "deploy", "started_at": None, "finished_at": None}

    body = discord_body(payload, RUN_URL)

    assert body["embeds"][0]["color"] == 0x0969DA
    assert body["content"] == "Deploy of acme/web #12 to production started on main"
    assert {"name": "Environment", "value": "production", "inline": True} in body["embeds"][0]["fields"]


def test_webhook_body_shape() -> None:
    payload = failed_payload()

    body = webhook_body(payload, delivery_id=7, idempotency_key=KEY, run_url=RUN_URL)

    assert body == {
        "event": "run.failed",
        "delivery": {"id": 7, "idempotency_key": KEY},
        "occurred_at": "2026-12-04T12:01:05.000Z",
        "repository": {"id": 3, "name": "acme/web"},
        "run": {**payload["run"], "url": RUN_URL},
        "commit": payload["commit"],
        "jobs": payload["jobs"],
        "url": RUN_URL,
        "previous_status": "succeeded",
    }


def test_webhook_request_is_signed() -> None:
    request = build_request(
        delivery_id=7, kind="webhook", event="run.failed", payload=failed_payload(),
        idempotency_key=KEY, options={}, repo_name="acme/web",
        url="https://hooks.example.com/ci", secret="hook-secret", endpoints=ENDPOINTS)

    expected = hmac.new(b"hook-secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Minijenkin-Signature"] == f"sha256={expected}"
    assert request.headers["Idempotency-Key"] == KEY
    assert request.headers["X-Minijenkin-Event"] == "run.failed"
    assert request.headers["X-Minijenkin-Delivery"] == "7"
    assert request.headers["User-Agent"] == f"Mini-Jenkin/{__version__}"
    assert json.loads(request.body)["run"]["url"] == RUN_URL
    assert (request.method, request.url) == ("POST", "https://hooks.example.com/ci")


def test_webhook_without_secret_is_unsigned() -> None:
    request = build_request(
        delivery_id=7, kind="webhook", event="run.failed", payload=failed_payload(),
        idempotency_key=KEY, options={}, repo_name="acme/web",
        url="https://hooks.example.com/ci", secret=None, endpoints=ENDPOINTS)

    assert "X-Minijenkin-Signature" not in request.headers


def test_sign_matches_hmac_sha256() -> None:
    assert sign("key", b"body") == "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()


def test_github_status_request() -> None:
    request = build_request(
        delivery_id=7, kind="github-status", event="run.failed", payload=failed_payload(),
        idempotency_key=KEY, options={"context": "ci/minijenkin"}, repo_name="acme/web",
        url=None, secret="ghp_token", endpoints=ENDPOINTS)

    assert request.url == ("https://api.github.com/repos/acme/web/statuses/"
                           "0123456789abcdef0123456789abcdef01234567")
    assert request.headers["Authorization"] == "Bearer ghp_token"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert json.loads(request.body) == {
        "state": "failure", "target_url": RUN_URL,
        "description": "Run #12 failed: job test failed", "context": "ci/minijenkin"}


def test_github_status_needs_owner_and_name() -> None:
    with pytest.raises(RenderError, match="GitHub project 'web' is not owner/repository"):
        build_request(
            delivery_id=7, kind="github-status", event="run.failed", payload=failed_payload(),
            idempotency_key=KEY, options={}, repo_name="web", url=None, secret="ghp_token",
            endpoints=ENDPOINTS)


@pytest.mark.parametrize("kind", ["github-status", "gitlab-status"])
@pytest.mark.parametrize("token", ["glpat-line\nbreak", "glpat-t\u00f6ken", "glpat token"])
def test_status_token_not_header_safe(kind: str, token: str) -> None:
    with pytest.raises(RenderError) as raised:
        build_request(
            delivery_id=7, kind=kind, event="run.failed", payload=failed_payload(),
            idempotency_key=KEY, options={"project": "acme/web"}, repo_name="acme/web",
            url=None, secret=token, endpoints=ENDPOINTS)

    message = str(raised.value)
    assert message.startswith(f"the {kind} target's API token contains characters other than")
    assert token not in message
    assert repr(token) not in message


def test_gitlab_status_request() -> None:
    payload = failed_payload()
    payload["event"] = "run.cancelled"
    payload["run"]["status"] = "cancelled"

    request = build_request(
        delivery_id=7, kind="gitlab-status", event="run.cancelled", payload=payload,
        idempotency_key=KEY, options={"project": "group/sub/web"}, repo_name="acme/web",
        url="https://gitlab.example.com/", secret="glpat-token", endpoints=ENDPOINTS)

    assert request.url == ("https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fweb/statuses/"
                           "0123456789abcdef0123456789abcdef01234567")
    assert request.headers["PRIVATE-TOKEN"] == "glpat-token"
    assert json.loads(request.body) == {
        "state": "canceled", "ref": "main", "name": "minijenkin", "target_url": RUN_URL,
        "description": "Run #12 was cancelled"}


def test_status_description_is_cut_at_140() -> None:
    payload = failed_payload()
    payload["run"]["reason"] = "x" * 300

    request = build_request(
        delivery_id=7, kind="github-status", event="run.failed", payload=payload,
        idempotency_key=KEY, options={}, repo_name="acme/web", url=None, secret="t0ken-value",
        endpoints=ENDPOINTS)

    description = json.loads(request.body)["description"]
    assert len(description) == 140
    assert description.endswith("…")


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (201, "delivered"), (204, "delivered"),
    (301, "failed"), (400, "failed"), (401, "failed"), (403, "failed"), (404, "failed"),
    (410, "failed"), (422, "failed"),
    (408, "retry"), (409, "retry"), (425, "retry"), (429, "retry"),
    (500, "retry"), (502, "retry"), (503, "retry"),
])
def test_classify_status(status: int, outcome: str) -> None:
    assert classify(status) == outcome


def test_retry_after_seconds_and_date() -> None:
    now = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)

    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after("Fri, 04 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 04 Dec 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "\uff15", "1.5", "-3", "5s"])
def test_retry_after_non_ascii_digits_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.4, "0s"), (59.6, "1m 00s"), (64.5, "1m 04s"), (3725, "1h 02m"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_error_text_redacts_and_removes_nul() -> None:
    text = error_text("HTTP 400: bad token s3cr3t-token at https://hooks.example.com/abc\x00!",
                      ["s3cr3t-token", "https://hooks.example.com/abc"])

    assert text == "HTTP 400: bad token [redacted] at [redacted]\ufffd!"
    assert len(error_text("x" * 5000, [])) == 1000
