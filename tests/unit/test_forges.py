"""Payload mapping and credential checks of GitLab, Gitea/Forgejo and Bitbucket, and shared helpers."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from minijenkin.forges import (
    ForgeEvent,
    IgnoredEvent,
    PayloadError,
    bitbucket,
    decode_body,
    gitea,
    github,
    gitlab,
    sign_hmac_sha256,
    tokens_match,
)
from tests.support import forges

HEAD = "b" * 40
GITLAB_URL = "https://gitlab.example.com/mike/diaspora.git"


def test_tokens_match_in_constant_time_rules() -> None:
    assert tokens_match("secret-token", "secret-token") is True
    assert tokens_match("secret-toke", "secret-token") is False
    assert tokens_match("", "secret-token") is False
    assert tokens_match(None, "secret-token") is False
    assert tokens_match("secret-token", "") is False


def test_form_body_payload_is_decoded() -> None:
    body = urlencode({"payload": '{"zen": "Keep it simple."}'}).encode()

    assert decode_body(body, "application/x-www-form-urlencoded; charset=utf-8") == {
        "zen": "Keep it simple."}


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"other=1", "application/x-www-form-urlencoded", "invalid form body: it has no 'payload' field"),
    (b"payload=%7Bbroken", "application/x-www-form-urlencoded", "invalid JSON body:"),
    (b"[1, 2]", "application/json", "invalid JSON body: expected an object"),
    (b"\xff\xfe", None, "invalid JSON body:"),
])
def test_bad_bodies_are_rejected(body: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(PayloadError) as raised:
        decode_body(body, content_type)

    assert str(raised.value).startswith(message)


def test_github_pull_request_without_head_sha_names_field() -> None:
    payload = forges.github_pull_request(full_name="acme/web", clone_url="x", action="opened",
                                         number=1, head_sha=HEAD, base_sha=HEAD)
    del payload["pull_request"]["head"]["sha"]

    with pytest.raises(PayloadError, match="the payload has no field 'pull_request.head.sha'"):
        github.parse("pull_request", payload)


def test_github_commit_id_is_checked() -> None:
    payload = forges.github_pull_request(full_name="acme/web", clone_url="x", action="opened",
                                         number=1, head_sha="not-a-sha", base_sha=HEAD)

    with pytest.raises(PayloadError, match="'pull_request.head.sha' is not a commit id"):
        github.parse("pull_request", payload)


def test_gitlab_annotated_tag_uses_checkout_sha() -> None:
    payload = forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after="e" * 40,
                                 ref="refs/tags/v1.0.0", tag=True, checkout_sha="f" * 40)

    event = gitlab.parse("Tag Push Hook", payload)

    assert isinstance(event, ForgeEvent)
    assert (event.kind, event.tag, event.commit) == ("tag", "v1.0.0", "f" * 40)


def test_gitlab_tag_deletion_is_ignored() -> None:
    payload = forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after=forges.ZERO,
                                 before=HEAD, ref="refs/tags/v1.0.0", tag=True)

    event = gitlab.parse("Tag Push Hook", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.reason == "refs/tags/v1.0.0 was deleted; a deletion starts no run"


def test_gitlab_truncated_commit_list_leaves_changed_files_unknown() -> None:
    payload = forges.gitlab_push(path="mike/diaspora", url=GITLAB_URL, after=HEAD)
    payload["total_commits_count"] = 25

    event = gitlab.parse("Push Hook", payload)

    assert isinstance(event, ForgeEvent)
    assert event.changed_files is None


def test_gitlab_merge_request_from_fork() -> None:
    payload = forges.gitlab_merge_request(path="mike/diaspora", url=GITLAB_URL, action="reopen",
                                          iid=4, head_sha=HEAD, source_project_id=99)

    event = gitlab.parse("Merge Request Hook", payload)

    assert isinstance(event, ForgeEvent)
    assert event.pull_request is not None
    assert event.pull_request["fork"] is True


@pytest.mark.parametrize("action", ["close", "merge", "approved"])
def test_gitlab_merge_request_other_actions_are_ignored(action: str) -> None:
    payload = forges.gitlab_merge_request(path="mike/diaspora", url=GITLAB_URL, action=action,
                                          iid=4, head_sha=HEAD)

    event = gitlab.parse("Merge Request Hook", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.reason == (f"merge request !4: the action {action!r} starts no run; only "
                            "opening, reopening and pushing commits start one")


def test_gitea_and_forgejo_signature_headers() -> None:
    body = b'{"ref": "refs/heads/main"}'
    signature = sign_hmac_sha256("gitea-secret", body)

    assert gitea.GITEA.verify("gitea-secret", body, {"x-gitea-signature": signature}) is True
    assert gitea.GITEA.verify("gitea-secret", body,
                              {"x-gitea-signature": "sha256=" + signature}) is False
    assert gitea.FORGEJO.verify("gitea-secret", body, {"x-gitea-signature": signature}) is True
    assert gitea.FORGEJO.verify("gitea-secret", body, {"x-forgejo-signature": signature}) is True
    assert gitea.FORGEJO.verify("other-secret", body, {"x-forgejo-signature": signature}) is False


def test_gitea_form_body_signature_covers_json() -> None:
    payload = b'{"ref": "refs/heads/main", "note": "a+b & c"}'
    body = urlencode({"payload": payload.decode()}).encode()
    form = {"content-type": "application/x-www-form-urlencoded"}
    over_json = {**form, "x-gitea-signature": sign_hmac_sha256("gitea-secret", payload)}
    over_form = {**form, "x-gitea-signature": sign_hmac_sha256("gitea-secret", body)}

    assert gitea.GITEA.verify("gitea-secret", body, over_json) is True
    assert gitea.GITEA.verify("gitea-secret", body, over_form) is True
    assert gitea.GITEA.verify("other-secret", body, over_json) is False
    # A JSON body is signed as sent, never as a decoded form.
    assert gitea.GITEA.verify("gitea-secret", body, {
        "content-type": "application/json",
        "x-gitea-signature": sign_hmac_sha256("gitea-secret", payload)}) is False


def test_gitea_annotated_tag_uses_head_commit() -> None:
    payload = forges.gitea_push(full_name="gitea/webhooks", clone_url="x", after=HEAD,
                                ref="refs/tags/v2")
    payload["after"] = "e" * 40

    event = gitea.GITEA.parse("push", payload)

    assert isinstance(event, ForgeEvent)
    assert event.commit == HEAD

def test_gitea_event_and_delivery_headers_by_flavour() -> None:
    headers = {"x-gitea-event": "push", "x-gitea-delivery": "d-1"}

    assert gitea.GITEA.event_name(headers) == "push"
    assert gitea.FORGEJO.event_name(headers) == "push"
    assert gitea.FORGEJO.delivery_id({**headers, "x-forgejo-delivery": "d-2"}) == "d-2"


def test_gitea_create_event_is_ignored() -> None:
    payload = forges.gitea_push(full_name="gitea/webhooks", clone_url="x", after=HEAD)

    event = gitea.GITEA.parse("create", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.reason == "Gitea event 'create' starts no run"


def test_bitbucket_push_maps_each_change() -> None:
    payload = forges.bitbucket_push(full_name="emma/app", changes=[
        forges.bitbucket_change(kind="branch", name="main", new_hash=HEAD, old_hash="c" * 40),
        forges.bitbucket_change(kind="tag", name="v1", new_hash="d" * 40)])

    events = bitbucket.parse("repo:push", payload)

    assert isinstance(events, tuple)
    assert [(event.kind, event.ref, event.branch, event.tag, event.before) for event in events] == [
        ("push", "refs/heads/main", "main", None, "c" * 40),
        ("tag", "refs/tags/v1", None, "v1", None)]
    assert events[0].repository.clone_urls == ("https://bitbucket.org/emma/app.git",
                                               "https://bitbucket.org/emma/app")


def test_bitbucket_deletion_only_is_ignored() -> None:
    payload = forges.bitbucket_push(full_name="emma/app", changes=[
        forges.bitbucket_change(kind="branch", name="old", new_hash=None, old_hash=HEAD)])

    event = bitbucket.parse("repo:push", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.reason == "the push only deleted branches or tags; a deletion starts no run"


def test_bitbucket_change_of_unknown_type_names_field() -> None:
    change = forges.bitbucket_change(kind="branch", name="main", new_hash=HEAD)
    change["new"]["type"] = "bookmark"
    payload = forges.bitbucket_push(full_name="emma/app", changes=[change])

    with pytest.raises(PayloadError, match=r"'push.changes\[0\].new' must name a branch or a tag"):
        bitbucket.parse("repo:push", payload)


def test_bitbucket_signature_needs_sha256_prefix() -> None:
    body = b"{}"
    signature = sign_hmac_sha256("bb-secret", body)

    assert bitbucket.verify_signature("bb-secret", body,
                                      {"x-hub-signature": "sha256=" + signature}) is True
    assert bitbucket.verify_signature("bb-secret", body, {"x-hub-signature": signature}) is False
