"""`minijenkin exec`: run a local working tree's pipeline on this machine, like `act`.

The working tree, uncommitted and untracked files included (ignored files
excluded), is snapshotted as a commit in a private repository under
`<data dir>/exec/snapshots`; the user's own repository is only read (its
objects are shared through git's alternates mechanism, nothing is written
to it). The run then goes through the real path: an embedded PostgreSQL
under `<data dir>/exec` (kept apart from `minijenkin up`'s database, so no
other worker takes these jobs), the plan job, and an in-process worker
whose labels cover every `runs-on` of the pipeline. Log lines are read back
from the database and printed as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.text import Text

from minijenkin import runs
from minijenkin.config import Settings
from minijenkin.db import connect_async
from minijenkin.db.embedded import EmbeddedPostgres
from minijenkin.db.migrate import migrate
from minijenkin.errors import ConfigurationError, NotFoundError
from minijenkin.logs.store import attempt_info, read_lines
from minijenkin.pipeline import sources
from minijenkin.pipeline.events import Event
from minijenkin.repos import DEFAULT_BRANCH
from minijenkin.sql import QUERIES
from minijenkin.worker.main import Worker

POLL_SECONDS = 0.2
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "minijenkin exec", "GIT_AUTHOR_EMAIL": "exec@minijenkin.invalid",
                "GIT_COMMITTER_NAME": "minijenkin exec", "GIT_COMMITTER_EMAIL": "exec@minijenkin.invalid"}
JOB_COLOURS = ("cyan", "magenta", "green", "blue", "yellow", "bright_cyan", "bright_magenta", "bright_green")
STATUS_COLOURS = {"succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow",
                  "skipped": "dim"}
ACTIVE = ("pending", "queued", "running")


@dataclass(frozen=True)
class Snapshot:
    """A commit holding the working tree, in a repository the worker can clone."""

    url: str
    commit: str
    before: str | None
    branch: str
    root: Path
    name: str


def _git(*args: str, cwd: Path | None = None, git_dir: Path | None = None,
         work_tree: Path | None = None) -> str:
    command = ["git"]
    if git_dir is not None:
        command += ["--git-dir", str(git_dir)]
    if work_tree is not None:
        command += ["--work-tree", str(work_tree)]
    result = subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, check=False,
                            env={**os.environ, **GIT_IDENTITY, "GIT_TERMINAL_PROMPT": "0"})
    if result.returncode != 0:
        raise ConfigurationError(f"git {args[0]} failed: {result.stderr.strip() or result.returncode}")
    return result.stdout.strip()


def _git_optional(*args: str, cwd: Path) -> str | None:
    try:
        return _git(*args, cwd=cwd)
    except ConfigurationError:
        return None


def take_snapshot(directory: Path, exec_dir: Path) -> Snapshot:
    """Commit the working tree of `directory` into a private snapshot repository."""
    if not directory.is_dir():
        raise ConfigurationError(f"{directory} is not a directory")
    top = _git_optional("rev-parse", "--show-toplevel", cwd=directory)
    root = Path(top) if top else directory.resolve()
    head = _git_optional("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=root) if top else None
    branch = (_git_optional("symbolic-ref", "--short", "-q", "HEAD", cwd=root) if top else None) or "local"

    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    snapshot = exec_dir / "snapshots" / digest
    git_dir = snapshot / ".git"
    if not git_dir.exists():
        snapshot.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--initial-branch=main", str(snapshot))
    if top:
        # Share the user's objects read-only instead of copying them.
        objects = Path(_git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=root)) / "objects"
        (git_dir / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        exclude = Path(_git("rev-parse", "--path-format=absolute", "--git-path", "info/exclude", cwd=root))
        if exclude.exists():
            (git_dir / "info").mkdir(exist_ok=True)
            (git_dir / "info" / "exclude").write_bytes(exclude.read_bytes())

    if head:
        _git("read-tree", head, git_dir=git_dir, work_tree=root)
    else:
        _git("read-tree", "--empty", git_dir=git_dir, work_tree=root)
    _git("add", "--all", ".", git_dir=git_dir, work_tree=root, cwd=root)
    tree = _git("write-tree", git_dir=git_dir)
    parents = ["-p", head] if head else []
    commit = _git("commit-tree", tree, *parents, "-m", f"minijenkin exec: working tree of {root}",
                  git_dir=git_dir)
    _git("update-ref", "refs/heads/main", commit, git_dir=git_dir)

    name = re.sub(r"[^A-Za-z0-9._-]", "-", root.name).lstrip(".-_") or "tree"
    return Snapshot(url=snapshot.resolve().as_uri(), commit=commit, before=head, branch=branch, root=root,
                    name=f"local/{name}-{digest}")


def make_event(kind: str, ref: str, commit: str, *, before: str | None = None, message: str | None = None,
               inputs: dict[str, str] | None = None, repository: str = "") -> Event:
    name = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    return Event(kind=kind, ref=ref, commit=commit, before=before, message=message, branch=name, tag=tag,
                 inputs=inputs or {}, repository=repository)


def trigger_of(event: Event) -> dict[str, Any]:
    trigger: dict[str, Any] = {"forge": "local", "delivery_id": None, "sender": os.environ.get("USER"),
                               "branch": event.branch, "tag": event.tag}
    if event.inputs:
        trigger["inputs"] = dict(event.inputs)
    return trigger


def required_labels(files: list[sources.SourceFile], event: Event) -> list[str]:
    """Every label the matching jobs ask for, so the local worker can take all of them."""
    plan = sources.plan_run(sources.parse_sources(files), event, None)
    return sorted({label for entry in plan.graph for label in entry["labels"]})


class LogFollower:
    """Print new log lines of every job of a run, each prefixed by its job's name in a colour."""

    def __init__(self, conn: psycopg.AsyncConnection, run_id: int, console: Console) -> None:
        self.conn = conn
        self.run_id = run_id
        self.console = console
        self.positions: dict[int, tuple[int, int]] = {}
        self.colours: dict[int, str] = {}
        self.width = 12

    async def poll(self) -> dict[str, Any]:
        """Print what arrived since the last call; return the run."""
        run = await runs.get_run(self.conn, self.run_id)
        for job in run["jobs"]:
            self.width = max(self.width, min(len(job["name"]), 40))
            if job["attempt"] >= 1:
                await self._print_job(job)
        return run

    async def _print_job(self, job: dict[str, Any]) -> None:
        attempt, seq = self.positions.get(job["id"], (job["attempt"], 0))
        if attempt != job["attempt"]:
            attempt, seq = job["attempt"], 0
        try:
            info = await attempt_info(self.conn, job["id"], attempt)
        except NotFoundError:
            return
        colour = self.colours.setdefault(job["id"], JOB_COLOURS[len(self.colours) % len(JOB_COLOURS)])
        while True:
            lines = await read_lines(self.conn, job_id=job["id"], attempt=attempt, day=info.day, after=seq)
            for line in lines:
                self._print_line(job["name"], colour, line["stream"], line["text"])
                seq = line["seq"]
            if len(lines) < 1000:
                break
        self.positions[job["id"]] = (attempt, seq)

    def _print_line(self, name: str, colour: str, stream: str, text: str) -> None:
        prefix = Text(f"{name[:40]:<{self.width}} | ", style=colour)
        style = {"system": "bold", "stderr": "red"}.get(stream, "")
        # Text objects: log output is never read as rich markup.
        self.console.print(prefix + Text(text, style=style), soft_wrap=True, highlight=False)

    def summary(self, run: dict[str, Any]) -> None:
        self.console.print()
        for job in run["jobs"]:
            status = job["status"]
            line = Text(f"  {job['name']:<{self.width}} ")
            line += Text(status, style=STATUS_COLOURS.get(status, ""))
            if job["reason"] and status != "succeeded":
                line += Text(f"  {job['reason']}", style="dim")
            self.console.print(line, soft_wrap=True, highlight=False)
        colour = STATUS_COLOURS.get(run["status"], "")
        reason = f": {run['reason']}" if run["reason"] else ""
        line = Text(f"run {run['id']} ", style="bold") + Text(run["status"], style=f"bold {colour}")
        self.console.print(line + Text(reason), soft_wrap=True, highlight=False)


