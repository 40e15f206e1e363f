"""Webhook deliveries built and signed the way GitHub builds them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from minijenkin.forges import sign_hmac_sha256

ZERO = "0" * 40


def push_payload(
    *, full_name: str, clone_url: str, ref: str = "refs/heads/main", before: str = ZERO,
    after: str, message: str = "Update", deleted: bool = False,
    modified: list[str] | None = None,
) -> dict[str, Any]:
    """A push event with the fields GitHub documents for it."""
    owner, _, name = full_name.partition("/")
    commit = {
        "id": after, "tree_id": "1" * 40, "distinct": True, "message": message,
        "timestamp": "2026-12-04T12:00:00+00:00",
        "url": f"https://github.com/{full_name}/commit/{after}",
        "author": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
        "committer": {"name": "Test Author", "email": "author@example.com", "username": "tester"},
        "added": [], "removed": [], "modified": modified or [],
    }
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": {
            "id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": name,
            "full_name": full_name, "private": False,
            "owner": {"name": owner, "login": owner},
            "html_url": f"https://github.com/{full_name}",
            "clone_url": clone_url,
            "ssh_url": f"git@github.com:{full_name}.git",
            "default_branch": "main",
        },
        "pusher": {"name": "tester", "email": "author@example.com"},
        "sender": {"login": "tester", "id": 1, "type": "User"},
        "created": before == ZERO,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": [] if deleted else [commit],
        "head_commit": None if deleted else commit,
    }


def signed_headers(secret: str, body: bytes, *, event: str = "push",
                   delivery: str | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": "sha256=" + sign_hmac_sha256(secret, body),
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")
