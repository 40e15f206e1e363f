"""Webhook deliveries shaped like the examples in each forge's webhook documentation."""

from __future__ import annotations

import json
import uuid
from typing import Any

from minijenkin.forges import sign_hmac_sha256

ZERO = "0" * 40


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode("utf-8")


# -- GitHub -----------------------------------------------------------------


def github_pull_request(*, full_name: str, clone_url: str, action: str, number: int, head_sha: str,
                        base_sha: str, head_ref: str = "feature", base_ref: str = "main",
                        head_full_name: str | None = None, title: str = "Add feature",
                        before: str | None = None) -> dict[str, Any]:
    """A pull_request event with the fields GitHub documents for it."""
    owner = full_name.split("/")[0]
    head_repo = head_full_name or full_name
    repository = {"id": 1296269, "name": full_name.split("/")[1], "full_name": full_name,
                  "private": False, "owner": {"login": owner, "id": 1},
                  "html_url": f"https://github.com/{full_name}", "clone_url": clone_url,
                  "default_branch": "main"}
    payload: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": {
            "url": f"https://api.github.com/repos/{full_name}/pulls/{number}",
            "id": 1, "number": number, "state": "open", "locked": False, "title": title,
            "user": {"login": "octocat", "id": 1},
            "body": "Please pull these awesome changes in!",
            "html_url": f"https://github.com/{full_name}/pull/{number}",
            "created_at": "2026-12-04T10:00:00Z", "updated_at": "2026-12-04T10:05:00Z",
            "merge_commit_sha": None, "draft": False,
            "head": {"label": f"{head_repo.split('/')[0]}:{head_ref}", "ref": head_ref,
                     "sha": head_sha, "user": {"login": head_repo.split("/")[0]},
                     "repo": {**repository, "full_name": head_repo,
                              "clone_url": f"https://github.com/{head_repo}.git"}},
            "base": {"label": f"{owner}:{base_ref}", "ref": base_ref, "sha": base_sha,
                     "user": {"login": owner}, "repo": repository},
        },
        "repository": repository,
        "sender": {"login": "octocat", "id": 1, "type": "User"},
    }
    if before is not None:
        payload["before"] = before
        payload["after"] = head_sha
    return payload


def github_headers(secret: str, body: bytes, *, event: str, delivery: str | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": "sha256=" + sign_hmac_sha256(secret, body),
    }


# -- GitLab -----------------------------------------------------------------


def _gitlab_project(path: str, url: str) -> dict[str, Any]:
    namespace, _, name = path.rpartition("/")
    return {
        "id": 15, "name": name, "description": "", "web_url": f"https://gitlab.example.com/{path}",
        "avatar_url": None, "git_ssh_url": f"git@gitlab.example.com:{path}.git",
        "git_http_url": url, "namespace": namespace, "visibility_level": 0,
        "path_with_namespace": path, "default_branch": "main",
        "homepage": f"https://gitlab.example.com/{path}",
        "url": f"git@gitlab.example.com:{path}.git",
        "ssh_url": f"git@gitlab.example.com:{path}.git", "http_url": url,
    }


def gitlab_push(*, path: str, url: str, after: str, before: str = ZERO,
                ref: str = "refs/heads/main", message: str = "Update Catalan translation",
                added: list[str] | None = None, tag: bool = False,
                checkout_sha: str | None = None) -> dict[str, Any]:
    """A Push Hook (or Tag Push Hook with `tag`) payload as GitLab documents it."""
    deleted = after == ZERO
    commits = [] if deleted or tag else [{
        "id": after, "message": message + "\n", "title": message,
        "timestamp": "2026-12-04T10:00:00+01:00",
        "url": f"https://gitlab.example.com/{path}/-/commit/{after}",
        "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"},
        "added": added or [], "modified": ["README.md"], "removed": [],
    }]
    return {
        "object_kind": "tag_push" if tag else "push",
        "event_name": "tag_push" if tag else "push",
        "before": before, "after": after, "ref": ref, "ref_protected": True,
        "checkout_sha": None if deleted else (checkout_sha or after),
        "user_id": 4, "user_name": "John Smith", "user_username": "jsmith",
        "user_email": "john@example.com", "user_avatar": None,
        "project_id": 15, "project": _gitlab_project(path, url),
        "repository": {"name": path.rpartition("/")[2], "url": f"git@gitlab.example.com:{path}.git",
                       "description": "", "homepage": f"https://gitlab.example.com/{path}",
                       "git_http_url": url, "git_ssh_url": f"git@gitlab.example.com:{path}.git",
                       "visibility_level": 0},
        "commits": commits, "total_commits_count": len(commits),
    }


