"""Keeping a job's processes and files apart from the worker and from other jobs.

Two mechanisms, both used by the executor:

- `RunAs`: with MINIJENKIN_WORKER_RUN_AS set and the worker running as root,
  steps run as that unprivileged user. The job's workspace, home and temp
  folders belong to the user. The folder of step scripts and command files
  stays the worker's, so a step cannot swap a file the worker later writes
  or reads for a symbolic link.
- Process tags: every step gets a random MINIJENKIN_PROCESS_TAG in its
  environment. At the end of the job the worker kills every process whose
  environment carries the tag, which catches daemons that left the step's
  process group with setsid. NOTE: a process that rewrites its own
  environment, or runs a set-user-ID program, escapes this sweep; SECURITY.md
  lists what is and is not isolated.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import signal
from dataclasses import dataclass
from pathlib import Path

from minijenkin.errors import ConfigurationError

logger = logging.getLogger(__name__)

PROCESS_TAG_VARIABLE = "MINIJENKIN_PROCESS_TAG"
# Set by `minijenkin up` for the workers it starts: its process id.
SUPERVISOR_PID_VARIABLE = "MINIJENKIN_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1
# A daemon may fork again while the sweep runs, so the sweep repeats until a
# pass finds nothing, at most this many times.
SWEEP_PASSES_MAX = 10
_PROC = Path("/proc")


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user steps run as."""

    name: str
    uid: int
    gid: int


def resolve_run_as(value: str | None) -> RunAs | None:
    """Look up MINIJENKIN_WORKER_RUN_AS (a user name or numeric uid).

    Raises ConfigurationError when the user does not exist, is root, or the
    worker is not root (only root can switch to another user).
    """
    if not value:
        return None
    try:
        entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        raise ConfigurationError(
            f"MINIJENKIN_WORKER_RUN_AS: no user {value!r} on this host; create it or "
            "unset the variable") from None
    if entry.pw_uid == 0:
        raise ConfigurationError("MINIJENKIN_WORKER_RUN_AS must name an unprivileged user, not root")
    if os.geteuid() != 0:
        raise ConfigurationError(
            f"MINIJENKIN_WORKER_RUN_AS={value} needs a worker running as root; "
            "a worker that is not root runs steps as its own user, so unset the variable")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def give_tree(path: Path, run_as: RunAs) -> None:
    """Make `path` and everything below it the user's, without following symbolic links.

    Files with more than one hard link are left alone: their other names lie
    outside the tree (a git mirror's objects), and must stay the worker's.
    """
    os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
    for root, directories, files in os.walk(path):
        for name in directories:
            os.chown(os.path.join(root, name), run_as.uid, run_as.gid, follow_symlinks=False)
        for name in files:
            target = os.path.join(root, name)
            if os.lstat(target).st_nlink == 1:
                os.chown(target, run_as.uid, run_as.gid, follow_symlinks=False)


def kill_tagged_processes(tag: str) -> int:
    """Send SIGKILL to every process whose environment contains the job's tag; return how many.

    Reading another user's /proc/PID/environ needs root or the same user.
    Both cases occur here: steps run as the worker's user, or the worker is
    root when RunAs is set.
    """
    needle = f"{PROCESS_TAG_VARIABLE}={tag}".encode()
    own = os.getpid()
    killed = 0
    for _ in range(SWEEP_PASSES_MAX):
        found = 0
        for entry in _PROC.iterdir():
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                environment = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone, or not ours to read
            if needle in environment.split(b"\0"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
                    found += 1
        killed += found
        if not found:
            break
    return killed


def supervisor_gone(sig: signal.Signals) -> bool:
    """Have the kernel send `sig` when the `minijenkin up` that started this process dies.

    Returns True when it has died already, before the request took effect.
    Processes not started by `minijenkin up` are left alone (False).
    """
    value = os.environ.get(SUPERVISOR_PID_VARIABLE, "")
    if not value.isdigit():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        logger.warning("cannot ask for a signal when minijenkin up dies; this worker outlives it",
                       extra={"action": "worker_supervisor_unwatched"})
    return os.getppid() != int(value)
