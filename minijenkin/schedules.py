"""Cron schedules: read from the pipeline file on the default branch, fired once per tick.

Two leader-elected maintenance loops work on them:

- `schedule_sync` reads `on.schedule` from the pipeline file at the head of
  each repository's default branch (found with `git ls-remote`, fetched into
  the same mirror workers use) when a new head was built there, when the
  schedules were never read, or every MINIJENKIN_SCHEDULE_SYNC_SECONDS;
- `cron` fires the schedules whose next tick has come. Firing moves
  next_run_at forward with a compare-and-set in the transaction that
  creates the run (mj_schedule_fire_v1), so a tick fires at most once even
  if two processes both believe they lead. After downtime, one run fires
  for the latest missed tick, not one per missed tick.

The pipeline syntax, as in GitHub Actions plus an optional time zone:

    on:
      schedule:
        - cron: "30 5 * * 1-5"
          timezone: Europe/Berlin
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from minijenkin import cron
from minijenkin.config import Settings
from minijenkin.errors import PipelineError
from minijenkin.pipeline import PIPELINE_FILE
from minijenkin.pipeline.loader import item_position, key_position, load_yaml, value_position
from minijenkin.remote import list_heads
from minijenkin.sql import QUERIES
from minijenkin.triggers import git_home
from minijenkin.worker.git import GitError, Mirror

logger = logging.getLogger(__name__)

SCHEDULES_MAX = 20
SYNC_BATCH = 10
FIRE_BATCH = 100
SCHEDULE_KEYS = ("cron", "timezone")


@dataclass(frozen=True)
class ScheduleSpec:
    cron: str
    timezone: str = "UTC"


def read_schedules(content: bytes | str, *, file: str = PIPELINE_FILE) -> list[ScheduleSpec]:
    """The `on.schedule` entries of a pipeline file; PipelineError with file:line:column.

    NOTE: this reads only `on.schedule`. Once the full pipeline parser
    validates `on` itself, this should take its result instead.
    """
    document = load_yaml(content, file=file)
    if not isinstance(document, Mapping):
        return []
    # YAML 1.1 loaders read a bare `on` as true; accept that spelling too.
    key = "on" if "on" in document else (True if True in document else None)
    triggers = document.get(key) if key is not None else None
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


async def _database_now(conn: psycopg.AsyncConnection) -> dt.datetime:
    cursor = await conn.execute(QUERIES["database_now"])
    row = await cursor.fetchone()
    assert row is not None
    return row["now"]


async def apply_schedules(conn: psycopg.AsyncConnection, *, repo_id: int, ref: str, commit: str,
                          specs: list[ScheduleSpec], now: dt.datetime) -> None:
    """Make the repository's schedules those of `specs`; kept ones keep their next tick."""
    cursor = await conn.execute(QUERIES["schedule_delete_missing"], {
        "repo_id": repo_id, "crons": [spec.cron for spec in specs],
        "timezones": [spec.timezone for spec in specs]})
    for removed in await cursor.fetchall():
        logger.info("schedule removed", extra={
            "action": "schedule_remove", "repo_id": repo_id, "schedule_id": removed["id"],
            "cron": removed["cron"], "timezone": removed["timezone"]})
    for spec in specs:
        cursor = await conn.execute(QUERIES["schedule_upsert"], {
            "repo_id": repo_id, "cron": spec.cron, "timezone": spec.timezone, "ref": ref,
            "commit_sha": commit, "next_run_at": cron.next_tick(spec.cron, spec.timezone, now)})
        row = await cursor.fetchone()
        assert row is not None
        logger.debug("schedule stored", extra={
            "action": "schedule_store", "repo_id": repo_id, "schedule_id": row["id"],
            "cron": spec.cron, "timezone": spec.timezone, "next_run_at": row["next_run_at"]})


async def sync_repository(conn: psycopg.AsyncConnection, settings: Settings,
                          repo: Mapping[str, Any]) -> None:
    """Read one repository's schedules from its default branch and store them."""
    ref = f"refs/heads/{repo['default_branch']}"
    try:
        heads = await list_heads(repo["url"], home=git_home(settings.data_dir), patterns=(ref,),
                                 timeout=settings.git_remote_timeout_seconds)
    except GitError as exc:
        await _record_sync(conn, repo, commit=None, error=f"cannot read the refs: {exc}")
        return
    commit = heads.get(ref)
    now = await _database_now(conn)
    if commit is None:
        async with conn.transaction():
            await apply_schedules(conn, repo_id=repo["id"], ref=ref, commit="0" * 40, specs=[],
                                  now=now)
            await _record_sync(conn, repo, commit=None,
                               error=f"the default branch {repo['default_branch']!r} does not exist")
        return
    if commit == repo["schedules_commit"]:
        await _record_sync(conn, repo, commit=commit, error=repo["schedules_error"])
        return

    try:
        mirror = Mirror(settings.data_dir, repo["id"], repo["url"])
        await mirror.ensure_commit(commit)
        content = await mirror.read_file(commit, PIPELINE_FILE)
    except GitError as exc:
        await _record_sync(conn, repo, commit=None, error=f"cannot fetch {commit[:12]}: {exc}")
        return
    try:
        specs = read_schedules(content) if content is not None else []
    except PipelineError as exc:
        # The schedules already stored stay until a valid file replaces them.
        await _record_sync(conn, repo, commit=commit, error=str(exc))
        return

    async with conn.transaction():
        await apply_schedules(conn, repo_id=repo["id"], ref=ref, commit=commit, specs=specs, now=now)
        await _record_sync(conn, repo, commit=commit, error=None)
    logger.info("schedules read", extra={
        "action": "schedule_sync", "repo_id": repo["id"], "commit": commit,
        "schedules": len(specs)})


async def _record_sync(conn: psycopg.AsyncConnection, repo: Mapping[str, Any], *,
                       commit: str | None, error: str | None) -> None:
    if error and error != repo.get("schedules_error"):
        logger.warning("cannot read the schedules of a repository", extra={
            "action": "schedule_sync_error", "repo_id": repo["id"], "error": error})
    await conn.execute(QUERIES["schedule_sync_record"],
                       {"id": repo["id"], "commit_sha": commit, "error": error})


async def sync_due(conn: psycopg.AsyncConnection, settings: Settings) -> None:
    """One tick of the schedule_sync loop."""
    cursor = await conn.execute(QUERIES["schedule_sync_due"], {
        "max_age_seconds": settings.schedule_sync_seconds, "limit": SYNC_BATCH})
    for repo in await cursor.fetchall():
        try:
            async with conn.transaction():
                await sync_repository(conn, settings, repo)
        except Exception as exc:
            # One repository's failure must not stop the others; the next
            # tick tries it again.
            logger.warning("schedule sync failed", extra={
                "action": "schedule_sync_error", "repo_id": repo["id"],
                "error": f"{type(exc).__name__}: {exc}"})


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
