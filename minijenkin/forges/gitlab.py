"""GitLab webhooks: `X-Gitlab-Token`; Push Hook, Tag Push Hook, Merge Request Hook.

GitLab sends the webhook's secret token itself in `X-Gitlab-Token` (no
signature), compared here in constant time. A delivery is identified by
`Idempotency-Key`, which stays the same when GitLab retries a delivery
(GitLab 17.4 and later), else by `X-Gitlab-Event-UUID`.
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
    tokens_match,
)

FORGE = "gitlab"
TOKEN_HEADER = "x-gitlab-token"  # noqa: S105 (a header name)
# Merge request actions that change the code to build. An `update` builds
# only when it carries `oldrev`, which GitLab sets when new commits arrived;
# other updates (title, labels, assignees) start nothing.
MERGE_REQUEST_ACTIONS = ("open", "reopen", "update")


def verify_token(secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    return tokens_match(headers.get(TOKEN_HEADER), secret)


def repository_ref(payload: Mapping[str, Any]) -> RepositoryRef:
    project = require(payload, "project", Mapping)
    full_name = require(payload, "project.path_with_namespace")
    urls = tuple(
        url for key in ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url", "url")
        if isinstance(url := project.get(key), str) and url
    )
    return RepositoryRef(full_name=full_name, clone_urls=urls)


def parse(event_name: str, payload: Mapping[str, Any]) -> Parsed:
    """Map a GitLab delivery to an event, or to the reason it starts nothing."""
    if event_name in ("Push Hook", "Tag Push Hook"):
        return _parse_push(payload)
    if event_name == "Merge Request Hook":
        return _parse_merge_request(payload)
    return IgnoredEvent(reason=f"GitLab event {event_name!r} starts no run",
                        repository=repository_ref(payload) if "project" in payload else None)


def _parse_push(payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    ref = require(payload, "ref")
    after = require(payload, "after")
    # For an annotated tag, `after` is the tag object; checkout_sha is its commit.
    checkout = payload.get("checkout_sha")
    if after == ZERO_SHA or (payload.get("object_kind") == "tag_push" and checkout is None):
        return IgnoredEvent(reason=f"{ref} was deleted; a deletion starts no run", repository=repo)

    commits = payload.get("commits")
    total = payload.get("total_commits_count")
    complete = not (isinstance(total, int) and isinstance(commits, list) and total > len(commits))
    branch, tag = ref_names(ref)
    head = _last_commit(commits, checkout if isinstance(checkout, str) else after)
    before = payload.get("before") if isinstance(payload.get("before"), str) else None
    return ForgeEvent(
        forge=FORGE,
        kind="tag" if tag is not None else "push",
        ref=ref,
        commit=commit_id(checkout if isinstance(checkout, str) else after,
                         "checkout_sha" if isinstance(checkout, str) else "after"),
        before=None if before in (None, ZERO_SHA) else before,
        branch=branch,
        tag=tag,
        message=optional_str(head, "message"),
        author=optional_str(head, "author", "name") or optional_str(payload, "user_username"),
        sender=optional_str(payload, "user_username") or optional_str(payload, "user_name"),
        changed_files=changed_files(commits, complete=complete),
        repository=repo,
    )


def _last_commit(commits: Any, commit: str) -> Mapping[str, Any]:
    if isinstance(commits, list):
        for entry in commits:
            if isinstance(entry, Mapping) and entry.get("id") == commit:
                return entry
    return {}


def _parse_merge_request(payload: Mapping[str, Any]) -> ForgeEvent | IgnoredEvent:
    repo = repository_ref(payload)
    attributes = require(payload, "object_attributes", Mapping)
    number = require(payload, "object_attributes.iid", int)
    action = attributes.get("action")
    oldrev = attributes.get("oldrev")
    if action not in MERGE_REQUEST_ACTIONS or (action == "update" and not isinstance(oldrev, str)):
        if action == "update":
            change = "an update without new commits"
        elif isinstance(action, str):
            change = f"the action {action!r}"
        else:
            change = "a change without an action"
        return IgnoredEvent(reason=f"merge request !{number}: {change} starts no run; only opening, "
                                   "reopening and pushing commits start one", repository=repo)

    head = commit_id(require(payload, "object_attributes.last_commit.id"),
                     "object_attributes.last_commit.id")
    source_project = attributes.get("source_project_id")
    target_project = attributes.get("target_project_id")
    if not isinstance(source_project, int) or not isinstance(target_project, int):
        raise PayloadError("the payload fields 'object_attributes.source_project_id' and "
                           "'object_attributes.target_project_id' must be numbers")
    title = require(payload, "object_attributes.title")
    return ForgeEvent(
        forge=FORGE,
        kind="pull_request",
        ref=f"refs/merge-requests/{number}/head",
        commit=head,
        before=oldrev if isinstance(oldrev, str) and oldrev != ZERO_SHA else None,
        message=title,
        author=optional_str(attributes, "last_commit", "author", "name"),
        sender=optional_str(payload, "user", "username"),
        repository=repo,
        pull_request={
            "number": number,
            "title": title,
            "head_ref": require(payload, "object_attributes.source_branch"),
            "base_ref": require(payload, "object_attributes.target_branch"),
            # The merge request payload does not carry the target branch's commit.
            "base_sha": None,
            "action": action,
            "fork": source_project != target_project,
            "url": optional_str(attributes, "url"),
        },
    )


FORGE_SPEC = Forge(
    name=FORGE,
    event_headers=("X-Gitlab-Event",),
    delivery_headers=("Idempotency-Key", "X-Gitlab-Event-UUID"),
    credential_headers=("X-Gitlab-Token",),
    verify=verify_token,
    parse=parse,
    credential_kind="token",
)
