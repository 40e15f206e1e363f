"""Turning a forge webhook delivery into a run, exactly once.

The HTTP layer hands over the raw body and headers; this module checks the
signature on the raw bytes, de-duplicates by the forge's delivery id, and
inserts the delivery record, the run and its plan job in one transaction.
Every delivery, accepted or not, is recorded with its outcome.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from minijenkin import runs
from minijenkin.forges import ForgeEvent, IgnoredEvent, PayloadError, github
from minijenkin.repos import find_repo_for_webhook
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


async def handle_github(
    conn: psycopg.AsyncConnection, *, headers: Mapping[str, str], body: bytes
) -> DeliveryResult:
    """Process one GitHub delivery. `headers` must have lower-case names."""
    forge = github.FORGE
    delivery_id = headers.get(github.DELIVERY_HEADER) or None
    event_name = headers.get(github.EVENT_HEADER)

    async def reject(status_code: int, detail: str, repo_id: int | None = None) -> DeliveryResult:
        return await _record_rejected(
            conn, forge=forge, delivery_id=delivery_id, event=event_name, repo_id=repo_id,
            headers=headers, result=DeliveryResult(status_code, {"detail": detail}),
        )

    if not event_name:
        return await reject(400, "missing X-GitHub-Event header")
    if not headers.get(github.SIGNATURE_HEADER):
        return await reject(401, "missing X-Hub-Signature-256 header: set a secret on the webhook")

    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return await reject(400, f"invalid JSON body: {exc}")
    if not isinstance(payload, dict):
        return await reject(400, "invalid JSON body: expected an object")

    try:
        parsed = github.parse(event_name, payload)
    except PayloadError as exc:
        return await reject(400, str(exc))

    repo_ref = parsed.repository
    if repo_ref is None:
        return await reject(400, "the payload has no field 'repository'")
    repo = await find_repo_for_webhook(conn, repo_ref)
    if repo is None:
        return await reject(404, f"repository {repo_ref.full_name!r} is not registered")
    if not repo["webhook_secret"]:
        return await reject(
            401, f"repository {repo['name']!r} has no webhook secret, so its webhooks are refused",
            repo["id"],
        )
    if not github.verify_signature(repo["webhook_secret"], body, headers):
        return await reject(401, "invalid X-Hub-Signature-256 signature", repo["id"])

    return await _accept(conn, forge=forge, delivery_id=delivery_id, event_name=event_name,
                         repo=repo, parsed=parsed, headers=headers)


async def _accept(
    conn: psycopg.AsyncConnection,
    *,
    forge: str,
    delivery_id: str | None,
    event_name: str,
    repo: Mapping[str, Any],
    parsed: ForgeEvent | IgnoredEvent,
    headers: Mapping[str, str],
) -> DeliveryResult:
    if isinstance(parsed, IgnoredEvent):
        status_code, outcome = (200, "ping") if parsed.ping else (202, "ignored")
        result = DeliveryResult(status_code, {"detail": parsed.reason, "run_id": None})
    else:
        status_code, outcome = 201, "created"
        result = DeliveryResult(status_code, {"run_id": None})

    async with conn.transaction():
        cursor = await conn.execute(QUERIES["webhook_delivery_insert_accepted"], {
            "forge": forge, "delivery_id": delivery_id, "repo_id": repo["id"], "event": event_name,
            "headers": Jsonb(_stored_headers(headers)), "status_code": status_code,
            "outcome": outcome, "message": result.body.get("detail"),
        })
        inserted = await cursor.fetchone()
        if inserted is None:
            return await _replayed(conn, forge=forge, delivery_id=delivery_id)

        if isinstance(parsed, ForgeEvent):
            run_id = await runs.create_run(
                conn, repo_id=repo["id"], event=parsed.kind, ref=parsed.ref,
                commit_sha=parsed.commit, before_sha=parsed.before, message=parsed.message,
                author=parsed.author, trigger=parsed.trigger(delivery_id),
            )
            await conn.execute(QUERIES["webhook_delivery_set_run"],
                               {"id": inserted["id"], "run_id": run_id})
            result.body["run_id"] = run_id

    logger.info("webhook delivery accepted", extra={
        "action": "webhook_accept", "forge": forge, "delivery_id": delivery_id,
        "repo_id": repo["id"], "outcome": outcome, "run_id": result.body.get("run_id"),
    })
    return result


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
