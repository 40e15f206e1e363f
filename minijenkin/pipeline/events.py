"""The event a run is about, and the `github` and `minijenkin` expression contexts.

Both the plan job and every script job build these from the run and
repository rows in their claim context, so a value reads the same wherever
an expression uses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Our run events, under the names GitHub Actions gives `github.event_name`.
GITHUB_EVENT_NAMES = {"push": "push", "tag": "push", "pull_request": "pull_request",
                      "manual": "workflow_dispatch", "api": "workflow_dispatch",
                      "schedule": "schedule"}

# The refs that pull request runs build: GitHub's, Gitea's and Forgejo's
# refs/pull/N/head, and GitLab's refs/merge-requests/N/head.
PULL_REQUEST_REF_PREFIXES = ("refs/pull/", "refs/merge-requests/")


def ref_parts(ref: str) -> tuple[str, str]:
    """(ref name, ref type) of a full ref, as GitHub Actions names them."""
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/"), "branch"
    if ref.startswith("refs/tags/"):
        return ref.removeprefix("refs/tags/"), "tag"
    if ref.startswith(PULL_REQUEST_REF_PREFIXES):
        return ref.removeprefix("refs/"), "branch"
    return ref, "branch"


@dataclass(frozen=True)
class Event:
    """The trigger of a run: its kind, ref, commit and the forge's details."""

    kind: str  # push, tag, pull_request, manual, schedule, api
    ref: str
    commit: str
    repository: str = ""
    run_id: int = 0
    before: str | None = None
    message: str | None = None
    author: str | None = None
    sender: str | None = None
    branch: str | None = None
    tag: str | None = None
    pull_request: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    changed_files: tuple[str, ...] | None = None
    # The cron expression and time zone of the schedule that fired, when the
    # scheduler recorded them (trigger.schedule, written by mj_schedule_fire_v1).
    schedule: str | None = None
    schedule_timezone: str | None = None
    # The forge's address, from the repository's clone URL (GITHUB_SERVER_URL).
    server_url: str = ""

    @classmethod
    def from_context(cls, run: Mapping[str, Any], repo: Mapping[str, Any]) -> Event:
        """Build the event from a claim context's `run` and `repo` objects."""
        trigger = run.get("trigger") or {}
        ref = str(run.get("ref") or "")
        name, kind = ref_parts(ref)
        branch = trigger.get("branch")
        tag = trigger.get("tag")
        if branch is None and kind == "branch" and ref.startswith("refs/heads/"):
            branch = name
        if tag is None and kind == "tag":
            tag = name
        changed = trigger.get("changed_files")
        inputs = trigger.get("inputs")
        pull_request = trigger.get("pull_request")
        if isinstance(pull_request, Mapping):
            pull_request = {**pull_request,
                            "action": github_pull_request_action(pull_request.get("action"))}
        schedule = trigger.get("schedule")
        if isinstance(schedule, Mapping):
            schedule_cron, schedule_timezone = schedule.get("cron"), schedule.get("timezone")
        else:
            schedule_cron, schedule_timezone = schedule, None
        return cls(
            kind=str(run.get("event") or "push"),
            ref=ref,
            commit=str(run.get("commit") or ""),
            repository=str(repo.get("name") or ""),
            run_id=int(run.get("id") or 0),
            before=run.get("before"),
            message=run.get("message"),
            author=run.get("author"),
            sender=trigger.get("sender"),
            branch=branch,
            tag=tag,
            pull_request=pull_request if isinstance(pull_request, Mapping) else {},
            inputs=inputs if isinstance(inputs, Mapping) else {},
            changed_files=tuple(str(path) for path in changed) if isinstance(changed, list) else None,
            schedule=schedule_cron if isinstance(schedule_cron, str) else None,
            schedule_timezone=schedule_timezone if isinstance(schedule_timezone, str) else None,
            server_url=server_url(str(repo.get("url") or "")),
        )

    @property
    def github_event_name(self) -> str:
        return GITHUB_EVENT_NAMES.get(self.kind, self.kind)

    @property
    def ref_name(self) -> str:
        return ref_parts(self.ref)[0]

    @property
    def ref_type(self) -> str:
        return ref_parts(self.ref)[1]


# Pull request actions of GitLab ('open', 'reopen', 'update' with new commits)
# and Gitea or Forgejo ('synchronized') under GitHub's names, which
# on.pull_request.types and github.event.action use. The run's trigger keeps
# the forge's own name.
_GITHUB_PULL_REQUEST_ACTIONS = {
    "open": "opened",
    "reopen": "reopened",
    "update": "synchronize",
    "synchronized": "synchronize",
}


def github_pull_request_action(action: Any) -> Any:
    """Return GitHub's name for a forge's pull request action; other values unchanged."""
    return _GITHUB_PULL_REQUEST_ACTIONS.get(action, action) if isinstance(action, str) else action


# git's scp-like syntax for SSH: [user@]host:path, with no scheme.
_SCP_LIKE_URL = re.compile(r"^(?:[\w.-]+@)?([\w.-]+\.[\w-]+):(?!//)")


