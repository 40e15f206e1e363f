"""GitHub webhooks: `X-Hub-Signature-256`, push (branches and tags), ping.

Payload fields follow GitHub's documented webhook events; a missing field or
one of the wrong type raises `PayloadError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minijenkin.forges import (
    ZERO_SHA,
    ForgeEvent,
    IgnoredEvent,
    PayloadError,
    RepositoryRef,
    verify_hmac_sha256,
)

FORGE = "github"
SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
GITHUB_MAX_PUSH_COMMITS = 2048


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return verify_hmac_sha256(secret, body, headers.get(SIGNATURE_HEADER), prefix="sha256=")


def _require(payload: Mapping[str, Any], path: str, kind: type | tuple[type, ...] = str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise PayloadError(f"the payload has no field {path!r}")
        value = value[part]
    if not isinstance(value, kind):
        raise PayloadError(f"the payload field {path!r} has the wrong type")
    return value


def _optional_str(payload: Mapping[str, Any], *path: str) -> str | None:
    value: Any = payload
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value if isinstance(value, str) else None


def repository_ref(payload: Mapping[str, Any]) -> RepositoryRef:
    repo = _require(payload, "repository", Mapping)
    full_name = _require(payload, "repository.full_name")
    urls = tuple(
        url for key in ("clone_url", "ssh_url", "git_url", "html_url", "url")
        if isinstance(url := repo.get(key), str) and url
    )
    return RepositoryRef(full_name=full_name, clone_urls=urls)


def parse(event_name: str, payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    """Map a GitHub delivery to an event, or to the reason it starts nothing."""
    if not isinstance(payload, Mapping):
        raise PayloadError("the payload must be a JSON object")
    if event_name == "ping":
        repo = repository_ref(payload) if "repository" in payload else None
        return IgnoredEvent(reason="pong", repository=repo, ping=True)
    if event_name == "push":
        return _parse_push(payload)
    return IgnoredEvent(reason=f"GitHub event {event_name!r} starts no run",
                        repository=repository_ref(payload) if "repository" in payload else None)


def _parse_push(payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    ref = _require(payload, "ref")
    after = _require(payload, "after")
    if payload.get("deleted") is True or after == ZERO_SHA:
        return IgnoredEvent(reason=f"{ref} was deleted; a deletion starts no run", repository=repo)

    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), Mapping) else {}
    commits = payload.get("commits") if isinstance(payload.get("commits"), list) else []
    changed = _changed_files(commits)
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    before = payload.get("before") if isinstance(payload.get("before"), str) else None
    author = (_optional_str(head, "author", "username") or _optional_str(head, "author", "name")
              or _optional_str(payload, "pusher", "name"))
    return ForgeEvent(
        forge=FORGE,
        kind="tag" if tag is not None else "push",
        ref=ref,
        commit=after.lower(),
        before=None if before in (None, ZERO_SHA) else before,
        branch=branch,
        tag=tag,
        message=_optional_str(head, "message"),
        author=author,
        sender=_optional_str(payload, "sender", "login"),
        changed_files=changed,
        repository=repo,
    )


def _changed_files(commits: list[Any]) -> tuple[str, ...] | None:
    """Files added, modified or removed by the pushed commits, or None when unknown.

    A webhook push payload lists at most 2,048 commits (GitHub's webhook
    documentation), so a list that long may be cut short and counts as
    unknown, as does an empty one (a new branch or a forced push). Path
    filters then fall back to git.
    """
    if not commits or len(commits) >= GITHUB_MAX_PUSH_COMMITS:
        return None
    files: dict[str, None] = {}
    for commit in commits:
        if not isinstance(commit, Mapping):
            return None
        for key in ("added", "modified", "removed"):
            entries = commit.get(key)
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, str):
                        files[entry] = None
    return tuple(files)
