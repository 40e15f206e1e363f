"""Git access for workers: a shared mirror per repository, and job checkouts.

Each repository is mirrored once per data directory (`git/<repo id>.git`) and
fetched only when a requested commit is missing. Workspaces are local clones
of the mirror (hard-linked objects, so they are cheap) checked out at the
exact commit. An exclusive file lock per mirror serialises fetches between
jobs and worker processes on the same host.

Git runs with a minimal environment: no terminal prompts, no system or user
configuration, and only the transports a repository URL may use.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
from pathlib import Path

from minijenkin.pipeline import PIPELINE_FILE, sources
from minijenkin.worker.process_exit import wait_exited

GIT_TIMEOUT_SECONDS = 600
# Seconds git gets after SIGTERM to remove a partial clone and its lock
# files before SIGKILL.
GIT_STOP_GRACE_SECONDS = 5.0
LOCK_POLL_SECONDS = 0.05
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class GitError(Exception):
    """A git command failed; the message contains git's own error output."""


def git_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        # ext:: would run a command; only transports that fetch data are allowed.
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    }


async def run_git(*args: str, cwd: Path | None = None, home: Path,
                  limit_seconds: float = GIT_TIMEOUT_SECONDS) -> bytes:
    """Run git with `args`; return stdout or raise GitError with stderr."""
    process = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env=git_environment(home), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=limit_seconds)
    except TimeoutError:
        await _stop(process)
        raise GitError(f"git {args[0]} timed out after {limit_seconds:g} s") from None
    except asyncio.CancelledError:
        # The job was cancelled or timed out. git must end before the caller
        # releases the mirror's lock, so that no other git runs beside it.
        await _stop(process)
        raise
    if process.returncode != 0:
        message = stderr.decode("utf-8", errors="replace").strip() or f"exit code {process.returncode}"
        raise GitError(f"git {args[0]} failed: {message}")
    return stdout


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End git and the helpers it started (git-remote-https, ssh), which share its process group."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wait_exited(process), timeout=GIT_STOP_GRACE_SECONDS)
    _signal_group(process.pid, signal.SIGKILL)
    await wait_exited(process)


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


class Mirror:
    """Bare mirror of one repository under the worker's data directory."""

    def __init__(self, data_dir: Path, repo_id: int, url: str) -> None:
        self.root = data_dir / "git"
        self.path = self.root / f"{repo_id}.git"
        self.lock_path = self.root / f"{repo_id}.lock"
        self.home = self.root / "home"
        self.url = url

    async def _lock(self) -> int:
        """Take the mirror's exclusive lock, polling so that cancellation cannot leak it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return descriptor
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_SECONDS)
        except BaseException:
            os.close(descriptor)
            raise

    async def ensure_commit(self, commit: str) -> None:
        """Clone or fetch until `commit` is present; raise GitError when it cannot be found."""
        if not SHA_PATTERN.match(commit):
            raise GitError(f"invalid commit id {commit!r}")
        descriptor = await self._lock()
        try:
            if not (self.path / "HEAD").exists():
                await run_git("clone", "--mirror", "--quiet", "--", self.url, str(self.path),
                              home=self.home)
            elif not await self.has_commit(commit):
                await run_git("remote", "set-url", "origin", "--", self.url, cwd=self.path,
                              home=self.home)
                await run_git("fetch", "--quiet", "--prune", "origin", cwd=self.path, home=self.home)
            if not await self.has_commit(commit):
                # Commits not on any advertised ref (e.g. a force-pushed-over
                # head): servers that allow it serve them by id.
                try:
                    await run_git("fetch", "--quiet", "origin", commit, cwd=self.path, home=self.home)
                except GitError:
                    pass
            if not await self.has_commit(commit):
                raise GitError(f"commit {commit} was not found in {self.url}")
        finally:
            os.close(descriptor)

    async def has_commit(self, commit: str) -> bool:
        try:
            await run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=self.path, home=self.home)
        except GitError:
            return False
        return True

    async def read_file(self, commit: str, path: str) -> bytes | None:
        """Read `path` at `commit`; return None when the file does not exist there."""
        try:
            kind = await run_git("cat-file", "-t", f"{commit}:{path}", cwd=self.path, home=self.home)
        except GitError:
            return None
        if kind.strip() != b"blob":
            return None
        return await run_git("cat-file", "blob", f"{commit}:{path}", cwd=self.path, home=self.home)

    async def list_files(self, commit: str, directory: str) -> list[str]:
        """Names of the files directly inside `directory` at `commit`."""
        try:
            output = await run_git("ls-tree", "--name-only", f"{commit}:{directory}",
                                   cwd=self.path, home=self.home)
        except GitError:
            return []
        return [name for name in output.decode("utf-8", errors="replace").splitlines() if name]

    async def changed_files(self, before: str | None, commit: str, *,
                            merge_base: bool = False,
                            listed: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
        """Paths changed between `before` and `commit`; None when git cannot tell.

        The diff from `before` comes first. A forge's list of pushed commits
        (`listed`) counts only when `before` is not in the mirror, because it
        names the commits new to the forge rather than the diff: after a
        forced push it omits files that differ from `before`. Without either,
        the files the commit itself changed. With `merge_base`, changes since
        the two commits diverged, as a pull request shows them.
        """
        try:
            if before and SHA_PATTERN.match(before) and await self.has_commit(before):
                span = f"{before}...{commit}" if merge_base else f"{before}..{commit}"
                output = await run_git("diff", "--name-only", "-z", "--no-renames", span, "--",
                                       cwd=self.path, home=self.home)
            elif listed is not None:
                return listed
            else:
                output = await run_git("diff-tree", "--no-commit-id", "--name-only", "-r", "-z", "--root",
                                       "--no-renames", commit, "--", cwd=self.path, home=self.home)
        except GitError:
            return None
        return tuple(name for name in output.decode("utf-8", errors="replace").split("\0") if name)

    async def checkout(self, commit: str, destination: Path, *, hardlinks: bool = True) -> None:
        """Create a work tree of `commit` at `destination` (which must not exist).

        A local clone hard-links the mirror's object files. Pass
        `hardlinks=False` when the work tree will belong to another user, who
        could otherwise change the mirror's objects through those links.
        """
        links = () if hardlinks else ("--no-hardlinks",)
        await run_git("clone", "--quiet", "--no-checkout", *links, "--", str(self.path),
                      str(destination), home=self.home)
        await run_git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit,
                      cwd=destination, home=self.home)
        await run_git("remote", "set-url", "origin", "--", self.url, cwd=destination, home=self.home)


async def pipeline_files(mirror: Mirror, commit: str) -> list[sources.SourceFile]:
    """`.minijenkin.yml` at `commit`, or else the GitHub Actions workflow files."""
    content = await mirror.read_file(commit, PIPELINE_FILE)
    if content is not None:
        return [sources.SourceFile(PIPELINE_FILE, content)]
    files = []
    names = await mirror.list_files(commit, sources.WORKFLOWS_DIR)
    for path in sources.workflow_paths(names):
        data = await mirror.read_file(commit, path)
        if data is not None:
            files.append(sources.SourceFile(path, data))
    return files
