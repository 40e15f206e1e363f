"""Notification targets: validating, storing (encrypted) and listing them.

A target's URL and secret are sealed with the keyring and bound to the
purpose `notification:<id>:url` or `notification:<id>:secret`. The API never
returns them. Listings show only the URL's scheme and host (`url_display`),
because chat webhook URLs carry their credential in the path.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from minijenkin import repos
from minijenkin.crypto import Keyring
from minijenkin.db import translate_errors
from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.notify import DEPLOY_EVENTS, EVENTS, KINDS, RUN_EVENTS, STATUS_KINDS
from minijenkin.notify.render import is_header_token
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

URL_MAX = 2048
SECRET_MIN = 8
SECRET_MAX = 1024
CONTEXT_MAX = 100
# GitHub: owner/repository. GitLab: a numeric project id or a namespace path.
_GITHUB_PROJECT = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_GITLAB_PROJECT = re.compile(r"[0-9]+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")


def url_purpose(target_id: int) -> str:
    return f"notification:{target_id}:url"


def secret_purpose(target_id: int) -> str:
    return f"notification:{target_id}:secret"


def validate_http_url(url: str, *, field: str = "url") -> urllib.parse.SplitResult:
    """Raise InvalidInputError unless `url` is an absolute http(s) URL with a host."""
    if len(url) > URL_MAX or any(char.isspace() or ord(char) < 32 for char in url):
        raise InvalidInputError(
            f"invalid {field}: use an http:// or https:// URL of at most {URL_MAX} characters "
            "without spaces", field=field)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # an unclosed or invalid [IPv6] host
        raise InvalidInputError(f"invalid {field}: {exc}", field=field) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"invalid {field}: use an http:// or https:// URL with a host name", field=field)
    try:
        parts.port  # noqa: B018 (parsing the port raises ValueError when it is invalid)
    except ValueError as exc:
        raise InvalidInputError(f"invalid {field}: {exc}", field=field) from exc
    # The dispatcher sends with httpx, whose parser is stricter than urlsplit:
    # it rejects host names that are not valid IDNA, such as "xn--zz.example",
    # some when the URL is built and the rest when its host is decoded.
    try:
        httpx.URL(url).host  # noqa: B018
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise InvalidInputError(f"invalid {field}: {exc}", field=field) from exc
    return parts


def display_url(parts: urllib.parse.SplitResult) -> str:
    """Return the scheme, host and port of a URL, the only part shown back to users."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def default_events(kind: str) -> list[str]:
    """Return every event a kind supports (commit statuses describe runs only)."""
    return list(RUN_EVENTS if kind in STATUS_KINDS else EVENTS)


def validate_events(kind: str, events: Sequence[str] | None) -> list[str]:
    if events is None:
        return default_events(kind)
    if not events:
        raise InvalidInputError("events must list at least one event", field="events")
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        raise InvalidInputError(
            f"unknown event {unknown[0]!r} in events: use {', '.join(EVENTS)}", field="events")
    if kind in STATUS_KINDS:
        deploys = [event for event in events if event in DEPLOY_EVENTS]
        if deploys:
            raise InvalidInputError(
                f"{kind} targets post commit statuses for runs only; remove {deploys[0]!r} "
                "from events", field="events")
    return sorted(set(events), key=EVENTS.index)


def _validate_options(kind: str, project: str | None, context: str | None) -> dict[str, str]:
    if kind not in STATUS_KINDS:
        if project is not None or context is not None:
            field = "project" if project is not None else "context"
            raise InvalidInputError(
                f"{field} applies to github-status and gitlab-status targets only", field=field)
        return {}
    options: dict[str, str] = {}
    if project is not None:
        pattern = _GITHUB_PROJECT if kind == "github-status" else _GITLAB_PROJECT
        if not pattern.fullmatch(project):
            expected = ("owner/repository" if kind == "github-status"
                        else "a numeric project id or a path such as group/project")
            raise InvalidInputError(f"invalid project {project!r}: use {expected}", field="project")
        options["project"] = project
    if context is not None:
        if not 1 <= len(context) <= CONTEXT_MAX or any(ord(char) < 32 for char in context):
            raise InvalidInputError(
                f"invalid context: use 1 to {CONTEXT_MAX} printable characters", field="context")
        options["context"] = context
    return options


