"""Gitea and Forgejo webhooks: HMAC-SHA256 signatures; push (branches and tags), pull_request.

Forgejo began as a fork of Gitea and keeps its payloads. Gitea signs the
body in `X-Gitea-Signature` (hex, no prefix); Forgejo sends the same value
as `X-Forgejo-Signature` and, for compatibility, `X-Gitea-Signature`. Each
flavour reads its own headers first and the other's as a fallback.
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
    first_header,
    form_payloads,
    is_form,
    optional_str,
    ref_names,
    require,
    verify_hmac_sha256,
)

# Pull request actions that change the code to build (Gitea names the push
# of new commits `synchronized`).
PULL_REQUEST_ACTIONS = ("opened", "reopened", "synchronized")


def repository_ref(payload: Mapping[str, Any]) -> RepositoryRef:
    repo = require(payload, "repository", Mapping)
    full_name = require(payload, "repository.full_name")
    urls = tuple(
        url for key in ("clone_url", "ssh_url", "html_url")
        if isinstance(url := repo.get(key), str) and url
    )
    return RepositoryRef(full_name=full_name, clone_urls=urls)


def _parse(forge: str, event_name: str, payload: Mapping[str, Any]) -> Parsed:
    if event_name == "push":
        return _parse_push(forge, payload)
    if event_name == "pull_request":
        return _parse_pull_request(forge, payload)
    # `create` and `delete` arrive beside the push that made or removed the ref.
    return IgnoredEvent(reason=f"{forge.capitalize()} event {event_name!r} starts no run",
                        repository=repository_ref(payload) if "repository" in payload else None)


def _parse_push(forge: str, payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    ref = require(payload, "ref")
    after = require(payload, "after")
    if after == ZERO_SHA:
        return IgnoredEvent(reason=f"{ref} was deleted; a deletion starts no run", repository=repo)

    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), Mapping) else {}
    commits = payload.get("commits")
    total = payload.get("total_commits")
    complete = not (isinstance(total, int) and isinstance(commits, list) and total > len(commits))
    branch, tag = ref_names(ref)
    before = payload.get("before") if isinstance(payload.get("before"), str) else None
    # As on GitHub: for an annotated tag, `after` may be the tag object.
    head_id = head.get("id")
    if tag is not None and isinstance(head_id, str):
        commit = commit_id(head_id, "head_commit.id")
    else:
        commit = commit_id(after, "after")
    return ForgeEvent(
        forge=forge,
        kind="tag" if tag is not None else "push",
        ref=ref,
        commit=commit,
        before=None if before in (None, ZERO_SHA) else before,
        branch=branch,
        tag=tag,
        message=optional_str(head, "message"),
        author=optional_str(head, "author", "username") or optional_str(head, "author", "name"),
        sender=optional_str(payload, "sender", "login") or optional_str(payload, "pusher", "login"),
        changed_files=changed_files(commits, complete=complete),
        repository=repo,
    )


def _parse_pull_request(forge: str, payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    action = require(payload, "action")
    number = require(payload, "pull_request.number", int)
    if action not in PULL_REQUEST_ACTIONS:
        return IgnoredEvent(reason=f"pull request #{number}: the action {action!r} starts no run; "
                                   f"only {', '.join(PULL_REQUEST_ACTIONS)} start one",
                            repository=repo)

    head_repo = optional_str(payload, "pull_request", "head", "repo", "full_name")
    title = require(payload, "pull_request.title")
    return ForgeEvent(
        forge=forge,
        kind="pull_request",
        ref=f"refs/pull/{number}/head",
        commit=commit_id(require(payload, "pull_request.head.sha"), "pull_request.head.sha"),
        message=title,
        author=optional_str(payload, "pull_request", "user", "login"),
        sender=optional_str(payload, "sender", "login"),
        repository=repo,
        pull_request={
            "number": number,
            "title": title,
            "head_ref": require(payload, "pull_request.head.ref"),
            "base_ref": require(payload, "pull_request.base.ref"),
            "base_sha": optional_str(payload, "pull_request", "base", "sha"),
            "action": action,
            "fork": head_repo != repo.full_name,
            "url": optional_str(payload, "pull_request", "html_url"),
        },
    )


def form_payload(body: bytes, headers: Mapping[str, str]) -> bytes | None:
    """Extract the JSON of a form body's single `payload` field; None for any other body."""
    if not is_form(headers.get("content-type")):
        return None
    try:
        values = form_payloads(body)
    except PayloadError:
        return None
    return values[0].encode("utf-8") if len(values) == 1 else None


def _flavour(name: str, own: str, other: str) -> Forge:
    signature_headers = (f"X-{own}-Signature", f"X-{other}-Signature")

    def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
        signature = first_header(headers, *(header.lower() for header in signature_headers))
        if verify_hmac_sha256(secret, body, signature):
            return True
        # With content type application/x-www-form-urlencoded, Gitea sends
        # `payload=<JSON>` but signs the JSON alone (services/webhook/deliver.go
        # in go-gitea/gitea, and Forgejo's copy of it).
        payload = form_payload(body, headers)
        return payload is not None and verify_hmac_sha256(secret, payload, signature)

    def parse(event_name: str, payload: Mapping[str, Any]) -> Parsed:
        return _parse(name, event_name, payload)

    return Forge(
        name=name,
        event_headers=(f"X-{own}-Event", f"X-{other}-Event"),
        delivery_headers=(f"X-{own}-Delivery", f"X-{other}-Delivery"),
        credential_headers=signature_headers,
        verify=verify,
        parse=parse,
    )


GITEA = _flavour("gitea", "Gitea", "Forgejo")
FORGEJO = _flavour("forgejo", "Forgejo", "Gitea")
