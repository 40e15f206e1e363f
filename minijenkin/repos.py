"""Repositories: registering them and finding the one a webhook is about."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from minijenkin.db import translate_errors
from minijenkin.errors import ConflictError, InvalidInputError, NotFoundError
from minijenkin.forges import RepositoryRef
from minijenkin.sql import QUERIES

REPO_NAME_MAX = 200
WEBHOOK_SECRET_MIN = 8
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
    conn: psycopg.AsyncConnection, *, name: str, url: str, webhook_secret: str | None
) -> dict[str, Any]:
    """Insert a repository; raise ConflictError when the name is already registered."""
    validate_repo_name(name)
    if webhook_secret is not None and len(webhook_secret) < WEBHOOK_SECRET_MIN:
        raise InvalidInputError(
            f"webhook_secret is too short: use at least {WEBHOOK_SECRET_MIN} characters",
            field="webhook_secret",
        )
    try:
        with translate_errors():
            cursor = await conn.execute(
                QUERIES["repo_insert"], {"name": name, "url": url, "webhook_secret": webhook_secret}
            )
    except ConflictError as exc:
        raise ConflictError(f"repository {name!r} already exists", field="name") from exc
    row = await cursor.fetchone()
    assert row is not None
    return row


async def get_repo(conn: psycopg.AsyncConnection, repo_id: int) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["repo_get"], {"id": repo_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"repository {repo_id} does not exist")
    return row


async def get_repo_by_name(conn: psycopg.AsyncConnection, name: str) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["repo_get_by_name"], {"name": name})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"repository {name!r} does not exist")
    return row


async def list_repos(
    conn: psycopg.AsyncConnection, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["repo_list"], {"limit": limit, "offset": offset})
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
        QUERIES["repo_find_for_webhook"], {"full_name": ref.full_name, "urls": urls}
    )
    return await cursor.fetchone()
