"""Turning a forge webhook delivery into runs, exactly once.

The HTTP layer hands over the raw body and headers; this module checks the
signature (or token) on the raw bytes, de-duplicates by the forge's delivery
id, and inserts the delivery record, the runs and their plan jobs in one
transaction. Every delivery, accepted or not, is recorded with its outcome.
Nothing here talks to git or the network: the reply costs a few queries.

A pushed head (repository, ref, commit) starts one run whichever trigger
sees it first, this webhook or a poll (see mj_run_create_for_head_v1).
Pull request events start a run per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from minijenkin import runs, secrets
from minijenkin.crypto import DecryptionError, Keyring
from minijenkin.errors import NotFoundError
from minijenkin.forges import Forge, ForgeEvent, IgnoredEvent, PayloadError, decode_body
from minijenkin.forges.registry import FORGES
from minijenkin.repos import find_repo_for_webhook, find_repos_for_owner_webhook
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

# Headers never stored with a delivery record: they carry credentials.
_SECRET_HEADERS = frozenset({"authorization", "cookie", "x-gitlab-token", "proxy-authorization"})
_HEADER_VALUE_MAX = 1024


@dataclass
class DeliveryResult:
    status_code: int
    body: dict[str, Any] = field(default_factory=dict)


def _stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value[:_HEADER_VALUE_MAX]
        for name, value in headers.items()
        if name not in _SECRET_HEADERS
    }


async def _record_rejected(
    conn: psycopg.AsyncConnection,
    *,
    forge: str,
    delivery_id: str | None,
    event: str | None,
    repo_id: int | None,
    headers: Mapping[str, str],
    result: DeliveryResult,
) -> DeliveryResult:
    await conn.execute(QUERIES["webhook_delivery_insert_rejected"], {
        "forge": forge, "delivery_id": delivery_id, "repo_id": repo_id, "event": event,
        "headers": Jsonb(_stored_headers(headers)), "status_code": result.status_code,
        "message": result.body.get("detail"),
    })
    logger.warning("webhook delivery rejected", extra={
        "action": "webhook_reject", "forge": forge, "delivery_id": delivery_id,
        "status_code": result.status_code, "reason": result.body.get("detail"),
    })
    return result


async def handle_delivery(
    conn: psycopg.AsyncConnection,
    forge: Forge,
    *,
    headers: Mapping[str, str],
    body: bytes,
    keyring: Keyring,
) -> DeliveryResult:
    """Process one delivery of `forge`. `headers` must have lower-case names."""
    delivery_id = forge.delivery_id(headers)
    event_name = forge.event_name(headers)

    async def reject(status_code: int, detail: str, repo_id: int | None = None) -> DeliveryResult:
        return await _record_rejected(
            conn, forge=forge.name, delivery_id=delivery_id, event=event_name, repo_id=repo_id,
            headers=headers, result=DeliveryResult(status_code, {"detail": detail}),
        )

    if not event_name:
        return await reject(400, f"missing {forge.event_headers[0]} header")
    if not forge.has_credential(headers):
        return await reject(
            401, f"missing {forge.credential_headers[0]} header: set a secret on the webhook")

    try:
        payload = decode_body(body, headers.get("content-type"))
        parsed = forge.parse(event_name, payload)
    except PayloadError as exc:
        return await reject(400, str(exc))

    repo_ref = parsed.repository if isinstance(parsed, IgnoredEvent) else _first(parsed).repository
    if repo_ref is None and isinstance(parsed, IgnoredEvent) and parsed.owner:
        return await _handle_owner_delivery(conn, forge, parsed, parsed.owner, headers=headers,
                                            body=body, keyring=keyring, reject=reject)
    if repo_ref is None:
        return await reject(400, "the payload does not name its repository")
    repo = await find_repo_for_webhook(conn, repo_ref)
    if repo is None:
        return await reject(404, f"repository {repo_ref.full_name!r} is not registered")
    try:
        secret = await _webhook_secret(conn, keyring, repo, forge=forge.name,
                                       delivery_id=delivery_id)
    except DecryptionError:
        return await reject(401, f"the webhook secret of repository {repo['name']!r} cannot be "
                                 "decrypted with the configured MINIJENKIN_SECRET_KEY", repo["id"])
    if not secret:
        return await reject(
            401, f"repository {repo['name']!r} has no webhook secret, so its webhooks are refused",
            repo["id"],
        )
    if not forge.verify(secret, body, headers):
        return await reject(
            401, f"invalid {forge.credential_headers[0]} {forge.credential_kind}", repo["id"])

    return await _accept(conn, forge=forge.name, delivery_id=delivery_id, event_name=event_name,
                         repo=repo, parsed=parsed, headers=headers)


async def _webhook_secret(
    conn: psycopg.AsyncConnection, keyring: Keyring, repo: Mapping[str, Any], *,
    forge: str, delivery_id: str | None,
) -> str | None:
    """Return the repository's webhook secret; log and re-raise a DecryptionError."""
    try:
        return await secrets.webhook_secret(conn, keyring, dict(repo))
    except DecryptionError as exc:
        logger.error("cannot decrypt a webhook secret", extra={
            "action": "webhook_secret_error", "forge": forge, "delivery_id": delivery_id,
            "repo_id": repo["id"], "error": str(exc)})
        raise


