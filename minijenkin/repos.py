"""Repositories: registering them and finding the one a webhook is about."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from minijenkin import secrets
from minijenkin.crypto import Keyring
from minijenkin.db import translate_errors
from minijenkin.errors import ConflictError, InvalidInputError, NotFoundError
from minijenkin.forges import RepositoryRef
from minijenkin.sql import QUERIES

REPO_NAME_MAX = 200
WEBHOOK_SECRET_MIN = 8
DEFAULT_BRANCH = "main"
# Keep in step with the repositories_poll_interval_check constraint.
POLL_INTERVAL_MIN_SECONDS = 5
POLL_INTERVAL_MAX_SECONDS = 7 * 24 * 3600
# Keep in step with the repositories_name_format constraint.
_REPO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def validate_repo_name(name: str) -> None:
    """Raise InvalidInputError unless `name` is like `team/project` (letters, digits, . _ -)."""
    if not 1 <= len(name) <= REPO_NAME_MAX or not _REPO_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid repository name {name!r}: use letters, digits, '.', '_' and '-', "
            "optionally in parts separated by '/', at most 200 characters",
            field="name",
        )


async def create_repo(
    conn: psycopg.AsyncConnection,
    *,
    name: str,
    url: str,
    webhook_secret: str | None,
    keyring: Keyring,
    default_branch: str = DEFAULT_BRANCH,
    poll_interval_seconds: int | None = None,
) -> dict[str, Any]:
    """Insert a repository; raise ConflictError when the name is already registered.

    The webhook secret is stored encrypted, bound to the new row's id.
    """
    validate_repo_name(name)
    validate_branch(default_branch)
    validate_poll_interval(poll_interval_seconds)
    if webhook_secret is not None and len(webhook_secret) < WEBHOOK_SECRET_MIN:
        raise InvalidInputError(
            f"webhook_secret is too short: use at least {WEBHOOK_SECRET_MIN} characters",
            field="webhook_secret",
        )
    try:
        with translate_errors():
            async with conn.transaction():
                cursor = await conn.execute(QUERIES["repo_insert"], {
                    "name": name, "url": url, "default_branch": default_branch,
                    "poll_interval_seconds": poll_interval_seconds,
                })
                inserted = await cursor.fetchone()
                assert inserted is not None
                if webhook_secret is not None:
                    await secrets.store_webhook_secret(conn, keyring, repo_id=inserted["id"],
                                                       secret=webhook_secret)
    except ConflictError as exc:
        raise ConflictError(f"repository {name!r} already exists", field="name") from exc
    return await get_repo(conn, inserted["id"])


async def update_repo(
    conn: psycopg.AsyncConnection,
    *,
    repo_id: int,
    keyring: Keyring,
    webhook_secret: str | None = None,
    default_branch: str | None = None,
    poll_interval_seconds: int | None = None,
    disable_polling: bool = False,
) -> dict[str, Any]:
    """Change a repository's webhook secret, default branch or polling; None keeps a value."""
    if disable_polling and poll_interval_seconds is not None:
        raise InvalidInputError("give either poll_interval_seconds or disable_polling, not both",
                                field="disable_polling")
    if default_branch is not None:
        validate_branch(default_branch)
    validate_poll_interval(poll_interval_seconds)
    if webhook_secret is not None and len(webhook_secret) < WEBHOOK_SECRET_MIN:
        raise InvalidInputError(
            f"webhook_secret is too short: use at least {WEBHOOK_SECRET_MIN} characters",
            field="webhook_secret",
        )
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["repo_update_settings"], {
            "id": repo_id, "default_branch": default_branch,
            "poll_interval_seconds": poll_interval_seconds, "clear_poll": disable_polling,
        })
        if await cursor.fetchone() is None:
            raise NotFoundError(f"repository {repo_id} does not exist")
        if webhook_secret is not None:
            await secrets.store_webhook_secret(conn, keyring, repo_id=repo_id, secret=webhook_secret)
    return await get_repo(conn, repo_id)


async def request_poll(conn: psycopg.AsyncConnection, repo_id: int) -> None:
    """Make the repository's next poll due now; ConflictError when it does not poll."""
    cursor = await conn.execute(QUERIES["repo_poll_request"], {"id": repo_id})
    if await cursor.fetchone() is None:
        await get_repo(conn, repo_id)
        raise ConflictError(
            f"repository {repo_id} does not poll: set poll_interval_seconds with "
            f"PATCH /api/repos/{repo_id} first",
            field="poll_interval_seconds")


def validate_branch(branch: str) -> None:
    """Raise InvalidInputError unless `branch` is a plausible git branch name."""
    if not 1 <= len(branch) <= 255 or branch.startswith(("-", "/", "refs/")) or any(
        char.isspace() or ord(char) < 32 or char in "~^:?*[\\" for char in branch
    ) or ".." in branch or branch.endswith((".lock", "/", ".")):
        raise InvalidInputError(
            f"invalid branch name {branch!r}: give the short name, such as 'main'",
            field="default_branch")


def validate_poll_interval(seconds: int | None) -> None:
    if seconds is not None and not POLL_INTERVAL_MIN_SECONDS <= seconds <= POLL_INTERVAL_MAX_SECONDS:
        raise InvalidInputError(
            f"poll_interval_seconds must be from {POLL_INTERVAL_MIN_SECONDS} to "
            f"{POLL_INTERVAL_MAX_SECONDS} (one week)", field="poll_interval_seconds")


async def get_repo(conn: psycopg.AsyncConnection, repo_id: int) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["repo_get"], {"id": repo_id, "name": None})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"repository {repo_id} does not exist")
    return row


async def get_repo_by_name(conn: psycopg.AsyncConnection, name: str) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["repo_get"], {"id": None, "name": name})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"repository {name!r} does not exist")
    return row


async def list_repos(
    conn: psycopg.AsyncConnection, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["repo_list"], {"limit": limit, "offset": offset})
    return await cursor.fetchall()


async def find_repos_for_owner_webhook(
    conn: psycopg.AsyncConnection, owner: str
) -> list[dict[str, Any]]:
    """Return the registered repositories whose name starts with `owner`/ (at most 200)."""
    cursor = await conn.execute(QUERIES["repo_find_for_owner_webhook"], {"owner": owner})
    return await cursor.fetchall()


async def find_repo_for_webhook(
    conn: psycopg.AsyncConnection, ref: RepositoryRef
) -> dict[str, Any] | None:
    """The repository named like the payload's, else one registered with one of its URLs."""
    urls = list(ref.clone_urls)
    # People register clone URLs with or without the ".git" suffix.
    urls += [url[:-4] for url in ref.clone_urls if url.endswith(".git")]
    urls += [url + ".git" for url in ref.clone_urls if not url.endswith(".git")]
    cursor = await conn.execute(
        QUERIES["repo_find_for_webhook"],
        {"full_name": ref.full_name, "urls": [url.lower() for url in urls]},
    )
    return await cursor.fetchone()
