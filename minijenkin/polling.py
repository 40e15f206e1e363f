"""Polling: `git ls-remote` finds new heads for forges that cannot reach us.

A repository with `poll_interval_seconds` is polled by the leader of the
`poll` maintenance loop. Each branch or tag head not yet built starts a run
(event push or tag), through the same ref_heads table that push webhooks
use, so a head starts one run whether the webhook, the poll, or both saw it.

The first poll of a repository builds only the default branch's head and
records every other head as already seen, so registering a repository with
hundreds of branches and tags does not start hundreds of runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg

from minijenkin import runs
from minijenkin.config import Settings
from minijenkin.forges import ref_names
from minijenkin.remote import list_heads
from minijenkin.sql import QUERIES
from minijenkin.triggers import git_home
from minijenkin.worker.git import GitError

logger = logging.getLogger(__name__)

POLL_BATCH = 20


async def poll_due(conn: psycopg.AsyncConnection, settings: Settings) -> None:
    """Run one tick of the poll loop: poll every repository whose interval has passed."""
    cursor = await conn.execute(QUERIES["repo_poll_due"], {"limit": POLL_BATCH})
    for repo in await cursor.fetchall():
        error: str | None = None
        try:
            async with conn.transaction():
                await poll_repository(conn, settings, repo)
        except GitError as exc:
            error = f"cannot read the refs: {exc}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error and error != repo["poll_error"]:
            # A repository that stays unreachable is logged once, not at every interval.
            logger.warning("poll failed", extra={
                "action": "poll_error", "repo_id": repo["id"], "error": error})
        elif error is None and repo["poll_error"]:
            logger.info("poll succeeded again", extra={"action": "poll_recovered",
                                                       "repo_id": repo["id"]})
        await conn.execute(QUERIES["repo_poll_record"], {"id": repo["id"], "error": error})


async def poll_repository(conn: psycopg.AsyncConnection, settings: Settings,
                          repo: Mapping[str, Any]) -> list[int]:
    """Start runs for the repository's new heads; return the ids of the runs created."""
    heads = await list_heads(repo["url"], home=git_home(settings.data_dir),
                             limit_seconds=settings.git_remote_timeout_seconds)
    cursor = await conn.execute(QUERIES["ref_heads_unknown"], {
        "repo_id": repo["id"], "refs": list(heads), "commits": list(heads.values())})
    unknown = {row["ref"]: row["commit_sha"] for row in await cursor.fetchall()}

    if repo["polled_at"] is None:
        default_ref = f"refs/heads/{repo['default_branch']}"
        baseline = {ref: commit for ref, commit in unknown.items() if ref != default_ref}
        await conn.execute(QUERIES["ref_heads_record"], {
            "repo_id": repo["id"], "refs": list(baseline), "commits": list(baseline.values())})
        unknown = {ref: commit for ref, commit in unknown.items() if ref == default_ref}

    created: list[int] = []
    # Branches before tags, each in name order, so runs appear in a stable order.
    for ref in sorted(unknown, key=lambda name: (name.startswith("refs/tags/"), name)):
        run_id = await _start_run(conn, repo, ref, unknown[ref])
        if run_id is not None:
            created.append(run_id)
    if created or repo["polled_at"] is None:
        logger.info("repository polled", extra={
            "action": "poll", "repo_id": repo["id"], "heads": len(heads),
            "run_ids": ",".join(map(str, created)) or "-"})
    return created


async def _start_run(conn: psycopg.AsyncConnection, repo: Mapping[str, Any], ref: str,
                     commit: str) -> int | None:
    cursor = await conn.execute(QUERIES["ref_head_latest"], {"repo_id": repo["id"], "ref": ref})
    previous = await cursor.fetchone()
    branch, tag = ref_names(ref)
    run_id, created = await runs.create_run_for_head(
        conn, repo_id=repo["id"], event="tag" if tag is not None else "push", ref=ref,
        commit_sha=commit, before_sha=previous["commit_sha"] if previous else None,
        trigger={"source": "poll", "branch": branch, "tag": tag}, source="poll",
    )
    return run_id if created else None