async def _ensure_repo(conn: psycopg.AsyncConnection, snapshot: Snapshot) -> int:
    cursor = await conn.execute(QUERIES["repo_get"], {"id": None, "name": snapshot.name})
    row = await cursor.fetchone()
    if row is not None:
        return int(row["id"])
    cursor = await conn.execute(QUERIES["repo_insert"], {
        "name": snapshot.name, "url": snapshot.url, "default_branch": DEFAULT_BRANCH,
        "poll_interval_seconds": None})
    row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def execute(directory: Path, settings: Settings, *, event_kind: str, ref: str | None,
                  inputs: dict[str, str], concurrency: int, console: Console) -> str:
    """Snapshot, plan and run `directory`'s pipeline; stream its logs; return the run's status."""
    exec_dir = settings.data_dir / "exec"
    exec_dir.mkdir(parents=True, exist_ok=True)
    snapshot = await asyncio.to_thread(take_snapshot, directory, exec_dir)
    ref = ref or (f"refs/tags/{snapshot.branch}" if event_kind == "tag" else f"refs/heads/{snapshot.branch}")
    event = make_event(event_kind, ref, snapshot.commit, before=snapshot.before, inputs=inputs,
                       message=f"working tree of {snapshot.root}", repository=snapshot.name)
    files = await asyncio.to_thread(sources.read_local_files, snapshot.root)
    labels = required_labels(files, event)
    console.print(Text(f"snapshot of {snapshot.root} as commit {snapshot.commit[:12]} "
                       f"({event_kind} {ref}); starting the embedded PostgreSQL in {exec_dir}", style="dim"),
                  soft_wrap=True)

    embedded = EmbeddedPostgres(exec_dir)
    conninfo = await asyncio.to_thread(embedded.start)
    try:
        await asyncio.to_thread(migrate, conninfo)
        conn = await connect_async(conninfo, application_name="minijenkin-exec")
        try:
            repo_id = await _ensure_repo(conn, snapshot)
            run_id = await runs.create_run(
                conn, repo_id=repo_id, event=event_kind, ref=ref, commit_sha=snapshot.commit,
                before_sha=snapshot.before, message=event.message, author=os.environ.get("USER"),
                trigger=trigger_of(event))
            worker_settings = settings.model_copy(update={
                "data_dir": exec_dir, "worker_labels": labels, "worker_concurrency": concurrency,
                "worker_poll_seconds": 1.0})
            worker = Worker(worker_settings, conninfo)
            worker.name = f"exec-{uuid.uuid4().hex[:6]}"
            worker_task = asyncio.create_task(worker.run())
            try:
                return await _follow(conn, run_id, console, worker, worker_task)
            finally:
                worker.request_stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker_task, timeout=settings.worker_shutdown_grace_seconds + 10)
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(embedded.stop)


async def _follow(conn: psycopg.AsyncConnection, run_id: int, console: Console, worker: Worker,
                  worker_task: asyncio.Task[None]) -> str:
    follower = LogFollower(conn, run_id, console)
    cancelled = False
    while True:
        run = await follower.poll()
        if run["status"] not in ACTIVE:
            follower.summary(run)
            return str(run["status"])
        if worker.stopping.is_set() and not cancelled:
            # Ctrl-C stops the in-process worker; cancel the run so it ends too.
            cancelled = True
            console.print(Text("interrupted: cancelling the run", style="yellow"))
            await runs.cancel_run(conn, run_id, reason="interrupted by the user of minijenkin exec")
        if worker_task.done() and not cancelled:
            raise ConfigurationError("the local worker stopped before the run ended")
        await asyncio.sleep(POLL_SECONDS)