def gitlab_merge_request(*, path: str, url: str, action: str, iid: int, head_sha: str,
                         oldrev: str | None = None, source_project_id: int = 15,
                         title: str = "MS-Viewport") -> dict[str, Any]:
    """A Merge Request Hook payload as GitLab documents it."""
    attributes: dict[str, Any] = {
        "id": 99, "iid": iid, "target_branch": "main", "source_branch": "ms-viewport",
        "source_project_id": source_project_id, "author_id": 51, "target_project_id": 15,
        "title": title, "created_at": "2026-12-04 10:00:00 UTC", "state": "opened",
        "merge_status": "unchecked", "description": "",
        "url": f"https://gitlab.example.com/{path}/-/merge_requests/{iid}",
        "source": _gitlab_project(path, url), "target": _gitlab_project(path, url),
        "last_commit": {"id": head_sha, "message": "fixed readme",
                        "title": "fixed readme", "timestamp": "2026-12-04T10:00:00+00:00",
                        "url": f"https://gitlab.example.com/{path}/-/commit/{head_sha}",
                        "author": {"name": "GitLab dev user", "email": "gitlabdev@example.com"}},
        "action": action,
    }
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": _gitlab_project(path, url), "object_attributes": attributes,
        "labels": [], "changes": {},
        "repository": {"name": path.rpartition("/")[2], "url": url, "homepage": ""},
    }


def gitlab_headers(token: str | None, *, event: str, idempotency_key: str | None = None,
                   event_uuid: str | None = None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.6.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "X-Gitlab-Webhook-UUID": "2a1b4c2e-6f1d-4c5e-9a5f-0d3b2c1a0e9f",
        "X-Gitlab-Event-UUID": event_uuid or str(uuid.uuid4()),
    }
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


# -- Gitea and Forgejo ------------------------------------------------------


def _gitea_repository(full_name: str, clone_url: str) -> dict[str, Any]:
    owner, _, name = full_name.partition("/")
    return {
        "id": 140, "owner": {"id": 1, "login": owner, "full_name": "", "username": owner},
        "name": name, "full_name": full_name, "description": "", "private": False,
        "fork": False, "html_url": f"http://localhost:3000/{full_name}",
        "ssh_url": f"ssh://gitea@localhost:2222/{full_name}.git", "clone_url": clone_url,
        "website": "", "stars_count": 0, "forks_count": 1, "watchers_count": 1,
        "open_issues_count": 7, "default_branch": "main",
        "created_at": "2017-02-26T04:29:06-05:00", "updated_at": "2017-03-13T13:51:58-04:00",
    }


def gitea_push(*, full_name: str, clone_url: str, after: str, before: str = ZERO,
               ref: str = "refs/heads/develop", message: str = "Webhooks Yay!") -> dict[str, Any]:
    """A push event as in Gitea's webhook documentation example."""
    commit = {
        "id": after, "message": message,
        "url": f"http://localhost:3000/{full_name}/commit/{after}",
        "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
        "committer": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
        "timestamp": "2017-03-13T13:52:11-04:00",
        "added": [], "removed": [], "modified": ["README.md"],
    }
    deleted = after == ZERO
    return {
        "ref": ref, "before": before, "after": after,
        "compare_url": f"http://localhost:3000/{full_name}/compare/{before}...{after}",
        "commits": [] if deleted else [commit], "total_commits": 0 if deleted else 1,
        "head_commit": None if deleted else commit,
        "repository": _gitea_repository(full_name, clone_url),
        "pusher": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
        "sender": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
    }


