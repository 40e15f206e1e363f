from __future__ import annotations

import pytest

from minijenkin.forges import ForgeEvent, IgnoredEvent, PayloadError, github, sign_hmac_sha256
from tests.support.github import encode, push_payload

SECRET = "It's a Secret to Everybody"


def test_signature_matches_github_documented_example() -> None:
    # The example from GitHub's "Validating webhook deliveries" page.
    body = b"Hello, World!"
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    assert github.verify_signature(SECRET, body, {"x-hub-signature-256": header}) is True


def test_signature_rejects_tampered_body() -> None:
    header = "sha256=" + sign_hmac_sha256(SECRET, b"Hello, World!")

    assert github.verify_signature(SECRET, b"Hello, World?", {"x-hub-signature-256": header}) is False


@pytest.mark.parametrize("header", [None, "", "sha1=abc", "sha256=", "sha256=zz", "757107ea"])
def test_signature_rejects_malformed_header(header: str | None) -> None:
    headers = {} if header is None else {"x-hub-signature-256": header}

    assert github.verify_signature(SECRET, b"Hello, World!", headers) is False


def test_push_maps_to_event() -> None:
    payload = push_payload(full_name="acme/web", clone_url="https://github.com/acme/web.git",
                           after="a" * 40, before="b" * 40, message="Fix it", modified=["x.py"])

    event = github.parse("push", payload)

    assert isinstance(event, ForgeEvent)
    assert event.kind == "push"
    assert event.ref == "refs/heads/main"
    assert event.branch == "main"
    assert event.tag is None
    assert event.commit == "a" * 40
    assert event.before == "b" * 40
    assert event.message == "Fix it"
    assert event.author == "tester"
    assert event.changed_files == ("x.py",)
    assert event.repository.full_name == "acme/web"
    assert "https://github.com/acme/web.git" in event.repository.clone_urls


def test_tag_push_maps_to_tag_event() -> None:
    payload = push_payload(full_name="acme/web", clone_url="x", ref="refs/tags/v1.2.0",
                           after="c" * 40)

    event = github.parse("push", payload)

    assert isinstance(event, ForgeEvent)
    assert event.kind == "tag"
    assert event.tag == "v1.2.0"
    assert event.branch is None


def test_annotated_tag_push_uses_head_commit() -> None:
    payload = push_payload(full_name="acme/web", clone_url="x", ref="refs/tags/v1.2.0",
                           after="c" * 40)
    # For an annotated tag, GitHub sends the tag object as `after`.
    payload["after"] = "e" * 40

    event = github.parse("push", payload)

    assert isinstance(event, ForgeEvent)
    assert event.commit == "c" * 40
    assert event.tag == "v1.2.0"


def test_organization_ping_names_owner() -> None:
    payload = {"zen": "Keep it logically awesome.", "hook_id": 7,
               "hook": {"type": "Organization"}, "organization": {"login": "acme", "id": 1}}

    event = github.parse("ping", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.ping is True
    assert event.repository is None
    assert event.owner == "acme"

def test_branch_deletion_is_ignored() -> None:
    payload = push_payload(full_name="acme/web", clone_url="x", after="0" * 40,
                           before="d" * 40, deleted=True)

    event = github.parse("push", payload)

    assert isinstance(event, IgnoredEvent)
    assert event.reason == "refs/heads/main was deleted; a deletion starts no run"


def test_push_without_ref_names_the_field() -> None:
    payload = push_payload(full_name="acme/web", clone_url="x", after="a" * 40)
    del payload["ref"]

    with pytest.raises(PayloadError, match="the payload has no field 'ref'"):
        github.parse("push", payload)


def test_ping_is_answered() -> None:
    event = github.parse("ping", {"zen": "Keep it logically awesome.", "hook_id": 1,
                                  "repository": {"full_name": "acme/web"}})

    assert isinstance(event, IgnoredEvent)
    assert event.ping is True


def test_payload_encoding_is_stable() -> None:
    assert encode({"a": 1}) == b'{"a": 1}'
