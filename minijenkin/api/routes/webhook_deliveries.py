"""Recorded webhook deliveries: GET /api/webhooks/deliveries[/{id}]."""

from __future__ import annotations

from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query

from minijenkin import webhooks
from minijenkin.api import schemas
from minijenkin.api.auth import ReadAccess
from minijenkin.api.deps import db_connection
from minijenkin.api.params import BIGINT_MAX, RowId

router = APIRouter(prefix="/api/webhooks/deliveries", tags=["webhooks"],
                   responses=schemas.AUTH_RESPONSES)

Conn = Annotated[psycopg.AsyncConnection, Depends(db_connection)]
DELIVERY_PAGE_MAX = 200


@router.get("", response_model=schemas.WebhookDeliveryList)
async def list_deliveries(
    conn: Conn,
    _: ReadAccess,
    forge: Annotated[schemas.ForgeName | None, Query()] = None,
    repo: Annotated[str | None, Query(max_length=200, description="Repository name.")] = None,
    outcome: Annotated[schemas.DeliveryOutcome | None, Query()] = None,
    before: Annotated[int | None, Query(
        ge=1, le=BIGINT_MAX, description="Return deliveries with a smaller id.")] = None,
    limit: Annotated[int, Query(ge=1, le=DELIVERY_PAGE_MAX)] = 50,
) -> schemas.WebhookDeliveryList:
    """List webhook deliveries, newest first, accepted or not."""
    rows = await webhooks.list_deliveries(conn, forge=forge, repo=repo, outcome=outcome,
                                          before_id=before, limit=limit)
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return schemas.WebhookDeliveryList(
        deliveries=[schemas.WebhookDeliverySummary(**row) for row in rows], next_before=next_before)


@router.get("/{delivery_id}", response_model=schemas.WebhookDelivery,
            responses={404: {"model": schemas.ErrorBody}})
async def get_delivery(delivery_id: RowId, conn: Conn, _: ReadAccess) -> schemas.WebhookDelivery:
    """Fetch one delivery with its headers (credentials are never stored)."""
    return schemas.WebhookDelivery(**await webhooks.get_delivery(conn, delivery_id))