def gitea_pull_request(*, full_name: str, clone_url: str, action: str, number: int,
                       head_sha: str, base_sha: str) -> dict[str, Any]:
    """A pull_request event as Gitea and Forgejo send it."""
    repository = _gitea_repository(full_name, clone_url)
    return {
        "action": action, "number": number,
        "pull_request": {
            "id": 7, "url": f"http://localhost:3000/{full_name}/pulls/{number}",
            "number": number, "user": {"id": 1, "login": "gitea"}, "title": "Update README",
            "body": "", "state": "open", "html_url": f"http://localhost:3000/{full_name}/pulls/{number}",
            "mergeable": True, "merged": False,
            "base": {"label": "main", "ref": "main", "sha": base_sha, "repo_id": 140,
                     "repo": repository},
            "head": {"label": "feature", "ref": "feature", "sha": head_sha, "repo_id": 140,
                     "repo": repository},
        },
        "repository": repository,
        "sender": {"id": 1, "login": "gitea", "username": "gitea"},
    }


def gitea_headers(secret: str, body: bytes, *, event: str, flavour: str = "Gitea",
                  delivery: str | None = None) -> dict[str, str]:
    delivery = delivery or str(uuid.uuid4())
    signature = sign_hmac_sha256(secret, body)
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": delivery,
               "X-GitHub-Event": event, "X-Gogs-Delivery": delivery, "X-Gogs-Event": event,
               "X-Gitea-Delivery": delivery, "X-Gitea-Event": event,
               "X-Gitea-Signature": signature, "X-Gogs-Signature": signature,
               "X-Hub-Signature-256": "sha256=" + signature}
    if flavour == "Forgejo":
        headers.update({"X-Forgejo-Delivery": delivery, "X-Forgejo-Event": event,
                        "X-Forgejo-Signature": signature})
    return headers


# -- Bitbucket Cloud --------------------------------------------------------


def bitbucket_push(*, full_name: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """A repo:push payload as in Bitbucket Cloud's event payload documentation."""
    workspace, _, slug = full_name.partition("/")
    return {
        "actor": {"type": "user", "display_name": "Emma", "nickname": "emma",
                  "uuid": "{a54f16da-24e9-4d7f-a3a7-b1ba2cd98aa3}", "account_id": "557058:c0b7"},
        "repository": {
            "type": "repository", "full_name": full_name, "name": slug,
            "uuid": "{673a6070-3421-46c9-9d48-90745f7bfe8e}", "is_private": True, "scm": "git",
            "links": {"html": {"href": f"https://bitbucket.org/{full_name}"},
                      "self": {"href": f"https://api.bitbucket.org/2.0/repositories/{full_name}"}},
            "workspace": {"type": "workspace", "slug": workspace, "name": workspace},
        },
        "push": {"changes": changes},
    }


def bitbucket_change(*, kind: str, name: str, new_hash: str | None,
                     old_hash: str | None = None, message: str = "Add a file\n") -> dict[str, Any]:
    """One entry of push.changes: a branch or tag moved, created (no old) or deleted (no new)."""

    def state(commit: str) -> dict[str, Any]:
        return {"type": kind, "name": name,
                "target": {"type": "commit", "hash": commit, "message": message,
                           "date": "2026-12-04T10:00:00+00:00",
                           "author": {"type": "author", "raw": "Emma <emma@example.com>",
                                      "user": {"display_name": "Emma", "type": "user"}}}}

    return {
        "new": state(new_hash) if new_hash else None,
        "old": state(old_hash) if old_hash else None,
        "created": old_hash is None, "closed": new_hash is None, "forced": False,
        "truncated": False, "commits": [],
    }


def bitbucket_headers(secret: str | None, body: bytes, *, event: str = "repo:push",
                      request_uuid: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "Bitbucket-Webhooks/2.0",
               "X-Event-Key": event, "X-Request-UUID": request_uuid or str(uuid.uuid4()),
               "X-Hook-UUID": "{1f1a3b0e-96b8-4f0a-9c2d-7f3e2a1b0c9d}", "X-Attempt-Number": "1"}
    if secret is not None:
        headers["X-Hub-Signature"] = "sha256=" + sign_hmac_sha256(secret, body)
    return headers