async def create_target(
    conn: psycopg.AsyncConnection,
    keyring: Keyring,
    *,
    repo_id: int,
    kind: str,
    url: str | None,
    secret: str | None,
    events: Sequence[str] | None = None,
    project: str | None = None,
    context: str | None = None,
    default_status_url: str | None = None,
) -> dict[str, Any]:
    """Validate and store a target with its URL and secret encrypted; return the stored row.

    Commit-status targets may leave `url` out to use `default_status_url`
    (the configured forge API) and need `secret`, the forge API token.
    Raises NotFoundError for an unknown repository and InvalidInputError,
    naming the field, for invalid input.
    """
    if kind not in KINDS:
        raise InvalidInputError(f"invalid kind {kind!r}: use {', '.join(KINDS)}", field="kind")
    checked_events = validate_events(kind, events)
    options = _validate_options(kind, project, context)

    if url is None and kind in STATUS_KINDS:
        if default_status_url is None:
            raise InvalidInputError(f"url is required for {kind} targets", field="url")
        url_shown = display_url(validate_http_url(default_status_url))
    elif url is None:
        raise InvalidInputError(f"url is required for {kind} targets", field="url")
    else:
        url_shown = display_url(validate_http_url(url))

    if secret is not None and not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise InvalidInputError(
            f"secret must be {SECRET_MIN} to {SECRET_MAX} characters", field="secret")
    if secret is None and kind in STATUS_KINDS:
        raise InvalidInputError(
            f"{kind} targets need secret: an API token allowed to post commit statuses",
            field="secret")
    if secret is not None and kind in STATUS_KINDS and not is_header_token(secret):
        raise InvalidInputError(
            f"invalid secret: a {kind} API token is sent in an HTTP header, so it may contain "
            "only visible ASCII characters (no spaces, line breaks or non-ASCII letters)",
            field="secret")

    await repos.get_repo(conn, repo_id)
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["notification_target_next_id"])
        allocated = await cursor.fetchone()
        assert allocated is not None
        target_id = int(allocated["id"])
        url_encrypted = secret_encrypted = None
        if url is not None:
            url_encrypted = keyring.encrypt(url, purpose=url_purpose(target_id))
        if secret is not None:
            secret_encrypted = keyring.encrypt(secret, purpose=secret_purpose(target_id))
        with translate_errors():
            cursor = await conn.execute(QUERIES["notification_target_insert"], {
                "id": target_id, "repo_id": repo_id, "kind": kind, "url_encrypted": url_encrypted,
                "secret_encrypted": secret_encrypted, "url_display": url_shown,
                "events": checked_events, "options": Jsonb(options),
            })
        row = await cursor.fetchone()
    assert row is not None
    logger.info("notification target added", extra={
        "action": "notification_target_add", "repo_id": repo_id, "target_id": target_id,
        "kind": kind, "url_display": url_shown})
    return row


async def list_targets(conn: psycopg.AsyncConnection, repo_id: int) -> list[dict[str, Any]]:
    """Return a repository's targets without URLs or secrets; raise NotFoundError for an unknown one."""
    await repos.get_repo(conn, repo_id)
    cursor = await conn.execute(QUERIES["notification_target_list"], {"repo_id": repo_id})
    return await cursor.fetchall()


async def delete_target(conn: psycopg.AsyncConnection, *, repo_id: int, target_id: int) -> None:
    """Delete a target and its deliveries; NotFoundError when the repository has no such target."""
    cursor = await conn.execute(QUERIES["notification_target_delete"],
                                {"id": target_id, "repo_id": repo_id})
    if await cursor.fetchone() is None:
        raise NotFoundError(f"repository {repo_id} has no notification target {target_id}")
    logger.info("notification target removed", extra={
        "action": "notification_target_remove", "repo_id": repo_id, "target_id": target_id})
