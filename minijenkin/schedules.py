"""Cron schedules: read from the pipeline file on the default branch, fired once per tick.

The plan job of each new head of a repository's default branch reads
`on.schedule` from that commit (minijenkin.worker.schedules) and stores the
repository's schedules with mj_schedules_replace_v1. The API then only reads
the database: the leader of the `cron` maintenance loop computes the first
tick of new schedules and fires the schedules whose tick has come. Firing
moves next_run_at forward with a compare-and-set in the transaction that
creates the run (mj_schedule_fire_v1), so a tick fires at most once even if
two processes both believe they lead. After downtime, one run fires for the
latest missed tick, not one per missed tick.

The pipeline syntax, as in GitHub Actions plus an optional time zone:

    on:
      schedule:
        - cron: "30 5 * * 1-5"
          timezone: Europe/Berlin
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin import cron
from minijenkin.errors import PipelineError
from minijenkin.pipeline import PIPELINE_FILE
from minijenkin.pipeline.loader import item_position, key_position, load_yaml, value_position
from minijenkin.sql import QUERIES

logger = logging.getLogger(__name__)

SCHEDULES_MAX = 20
FIRE_BATCH = 100
SCHEDULE_KEYS = ("cron", "timezone")


@dataclass(frozen=True)
class ScheduleSpec:
    cron: str
    timezone: str = "UTC"


def read_schedules(content: bytes | str, *, file: str = PIPELINE_FILE) -> list[ScheduleSpec]:
    """Return the `on.schedule` entries of a pipeline file; raise PipelineError with file:line:column.

    NOTE: this reads only `on.schedule`. Once the full pipeline parser
    validates `on` itself, this should take its result instead.
    """
    document = load_yaml(content, file=file)
    if not isinstance(document, Mapping):
        return []
    # YAML 1.1 loaders read a bare `on` as true; accept that spelling too.
    triggers = document.get("on")
    if triggers is None:
        triggers = document.get(True)
    if not isinstance(triggers, Mapping) or "schedule" not in triggers:
        return []
    entries = triggers["schedule"]
    if not isinstance(entries, list):
        raise _error(file, "'on.schedule' must be a list of entries with a 'cron' key",
                     value_position(triggers, "schedule"))
    if len(entries) > SCHEDULES_MAX:
        raise _error(file, f"'on.schedule' may list at most {SCHEDULES_MAX} entries",
                     value_position(triggers, "schedule"))

    specs: dict[tuple[str, str], ScheduleSpec] = {}
    for index, entry in enumerate(entries):
        where = f"on.schedule[{index}]"
        if not isinstance(entry, Mapping) or "cron" not in entry:
            raise _error(file, f"{where}: each entry must be a mapping with a 'cron' key",
                         item_position(entries, index))
        for name in entry:
            if name not in SCHEDULE_KEYS:
                raise _error(file, f"{where}: unknown key {name!r}; expected 'cron' or 'timezone'",
                             key_position(entry, name))
        expression, timezone = entry["cron"], entry.get("timezone", "UTC")
        if not isinstance(expression, str):
            raise _error(file, f"{where}.cron: must be a string such as '30 5 * * 1-5'",
                         value_position(entry, "cron"))
        if not isinstance(timezone, str):
            raise _error(file, f"{where}.timezone: must be an IANA time zone name",
                         value_position(entry, "timezone"))
        try:
            spec = ScheduleSpec(cron.normalize(expression), timezone)
        except cron.CronError as exc:
            raise _error(file, f"{where}.cron: {exc}", value_position(entry, "cron")) from exc
        try:
            cron.zone(timezone)
        except cron.CronError as exc:
            raise _error(file, f"{where}.timezone: {exc}", value_position(entry, "timezone")) from exc
        specs[(spec.cron, spec.timezone)] = spec
    return list(specs.values())


def _error(file: str, message: str, position: Any) -> PipelineError:
    return PipelineError(message, file=file, line=position.line if position else None,
                         column=position.column if position else None)


async def list_schedules(conn: psycopg.AsyncConnection, *, repo_id: int | None = None
                         ) -> list[dict[str, Any]]:
    cursor = await conn.execute(QUERIES["schedule_list"], {"repo_id": repo_id})
    return await cursor.fetchall()


async def initialize_pending(conn: psycopg.AsyncConnection) -> None:
    """Compute the first tick of schedules that a plan job just stored."""
    cursor = await conn.execute(QUERIES["schedule_pending"], {"limit": FIRE_BATCH})
    for schedule in await cursor.fetchall():
        try:
            first = cron.next_tick(schedule["cron"], schedule["timezone"], schedule["now"])
        except cron.CronError as exc:
            logger.warning("schedule cannot be evaluated", extra={
                "action": "schedule_error", "schedule_id": schedule["id"],
                "repo_id": schedule["repo_id"], "error": str(exc)})
            continue
        await conn.execute(QUERIES["schedule_set_first_tick"],
                           {"id": schedule["id"], "next_run_at": first})
        logger.info("schedule added", extra={
            "action": "schedule_add", "schedule_id": schedule["id"],
            "repo_id": schedule["repo_id"], "cron": schedule["cron"],
            "timezone": schedule["timezone"], "next_run_at": first.isoformat()})


async def tick(conn: psycopg.AsyncConnection) -> list[int]:
    """One tick of the cron loop; return the ids of the runs it started."""
    await initialize_pending(conn)
    return await fire_due(conn)


async def fire_due(conn: psycopg.AsyncConnection) -> list[int]:
    """One tick of the cron loop: fire every schedule whose tick has come; return the run ids."""
    cursor = await conn.execute(QUERIES["schedule_due"], {"limit": FIRE_BATCH})
    run_ids: list[int] = []
    for schedule in await cursor.fetchall():
        try:
            tick, following = cron.due_tick(schedule["cron"], schedule["timezone"],
                                            schedule["next_run_at"], schedule["now"])
        except cron.CronError as exc:
            logger.warning("schedule cannot be evaluated", extra={
                "action": "schedule_error", "schedule_id": schedule["id"],
                "repo_id": schedule["repo_id"], "error": str(exc)})
            continue
        cursor = await conn.execute(QUERIES["schedule_fire"], {
            "id": schedule["id"], "expected": schedule["next_run_at"], "tick": tick,
            "next_run_at": following})
        row = await cursor.fetchone()
        run_id = row["run_id"] if row else None
        if run_id is None:
            logger.info("schedule tick already fired elsewhere", extra={
                "action": "schedule_skip", "schedule_id": schedule["id"]})
            continue
        run_ids.append(run_id)
        logger.info("schedule fired", extra={
            "action": "schedule_fire", "schedule_id": schedule["id"], "repo_id": schedule["repo_id"],
            "run_id": run_id, "tick": tick.isoformat(), "next_run_at": following.isoformat(),
            "missed_from": schedule["next_run_at"].isoformat()})
    return run_ids
