"""Bitbucket Cloud webhooks: `X-Hub-Signature`; repo:push.

Bitbucket Cloud signs the body with HMAC-SHA256 as `sha256=<hex>` in
`X-Hub-Signature` when the webhook has a secret, and identifies a delivery
by `X-Request-UUID`. One repo:push can move several refs at once: each
change that leaves a branch or tag at a commit becomes its own event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minijenkin.forges import (
    Forge,
    ForgeEvent,
    IgnoredEvent,
    Parsed,
    PayloadError,
    RepositoryRef,
    commit_id,
    optional_str,
    require,
    verify_hmac_sha256,
)

FORGE = "bitbucket"
SIGNATURE_HEADER = "x-hub-signature"


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return verify_hmac_sha256(secret, body, headers.get(SIGNATURE_HEADER), prefix="sha256=")


def repository_ref(payload: Mapping[str, Any]) -> RepositoryRef:
    require(payload, "repository", Mapping)
    full_name = require(payload, "repository.full_name")
    html = optional_str(payload, "repository", "links", "html", "href")
    urls = (html + ".git", html) if html else ()
    return RepositoryRef(full_name=full_name, clone_urls=urls)


def parse(event_name: str, payload: Mapping[str, Any]) -> Parsed:
    """Map a Bitbucket delivery to its events, or to the reason it starts nothing."""
    if event_name != "repo:push":
        return IgnoredEvent(reason=f"Bitbucket event {event_name!r} starts no run",
                            repository=repository_ref(payload) if "repository" in payload else None)
    repo = repository_ref(payload)
    changes = require(payload, "push.changes", list)
    events: list[ForgeEvent] = []
    for index, change in enumerate(changes):
        path = f"push.changes[{index}]"
        if not isinstance(change, Mapping):
            raise PayloadError(f"the payload field {path!r} has the wrong type")
        new = change.get("new")
        if change.get("closed") is True or not isinstance(new, Mapping):
            continue  # a deleted branch or tag
        events.append(_change_event(payload, repo, change, new, path))
    if not events:
        return IgnoredEvent(reason="the push only deleted branches or tags; a deletion starts no run",
                            repository=repo)
    return tuple(events)


def _change_event(payload: Mapping[str, Any], repo: RepositoryRef, change: Mapping[str, Any],
                  new: Mapping[str, Any], path: str) -> ForgeEvent:
    kind = new.get("type")
    name = new.get("name")
    if kind not in ("branch", "tag") or not isinstance(name, str) or not name:
        raise PayloadError(f"the payload field '{path}.new' must name a branch or a tag")
    target = new.get("target") if isinstance(new.get("target"), Mapping) else {}
    commit = commit_id(target.get("hash"), f"{path}.new.target.hash")
    before = optional_str(change, "old", "target", "hash")
    is_tag = kind == "tag"
    return ForgeEvent(
        forge=FORGE,
        kind="tag" if is_tag else "push",
        ref=f"refs/tags/{name}" if is_tag else f"refs/heads/{name}",
        commit=commit,
        before=before,
        branch=None if is_tag else name,
        tag=name if is_tag else None,
        message=optional_str(target, "message"),
        author=optional_str(target, "author", "user", "display_name")
        or optional_str(target, "author", "raw"),
        sender=optional_str(payload, "actor", "nickname")
        or optional_str(payload, "actor", "display_name"),
        repository=repo,
    )


FORGE_SPEC = Forge(
    name=FORGE,
    event_headers=("X-Event-Key",),
    delivery_headers=("X-Request-UUID",),
    credential_headers=("X-Hub-Signature",),
    verify=verify_signature,
    parse=parse,
)
