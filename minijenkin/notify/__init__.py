"""Notifications: per-repository targets and the outbox that delivers to them.

A run closing (or a deploy starting or ending) inserts one outbox row per
matching target in the same transaction (`sql/functions/60_outbox.sql`).
Dispatchers (`dispatcher.py`) claim due rows with SKIP LOCKED, render the
body for the target's kind (`render.py`) and send it with retries, backoff
and a dead letter. Delivery is at least once: every attempt of a delivery
carries the same `Idempotency-Key`, so receivers can drop duplicates.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["slack", "discord", "webhook", "github-status", "gitlab-status"]
KINDS: tuple[Kind, ...] = ("slack", "discord", "webhook", "github-status", "gitlab-status")
STATUS_KINDS: frozenset[str] = frozenset({"github-status", "gitlab-status"})

Event = Literal["run.succeeded", "run.failed", "run.fixed", "run.cancelled", "deploy.started",
                "deploy.finished"]
RUN_EVENTS: tuple[Event, ...] = ("run.succeeded", "run.failed", "run.fixed", "run.cancelled")
DEPLOY_EVENTS: tuple[Event, ...] = ("deploy.started", "deploy.finished")
EVENTS: tuple[Event, ...] = RUN_EVENTS + DEPLOY_EVENTS

DeliveryState = Literal["pending", "delivering", "delivered", "dead"]

# NOTIFY channel the outbox functions signal when rows become due.
OUTBOX_CHANNEL = "mj_outbox_v1"
