"""Notification targets of a repository and the deliveries of the outbox.

Every route needs an admin token: targets hold webhook URLs and forge
tokens, and delivery records hold receivers' error responses.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from minijenkin.api import schemas
from minijenkin.api.auth import AdminAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import BIGINT_MAX, RowId
from minijenkin.crypto import Keyring, load_keyring
from minijenkin.notify import DeliveryState, Event, Kind, deliveries, targets

router = APIRouter(tags=["notifications"], responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
DELIVERY_PAGE_MAX = 200


def request_keyring(request: Request) -> Keyring:
    """Return the process's keyring, loading it on first use."""
    keyring = getattr(request.app.state, "keyring", None)
    if keyring is None:
        settings = request.app.state.settings
        keyring = load_keyring(settings.secret_key, settings.data_dir)
        request.app.state.keyring = keyring
    return keyring


class NotificationTargetCreate(schemas.Model):
    kind: Kind = Field(description="Where notifications go and in which format.")
    url: str | None = Field(
        default=None, max_length=2048,
        description="Webhook URL (slack, discord, webhook), or the forge API base URL of a "
                    "commit-status target (default: the configured GitHub or GitLab URL). "
                    "Stored encrypted; never returned.",
        examples=["https://hooks.slack.com/services/T000/B000/XXXX"])
    secret: str | None = Field(
        default=None, max_length=1024,
        description="HMAC key that signs generic webhooks (X-Minijenkin-Signature), or the API "
                    "token of a commit-status target. Stored encrypted; never returned.")
    events: list[Event] | None = Field(
        default=None, max_length=6,
        description="Events to send; default: all the kind supports. run.succeeded includes "
                    "run.fixed.")
    project: str | None = Field(
        default=None, max_length=255,
        description="Commit statuses only: the forge project (GitHub owner/repository, GitLab "
                    "path or id); default: the repository's name.")
    context: str | None = Field(
        default=None, max_length=100,
        description="Commit statuses only: the status name shown by the forge; default: "
                    "minijenkin.")


class NotificationTarget(BaseModel):
    id: int
    repo_id: int
    kind: Kind
    url: str = Field(description="Scheme and host of the URL; the rest is never shown.")
    has_secret: bool
    events: list[Event]
    project: str | None
    context: str | None
    created_at: dt.datetime


class NotificationTargetList(BaseModel):
    targets: list[NotificationTarget]


class Delivery(BaseModel):
    id: int
    target_id: int
    kind: Kind
    repo_id: int
    run_id: int | None
    event: Event
    idempotency_key: str
    state: DeliveryState
    attempts: int = Field(description="Attempts since the delivery was (re)scheduled.")
    scheduled_at: dt.datetime
    next_attempt_at: dt.datetime = Field(
        description="Next attempt of a pending delivery; end of the lease of one being delivered.")
    dispatcher: str | None
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: dt.datetime | None
    dead_at: dt.datetime | None
    created_at: dt.datetime


class DeliveryList(BaseModel):
    deliveries: list[Delivery]
    next_before: int | None = Field(
        description="Pass as `before` to fetch the next page; null on the last page.")


def _target(row: dict[str, Any]) -> NotificationTarget:
    options = row["options"] or {}
    return NotificationTarget(
        id=row["id"], repo_id=row["repo_id"], kind=row["kind"], url=row["url_display"],
        has_secret=row["has_secret"], events=list(row["events"]), project=options.get("project"),
        context=options.get("context"), created_at=row["created_at"])


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(**{**row, "idempotency_key": str(row["idempotency_key"])})


@router.post("/api/repos/{repo_id}/notifications", status_code=201,
             response_model=NotificationTarget,
             responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody}})
async def create_notification_target(
    repo_id: RowId, body: NotificationTargetCreate, request: Request, conn: Conn, _: AdminAccess,
) -> NotificationTarget:
    """Add a notification target to a repository."""
    settings = request.app.state.settings
    default_status_url = {"github-status": settings.github_api_url,
                          "gitlab-status": settings.gitlab_api_url}.get(body.kind)
    row = await targets.create_target(
        conn, request_keyring(request), repo_id=repo_id, kind=body.kind, url=body.url,
        secret=body.secret, events=body.events, project=body.project, context=body.context,
        default_status_url=default_status_url)
    return _target(row)


@router.get("/api/repos/{repo_id}/notifications", response_model=NotificationTargetList,
            responses={404: {"model": schemas.ErrorBody}})
async def list_notification_targets(
    repo_id: RowId, conn: Conn, _: AdminAccess,
) -> NotificationTargetList:
    """List a repository's notification targets (URLs shown as scheme and host only)."""
    rows = await targets.list_targets(conn, repo_id)
    return NotificationTargetList(targets=[_target(row) for row in rows])


@router.delete("/api/repos/{repo_id}/notifications/{target_id}", status_code=204,
               responses={404: {"model": schemas.ErrorBody}})
async def delete_notification_target(
    repo_id: RowId, target_id: RowId, conn: Conn, _: AdminAccess,
) -> Response:
    """Delete a notification target together with its deliveries."""
    await targets.delete_target(conn, repo_id=repo_id, target_id=target_id)
    return Response(status_code=204)


@router.get("/api/deliveries", response_model=DeliveryList)
async def list_deliveries(
    conn: Conn,
    _: AdminAccess,
    state: Annotated[DeliveryState | None, Query()] = None,
    repo_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    before: Annotated[int | None, Query(
        ge=1, le=BIGINT_MAX, description="Return deliveries with a smaller id.")] = None,
    limit: Annotated[int, Query(ge=1, le=DELIVERY_PAGE_MAX)] = 50,
) -> DeliveryList:
    """List notification deliveries, newest first, optionally by state and repository."""
    rows = await deliveries.list_deliveries(conn, state=state, repo_id=repo_id, before_id=before,
                                            limit=limit)
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return DeliveryList(deliveries=[_delivery(row) for row in rows], next_before=next_before)


@router.post("/api/deliveries/{delivery_id}/redeliver", response_model=Delivery,
             responses={404: {"model": schemas.ErrorBody}, 409: {"model": schemas.ErrorBody}})
async def redeliver(delivery_id: RowId, conn: Conn, _: AdminAccess) -> Delivery:
    """Send a delivery again now, with a fresh retry schedule and the same idempotency key."""
    return _delivery(await deliveries.redeliver(conn, delivery_id))