def server_url(clone_url: str) -> str:
    """Return the forge's address for a clone URL, e.g. https://gitlab.com, or '' for a local path.

    An SSH URL (git@host:owner/name.git or ssh://) maps to https on its host.
    """
    scp_like = _SCP_LIKE_URL.match(clone_url)
    if scp_like:
        return f"https://{scp_like.group(1)}"
    parts = urlsplit(clone_url)
    if parts.scheme in ("ssh", "git+ssh") and parts.hostname:
        return f"https://{parts.hostname}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def github_context(event: Event, *, job: str = "", workspace: str = "", attempt: int = 1,
                   workflow: str = "") -> dict[str, Any]:
    """The `github` context: GitHub Actions' names for the run's facts."""
    pull_request = event.pull_request
    owner = event.repository.split("/")[0] if "/" in event.repository else ""
    payload: dict[str, Any] = {
        "before": event.before,
        "after": event.commit,
        "ref": event.ref,
        "head_commit": {"id": event.commit, "message": event.message,
                        "author": {"name": event.author, "username": event.author}},
        "sender": {"login": event.sender},
        "repository": {"full_name": event.repository},
    }
    if pull_request:
        payload["pull_request"] = {
            "number": pull_request.get("number"),
            "title": pull_request.get("title"),
            "head": {"ref": pull_request.get("head_ref"), "sha": event.commit},
            "base": {"ref": pull_request.get("base_ref")},
        }
        payload["action"] = pull_request.get("action")
        payload["number"] = pull_request.get("number")
    if event.inputs:
        payload["inputs"] = {key: value if isinstance(value, str) else _json_text(value)
                             for key, value in event.inputs.items()}
    return {
        "event_name": event.github_event_name,
        "event": payload,
        "ref": event.ref,
        "ref_name": event.ref_name,
        "ref_type": event.ref_type,
        "sha": event.commit,
        "repository": event.repository,
        "repository_owner": owner,
        "run_id": str(event.run_id),
        # Mini-Jenkin numbers runs once, across pipelines.
        "run_number": str(event.run_id),
        "run_attempt": str(attempt),
        "server_url": event.server_url,
        # There is no GitHub token here: store one as a secret when a job needs it.
        "token": "",
        "actor": event.sender or event.author or "",
        "triggering_actor": event.sender or event.author or "",
        "head_ref": str(pull_request.get("head_ref") or "") if pull_request else "",
        "base_ref": str(pull_request.get("base_ref") or "") if pull_request else "",
        "job": job,
        "workspace": workspace,
        "workflow": workflow,
    }


def minijenkin_context(event: Event) -> dict[str, Any]:
    """The `minijenkin` context: the run's facts under Mini-Jenkin's own names."""
    pull_request = dict(event.pull_request) if event.pull_request else None
    return {
        "event": event.kind,
        "ref": event.ref,
        "ref_name": event.ref_name,
        "branch": event.branch,
        "tag": event.tag,
        "commit": event.commit,
        "before": event.before,
        "message": event.message,
        "author": event.author,
        "sender": event.sender,
        "repository": event.repository,
        "run_id": event.run_id,
        "pull_request": pull_request,
    }


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Context paths whose values the pusher cannot choose: safe to splice into a
# `run:` script. Everything else read from `github` or `minijenkin` (branch
# and tag names, commit messages, pull request titles, user names) is not.
TRUSTED_GITHUB_KEYS = frozenset({
    "event_name", "sha", "repository", "repository_owner", "run_id", "run_number", "run_attempt", "job",
    "workspace", "ref_type", "workflow", "server_url", "token",
})
TRUSTED_MINIJENKIN_KEYS = frozenset({"event", "commit", "before", "repository", "run_id"})

# The environment variable that holds each untrusted value, named in error messages.
ENVIRONMENT_EQUIVALENTS = {
    ("github", "ref"): "GITHUB_REF",
    ("github", "ref_name"): "GITHUB_REF_NAME",
    ("github", "head_ref"): "GITHUB_HEAD_REF",
    ("github", "base_ref"): "GITHUB_BASE_REF",
    ("github", "actor"): "GITHUB_ACTOR",
    ("github", "triggering_actor"): "GITHUB_ACTOR",
    ("github", "event", "head_commit", "message"): "MINIJENKIN_COMMIT_MESSAGE",
    ("github", "event", "pull_request", "title"): "MINIJENKIN_PULL_REQUEST_TITLE",
    ("github", "event", "pull_request", "head", "ref"): "GITHUB_HEAD_REF",
    ("github", "event", "pull_request", "base", "ref"): "GITHUB_BASE_REF",
    ("minijenkin", "ref"): "MINIJENKIN_REF",
    ("minijenkin", "ref_name"): "MINIJENKIN_REF_NAME",
    ("minijenkin", "branch"): "MINIJENKIN_BRANCH",
    ("minijenkin", "tag"): "MINIJENKIN_TAG",
    ("minijenkin", "message"): "MINIJENKIN_COMMIT_MESSAGE",
    ("minijenkin", "author"): "MINIJENKIN_COMMIT_AUTHOR",
    ("minijenkin", "sender"): "GITHUB_ACTOR",
}

GITHUB_KEYS = ("event_name", "event", "ref", "ref_name", "ref_type", "sha", "repository",
               "repository_owner", "run_id", "run_number", "run_attempt", "actor", "triggering_actor",
               "head_ref", "base_ref", "job", "workspace", "workflow", "server_url", "token")
MINIJENKIN_KEYS = ("event", "ref", "ref_name", "branch", "tag", "commit", "before", "message",
                   "author", "sender", "repository", "run_id", "pull_request")