async def _handle_owner_delivery(
    conn: psycopg.AsyncConnection,
    forge: Forge,
    parsed: IgnoredEvent,
    owner: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    keyring: Keyring,
    reject: Callable[..., Awaitable[DeliveryResult]],
) -> DeliveryResult:
    """Accept a delivery of an owner's webhook (no repository named) that starts no run.

    Such a webhook has one secret for all of the owner's repositories, so the
    signature must match the webhook secret of one of the owner's registered
    repositories. The delivery is then recorded with that repository.
    """
    candidates = await find_repos_for_owner_webhook(conn, owner)
    if not candidates:
        return await reject(404, f"no registered repository belongs to {owner!r}, so this "
                                 "webhook of the whole organization or user is refused")
    delivery_id = forge.delivery_id(headers)
    for repo in candidates:
        try:
            secret = await _webhook_secret(conn, keyring, repo, forge=forge.name,
                                           delivery_id=delivery_id)
        except DecryptionError:
            continue
        if secret and forge.verify(secret, body, headers):
            return await _accept(conn, forge=forge.name, delivery_id=delivery_id,
                                 event_name=forge.event_name(headers) or "", repo=repo,
                                 parsed=parsed, headers=headers)
    return await reject(401, f"invalid {forge.credential_headers[0]} {forge.credential_kind}: "
                             f"it matches the webhook secret of no repository of {owner!r}")


async def handle_github(
    conn: psycopg.AsyncConnection, *, headers: Mapping[str, str], body: bytes, keyring: Keyring,
) -> DeliveryResult:
    """Process one GitHub delivery. `headers` must have lower-case names."""
    return await handle_delivery(conn, FORGES["github"], headers=headers, body=body, keyring=keyring)


def _first(parsed: ForgeEvent | tuple[ForgeEvent, ...]) -> ForgeEvent:
    return parsed[0] if isinstance(parsed, tuple) else parsed


