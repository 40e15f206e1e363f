"""Configuration variables of a repository, read by pipelines as `${{ vars.NAME }}`.

Variables hold settings that are not secret (a deploy region, a feature
flag, a registry host), as GitHub's repository variables do. Their values
are stored in clear, returned by the API and shown in logs; secrets are for
everything else. The plan job reads them once per run, so a run keeps the
values it started with.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg

from minijenkin.db import translate_errors
from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
# GitHub's limit for one variable, 48 KB.
VARIABLE_VALUE_MAX = 48 * 1024


def validate_variable(name: str, value: str) -> None:
    """Raise InvalidInputError naming the field when a variable cannot be stored."""
    if not VARIABLE_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid variable name {name!r}: use letters, digits and '_', not starting with a "
            "digit, at most 100 characters", field="name")
    if name.upper().startswith("GITHUB_"):
        raise InvalidInputError(f"invalid variable name {name!r}: the GITHUB_ prefix is reserved",
                                field="name")
    if len(value.encode("utf-8")) > VARIABLE_VALUE_MAX:
        raise InvalidInputError(f"variable value is larger than {VARIABLE_VALUE_MAX} bytes", field="value")
    if "\x00" in value:
        raise InvalidInputError("variable value must not contain NUL characters", field="value")


async def set_variable(conn: psycopg.AsyncConnection, *, repo_id: int, name: str,
                       value: str) -> dict[str, Any]:
    """Create or replace a variable; return its row with `created`."""
    validate_variable(name, value)
    with translate_errors():
        cursor = await conn.execute(QUERIES["variable_upsert"], {
            "repo_id": repo_id, "name": name, "value": value})
    row = await cursor.fetchone()
    assert row is not None
    logger.info("variable stored", extra={
        "action": "variable_set", "repo_id": repo_id, "variable": name, "new_variable": row["created"]})
    return row


async def list_variables(conn: psycopg.AsyncConnection, repo_id: int) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["variable_list"], {"repo_id": repo_id})
    return await cursor.fetchall()


async def delete_variable(conn: psycopg.AsyncConnection, *, repo_id: int, name: str) -> None:
    cursor = await conn.execute(QUERIES["variable_delete"], {"repo_id": repo_id, "name": name})
    if await cursor.fetchone() is None:
        raise NotFoundError(f"variable {name!r} does not exist in repository {repo_id}")
    logger.info("variable deleted", extra={"action": "variable_delete", "repo_id": repo_id,
                                           "variable": name})
