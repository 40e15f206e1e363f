"""GitHub webhooks: `X-Hub-Signature-256`; push (branches and tags), pull_request, ping.

Payload fields follow GitHub's documented webhook events; a missing field or
one of the wrong type raises `PayloadError` naming it. GitHub sends the JSON
either as the body or, with content type application/x-www-form-urlencoded,
in a `payload` form field; the signature covers the body as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minijenkin.forges import (
    ZERO_SHA,
    Forge,
    ForgeEvent,
    IgnoredEvent,
    Parsed,
    PayloadError,
    RepositoryRef,
    changed_files,
    commit_id,
    optional_str,
    ref_names,
    require,
    verify_hmac_sha256,
)

FORGE = "github"
SIGNATURE_HEADER = "x-hub-signature-256"
EVENT_HEADER = "x-github-event"
DELIVERY_HEADER = "x-github-delivery"
# A push payload lists at most 2,048 commits (GitHub's webhook documentation).
GITHUB_MAX_PUSH_COMMITS = 2048
# Pull request actions that change the code to build; others (closed,
# labeled, edited, ...) start nothing.
PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened")


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return verify_hmac_sha256(secret, body, headers.get(SIGNATURE_HEADER), prefix="sha256=")


def repository_ref(payload: Mapping[str, Any]) -> RepositoryRef:
    repo = require(payload, "repository", Mapping)
    full_name = require(payload, "repository.full_name")
    urls = tuple(
        url for key in ("clone_url", "ssh_url", "git_url", "html_url", "url")
        if isinstance(url := repo.get(key), str) and url
    )
    return RepositoryRef(full_name=full_name, clone_urls=urls)


def parse(event_name: str, payload: Mapping[str, Any]) -> Parsed:
    """Map a GitHub delivery to an event, or to the reason it starts nothing."""
    if not isinstance(payload, Mapping):
        raise PayloadError("the payload must be a JSON object")
    repo = repository_ref(payload) if "repository" in payload else None
    # An organization webhook's ping and organization events name no repository.
    owner = optional_str(payload, "organization", "login")
    if event_name == "ping":
        return IgnoredEvent(reason="pong", repository=repo, ping=True, owner=owner)
    if event_name == "push":
        return _parse_push(payload)
    if event_name == "pull_request":
        return _parse_pull_request(payload)
    return IgnoredEvent(reason=f"GitHub event {event_name!r} starts no run", repository=repo,
                        owner=owner)


def _parse_push(payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    ref = require(payload, "ref")
    after = require(payload, "after")
    if payload.get("deleted") is True or after == ZERO_SHA:
        return IgnoredEvent(reason=f"{ref} was deleted; a deletion starts no run", repository=repo)

    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), Mapping) else {}
    commits = payload.get("commits")
    complete = not isinstance(commits, list) or len(commits) < GITHUB_MAX_PUSH_COMMITS
    branch, tag = ref_names(ref)
    before = payload.get("before") if isinstance(payload.get("before"), str) else None
    author = (optional_str(head, "author", "username") or optional_str(head, "author", "name")
              or optional_str(payload, "pusher", "name"))
    # For an annotated tag, `after` is the tag object; head_commit is its commit.
    head_id = head.get("id")
    if tag is not None and isinstance(head_id, str):
        commit = commit_id(head_id, "head_commit.id")
    else:
        commit = commit_id(after, "after")
    return ForgeEvent(
        forge=FORGE,
        kind="tag" if tag is not None else "push",
        ref=ref,
        commit=commit,
        before=None if before in (None, ZERO_SHA) else before,
        branch=branch,
        tag=tag,
        message=optional_str(head, "message"),
        author=author,
        sender=optional_str(payload, "sender", "login"),
        changed_files=changed_files(commits, complete=complete),
        repository=repo,
    )


def _parse_pull_request(payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    action = require(payload, "action")
    number = require(payload, "pull_request.number", int)
    if action not in PULL_REQUEST_ACTIONS:
        return IgnoredEvent(reason=f"pull request #{number}: the action {action!r} starts no run; "
                                   f"only {', '.join(PULL_REQUEST_ACTIONS)} start one",
                            repository=repo)

    head_sha = commit_id(require(payload, "pull_request.head.sha"), "pull_request.head.sha")
    head_repo = optional_str(payload, "pull_request", "head", "repo", "full_name")
    before = payload.get("before") if action == "synchronize" else None
    return ForgeEvent(
        forge=FORGE,
        kind="pull_request",
        ref=f"refs/pull/{number}/head",
        commit=head_sha,
        before=before if isinstance(before, str) and before != ZERO_SHA else None,
        message=require(payload, "pull_request.title"),
        author=optional_str(payload, "pull_request", "user", "login"),
        sender=optional_str(payload, "sender", "login"),
        repository=repo,
        pull_request={
            "number": number,
            "title": require(payload, "pull_request.title"),
            "head_ref": require(payload, "pull_request.head.ref"),
            "base_ref": require(payload, "pull_request.base.ref"),
            "base_sha": optional_str(payload, "pull_request", "base", "sha"),
            "action": action,
            # A deleted fork has no head repository: treat it as a fork.
            "fork": head_repo != repo.full_name,
            "url": optional_str(payload, "pull_request", "html_url"),
        },
    )


FORGE_SPEC = Forge(
    name=FORGE,
    event_headers=("X-GitHub-Event",),
    delivery_headers=("X-GitHub-Delivery",),
    credential_headers=("X-Hub-Signature-256",),
    verify=verify_signature,
    parse=parse,
)
