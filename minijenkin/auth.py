"""API tokens and their scopes.

Scopes are ordered: `read` (look at everything), `trigger` (also start,
cancel and re-run runs), `admin` (also manage repositories, tokens, secrets
and notifications). A token value is `mjt_` plus 43 URL-safe characters
(256 random bits); only its SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.sql import QUERIES

Scope = Literal["read", "trigger", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "trigger", "admin")
TOKEN_PREFIX = "mjt_"  # noqa: S105 (a prefix, not a secret)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's id and name, or anonymous."""

    name: str
    scope: Scope | None
    token_id: int | None = None

    def allows(self, required: Scope) -> bool:
        return self.scope is not None and SCOPES.index(self.scope) >= SCOPES.index(required)


ANONYMOUS = Principal(name="anonymous", scope=None)


def hash_token(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def new_token_value() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def tokens_equal(given: str, expected: str) -> bool:
    """Compare two token values in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def validate_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise InvalidInputError(f"invalid scope {scope!r}: use read, trigger or admin", field="scope")
    return scope  # type: ignore[return-value]


async def create_token(
    conn: psycopg.AsyncConnection, *, name: str, scope: str,
    expires_at: dt.datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """Create a token; return its value (shown once) and its stored row."""
    validate_scope(scope)
    if not 1 <= len(name) <= 200:
        raise InvalidInputError("token name must be 1 to 200 characters", field="name")
    value = new_token_value()
    cursor = await conn.execute(QUERIES["token_insert"], {
        "name": name, "token_hash": hash_token(value), "scope": scope, "expires_at": expires_at,
    })
    row = await cursor.fetchone()
    assert row is not None
    return value, row


async def find_token(conn: psycopg.AsyncConnection, value: str) -> Principal | None:
    """The principal of a usable token value, or None."""
    if not value.startswith(TOKEN_PREFIX):
        return None
    cursor = await conn.execute(QUERIES["token_find_by_hash"], {"token_hash": hash_token(value)})
    row = await cursor.fetchone()
    if row is None:
        return None
    await conn.execute(QUERIES["token_touch"], {"id": row["id"]})
    return Principal(name=row["name"], scope=row["scope"], token_id=row["id"])


async def list_tokens(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["token_list"])
    return await cursor.fetchall()


async def revoke_token(conn: psycopg.AsyncConnection, token_id: int) -> None:
    cursor = await conn.execute(QUERIES["token_revoke"], {"id": token_id})
    if await cursor.fetchone() is None:
        raise NotFoundError(f"token {token_id} does not exist")
