"""Secrets of repositories and their environments, and encrypted webhook secrets.

Values are sealed with the keyring (AES-256-GCM, `minijenkin.crypto`) before
they reach the database, each bound to its row through the associated data
(its purpose string), so a ciphertext copied to another row does not
decrypt. Nothing here returns a stored value to an API caller: only
workers decrypt secrets, for the jobs that reference them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin.crypto import Keyring
from minijenkin.db import translate_errors
from minijenkin.errors import InvalidInputError, NotFoundError
from minijenkin.logs.masking import validate_secret_value
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

# Keep in step with the secrets_name_format constraint.
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
# Log masking replaces a value wherever it appears; a value of one to three
# characters would match ordinary output everywhere and hide nothing.
SECRET_VALUE_MAX = 64 * 1024
ENVIRONMENT_MAX = 255
ROTATION_BATCH = 200


def webhook_secret_purpose(repo_id: int) -> str:
    return f"repo:{repo_id}:webhook_secret"


def secret_purpose(repo_id: int, environment: str | None, name: str) -> str:
    # Names cannot contain ':', so the string reads back unambiguously from the right.
    return f"secret:{repo_id}:{environment or ''}:{name}"


def validate_secret(name: str, value: str, environment: str | None) -> None:
    """Raise InvalidInputError naming the field when a secret cannot be stored."""
    if not SECRET_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid secret name {name!r}: use letters, digits and '_', not starting with a "
            "digit, at most 100 characters", field="name")
    validate_secret_value(name, value)
    if len(value.encode("utf-8")) > SECRET_VALUE_MAX:
        raise InvalidInputError(f"secret value is larger than {SECRET_VALUE_MAX} bytes", field="value")
    if "\x00" in value:
        raise InvalidInputError("secret value must not contain NUL characters", field="value")
    validate_environment(environment)


def validate_environment(environment: str | None, *, field: str = "environment") -> None:
    """Raise InvalidInputError naming `field` unless a job could deploy to `environment`.

    Pipelines strip the spaces around a job's environment name, so a name
    with such spaces would never match a job.
    """
    if environment is None:
        return
    if not 1 <= len(environment) <= ENVIRONMENT_MAX or not environment.isprintable() or \
            environment != environment.strip():
        raise InvalidInputError(
            f"invalid environment {environment!r}: use 1 to {ENVIRONMENT_MAX} printable "
            "characters without leading or trailing spaces", field=field)


async def set_secret(
    conn: psycopg.AsyncConnection, keyring: Keyring, *, repo_id: int, name: str, value: str,
    environment: str | None = None,
) -> dict[str, Any]:
    """Create or replace a secret; return its metadata (never the value)."""
    validate_secret(name, value, environment)
    sealed = keyring.encrypt(value, purpose=secret_purpose(repo_id, environment, name))
    with translate_errors():
        cursor = await conn.execute(QUERIES["secret_upsert"], {
            "repo_id": repo_id, "environment": environment, "name": name, "value_encrypted": sealed,
        })
    row = await cursor.fetchone()
    assert row is not None
    logger.info("secret stored", extra={
        "action": "secret_set", "repo_id": repo_id, "secret": name,
        # "created" is an attribute of every LogRecord, which `extra` may not replace.
        "environment": environment or "-", "new_secret": row["created"]})
    return row


async def list_secrets(conn: psycopg.AsyncConnection, repo_id: int) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["secret_list"], {"repo_id": repo_id})
    return await cursor.fetchall()


async def delete_secret(
    conn: psycopg.AsyncConnection, *, repo_id: int, name: str, environment: str | None = None,
) -> None:
    cursor = await conn.execute(QUERIES["secret_delete"], {
        "repo_id": repo_id, "name": name, "environment": environment})
    if await cursor.fetchone() is None:
        where = f" of environment {environment!r}" if environment else ""
        raise NotFoundError(f"secret {name!r}{where} does not exist in repository {repo_id}")
    logger.info("secret deleted", extra={
        "action": "secret_delete", "repo_id": repo_id, "secret": name,
        "environment": environment or "-"})


def decrypt_secret(keyring: Keyring, row: dict[str, Any]) -> str:
    """Decrypt a row of mj_job_secrets_v1 or secret_list_encrypted."""
    return keyring.decrypt(row["value_encrypted"], purpose=secret_purpose(
        row["repo_id"], row["environment"], row["name"]))


async def webhook_secret(
    conn: psycopg.AsyncConnection, keyring: Keyring, repo: dict[str, Any],
) -> str | None:
    """The repository's webhook secret in clear, or None when it has none.

    A secret still stored in clear (written before encryption existed) is
    encrypted in place on this first use.
    """
    if repo.get("webhook_secret_encrypted"):
        return keyring.decrypt(repo["webhook_secret_encrypted"],
                               purpose=webhook_secret_purpose(repo["id"]))
    legacy = repo.get("webhook_secret_legacy")
    if not legacy:
        return None
    await store_webhook_secret(conn, keyring, repo_id=repo["id"], secret=legacy)
    return str(legacy)


async def store_webhook_secret(
    conn: psycopg.AsyncConnection, keyring: Keyring, *, repo_id: int, secret: str,
) -> None:
    sealed = keyring.encrypt(secret, purpose=webhook_secret_purpose(repo_id))
    await conn.execute(QUERIES["repo_set_webhook_secret_encrypted"],
                       {"id": repo_id, "webhook_secret_encrypted": sealed})


async def encrypt_legacy_webhook_secrets(conn: psycopg.AsyncConnection, keyring: Keyring) -> int:
    """Encrypt every webhook secret still stored in clear; return how many."""
    count = 0
    while True:
        cursor = await conn.execute(QUERIES["repo_list_legacy_webhook_secrets"],
                                    {"limit": ROTATION_BATCH})
        rows = await cursor.fetchall()
        if not rows:
            break
        for row in rows:
            await store_webhook_secret(conn, keyring, repo_id=row["id"], secret=row["webhook_secret"])
        count += len(rows)
    if count:
        logger.info("webhook secrets encrypted", extra={
            "action": "webhook_secrets_encrypt", "count": count})
    return count


@dataclass(frozen=True)
class RotationReport:
    secrets: int
    webhook_secrets: int
    legacy_webhook_secrets: int


async def rotate(conn: psycopg.AsyncConnection, keyring: Keyring) -> RotationReport:
    """Re-encrypt every stored value that the active key did not seal.

    Safe to run again after an interruption: values already sealed with the
    active key are skipped. Raises DecryptionError when a value was sealed
    with a key missing from the keyring.
    """
    secrets_done = 0
    after_id = 0
    while True:
        cursor = await conn.execute(QUERIES["secret_list_encrypted"],
                                    {"after_id": after_id, "limit": ROTATION_BATCH})
        rows = await cursor.fetchall()
        if not rows:
            break
        for row in rows:
            after_id = row["id"]
            if not keyring.needs_rotation(row["value_encrypted"]):
                continue
            purpose = secret_purpose(row["repo_id"], row["environment"], row["name"])
            value = keyring.decrypt(row["value_encrypted"], purpose=purpose)
            await conn.execute(QUERIES["secret_set_encrypted"], {
                "id": row["id"], "value_encrypted": keyring.encrypt(value, purpose=purpose)})
            secrets_done += 1

    webhooks_done = 0
    after_id = 0
    while True:
        cursor = await conn.execute(QUERIES["repo_list_webhook_secrets_encrypted"],
                                    {"after_id": after_id, "limit": ROTATION_BATCH})
        rows = await cursor.fetchall()
        if not rows:
            break
        for row in rows:
            after_id = row["id"]
            if not keyring.needs_rotation(row["webhook_secret_encrypted"]):
                continue
            secret = keyring.decrypt(row["webhook_secret_encrypted"],
                                     purpose=webhook_secret_purpose(row["id"]))
            await store_webhook_secret(conn, keyring, repo_id=row["id"], secret=secret)
            webhooks_done += 1

    legacy = await encrypt_legacy_webhook_secrets(conn, keyring)
    report = RotationReport(secrets_done, webhooks_done, legacy)
    logger.info("stored secrets re-encrypted with the active key", extra={
        "action": "secret_rotate", "key_id": keyring.active_id, "secrets": secrets_done,
        "webhook_secrets": webhooks_done, "legacy_webhook_secrets": legacy})
    return report