async def _accept(
    conn: psycopg.AsyncConnection,
    *,
    forge: str,
    delivery_id: str | None,
    event_name: str,
    repo: Mapping[str, Any],
    parsed: ForgeEvent | IgnoredEvent | tuple[ForgeEvent, ...],
    headers: Mapping[str, str],
) -> DeliveryResult:
    if isinstance(parsed, IgnoredEvent):
        status_code, outcome = (200, "ping") if parsed.ping else (202, "ignored")
        result = DeliveryResult(status_code, {"detail": parsed.reason, "run_id": None})
        events: tuple[ForgeEvent, ...] = ()
    else:
        status_code, outcome = 201, "created"
        result = DeliveryResult(status_code, {"run_id": None})
        events = parsed if isinstance(parsed, tuple) else (parsed,)

    async with conn.transaction():
        cursor = await conn.execute(QUERIES["webhook_delivery_insert_accepted"], {
            "forge": forge, "delivery_id": delivery_id, "repo_id": repo["id"], "event": event_name,
            "headers": Jsonb(_stored_headers(headers)), "status_code": status_code,
            "outcome": outcome, "message": result.body.get("detail"),
        })
        inserted = await cursor.fetchone()
        if inserted is None:
            return await _replayed(conn, forge=forge, delivery_id=delivery_id)

        run_ids: list[int] = []
        built_before: list[str] = []
        for event in events:
            run_id, created = await _start_run(conn, repo_id=repo["id"], event=event,
                                               delivery_id=delivery_id)
            if run_id is not None:
                run_ids.append(run_id)
            if not created:
                built_before.append(f"{event.ref} at {event.commit[:12]}"
                                    + (f" (run {run_id})" if run_id is not None else ""))
        if events:
            result.body["run_id"] = run_ids[0] if run_ids else None
            result.body["run_ids"] = run_ids
            if len(built_before) == len(events):
                # Every head was already built (a poll saw it first): nothing new.
                status_code, outcome = 200, "duplicate"
                result.status_code = 200
                result.body["duplicate"] = True
                result.body["detail"] = f"already built: {', '.join(built_before)}"
            await conn.execute(QUERIES["webhook_delivery_set_result"], {
                "id": inserted["id"], "run_id": result.body["run_id"], "status_code": status_code,
                "outcome": outcome, "message": result.body.get("detail")})

    logger.info("webhook delivery accepted", extra={
        "action": "webhook_accept", "forge": forge, "delivery_id": delivery_id,
        "repo_id": repo["id"], "outcome": outcome, "run_id": result.body.get("run_id"),
    })
    return result


async def _start_run(
    conn: psycopg.AsyncConnection, *, repo_id: int, event: ForgeEvent, delivery_id: str | None,
) -> tuple[int | None, bool]:
    """Create the event's run; a pushed head already built by a poll creates nothing."""
    trigger = {**event.trigger(delivery_id), "source": "webhook"}
    if event.kind == "pull_request":
        run_id = await runs.create_run(
            conn, repo_id=repo_id, event=event.kind, ref=event.ref, commit_sha=event.commit,
            before_sha=event.before, message=event.message, author=event.author, trigger=trigger,
        )
        return run_id, True
    return await runs.create_run_for_head(
        conn, repo_id=repo_id, event=event.kind, ref=event.ref, commit_sha=event.commit,
        before_sha=event.before, message=event.message, author=event.author, trigger=trigger,
        source="webhook",
    )


async def _replayed(
    conn: psycopg.AsyncConnection, *, forge: str, delivery_id: str | None
) -> DeliveryResult:
    cursor = await conn.execute(
        QUERIES["webhook_delivery_find_accepted"], {"forge": forge, "delivery_id": delivery_id}
    )
    original = await cursor.fetchone()
    run_id = original["run_id"] if original else None
    logger.info("webhook delivery replayed", extra={
        "action": "webhook_duplicate", "forge": forge, "delivery_id": delivery_id, "run_id": run_id,
    })
    return DeliveryResult(200, {
        "detail": f"delivery {delivery_id} was already processed", "duplicate": True,
        "run_id": run_id,
    })


async def list_deliveries(
    conn: psycopg.AsyncConnection, *, forge: str | None = None, repo: str | None = None,
    outcome: str | None = None, before_id: int | None = None, limit: int = 50,
) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["webhook_delivery_list"], {
        "forge": forge, "repo": repo, "outcome": outcome, "before_id": before_id, "limit": limit})
    return await cursor.fetchall()


async def get_delivery(conn: psycopg.AsyncConnection, delivery_id: int) -> dict[str, Any]:
    cursor = await conn.execute(QUERIES["webhook_delivery_get"], {"id": delivery_id})
    row = await cursor.fetchone()
    if row is None:
        raise NotFoundError(f"webhook delivery {delivery_id} does not exist")
    return row
