"""Run a step's shell, and kill every process of the step if the worker dies.

Usage: python -I -S step_guard.py WORKER_PID UID GID ENV_FILE -- COMMAND [ARG ...]

The worker starts this script as the leader of the step's new process
group, instead of starting the shell directly. The script has the kernel
send it SIGTERM when the worker dies (PR_SET_PDEATHSIG). It runs COMMAND as
its child in the same process group (as user UID and group GID unless they
are -1), waits for it and exits with its status, or dies of the same signal.

The guard runs as the worker's user, which is root when steps run as
another user. It therefore starts with a fixed environment of the worker's
choosing, never the step's: a step could otherwise set LD_PRELOAD for the
next step through $GITHUB_ENV, and the dynamic loader would load that
library into a root process. The step's environment comes in ENV_FILE
(NUL-separated NAME=value entries), which the guard reads, deletes, and
hands to COMMAND only.

When the worker dies (kill -9, the OOM killer), a step must not run on
beside the job's next attempt, or beside the next deploy to the same
environment once the worker's deploy lock is gone. The parent-death signal
of a shell alone does not reach the programs the shell runs, because
children do not inherit it. This guard therefore sends SIGKILL to every
process that carries the job's MINIJENKIN_PROCESS_TAG (which catches those
that left the group with setsid) and then to its whole process group.

SIGTERM from the worker itself (cancel, timeout) reaches the whole group,
this script included: it only waits for the shell then. The script uses
a few standard modules only (no subprocess or pathlib, which take longer to
import than the rest) and runs with -I -S, so it starts in about 10 ms and
never imports the worker's packages.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1
TAG_VARIABLE = "MINIJENKIN_PROCESS_TAG"
SWEEP_PASSES_MAX = 10
# Signals a step may send to its own process group (kill 0, a terminal's
# hangup). The guard must survive them, or the worker would take its end
# for the end of a shell that still runs.
GUARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2)


def _kill_tagged(tag: bytes) -> None:
    """Send SIGKILL to every other process whose environment contains `tag`."""
    own = os.getpid()
    for _ in range(SWEEP_PASSES_MAX):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == own:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as environ:
                    environment = environ.read()
            except OSError:
                continue
            if tag in environment.split(b"\0"):
                try:
                    os.kill(int(name), signal.SIGKILL)
                    found += 1
                except (ProcessLookupError, PermissionError):
                    pass
        if not found:
            return


def _kill_step(tag: str | None) -> None:
    if tag:
        _kill_tagged(f"{TAG_VARIABLE}={tag}".encode())
    # Last, because the group includes this process.
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _read_environment(path: str) -> dict[str, str]:
    """Read and delete the worker's file of the step's environment."""
    with open(path, "rb") as handle:
        data = handle.read()
    os.unlink(path)
    environment: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, separator, value = entry.partition(b"=")
        if separator:
            environment[name.decode("utf-8", "surrogateescape")] = value.decode(
                "utf-8", "surrogateescape")
    return environment


def _find_program(name: str, path: str) -> str:
    """Return the path of `name` as execvp would find it on `path`, or `name` itself."""
    if "/" in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name


def _exec_shell(command: list[str], uid: int, gid: int, environment: dict[str, str]) -> None:
    """In the forked child: take the step's user and signal dispositions, then execute."""
    try:
        for guarded in GUARDED_SIGNALS:
            signal.signal(guarded, signal.SIG_DFL)
        # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays
        # ignored across exec; the shell must start with the defaults.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        if uid >= 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.execve(command[0], command, environment)  # noqa: S606 - the worker gives the arguments
    except OSError as exc:
        os.write(2, f"step_guard: cannot start {command[0]}: {exc}\n".encode())
    os._exit(127)


def main(argv: list[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: step_guard.py WORKER_PID UID GID ENV_FILE -- COMMAND [ARG ...]",
              file=sys.stderr)
        return 2
    worker_pid, uid, gid = int(argv[0]), int(argv[1]), int(argv[2])
    environment = _read_environment(argv[3])
    tag = environment.get(TAG_VARIABLE)
    command = argv[5:]

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if os.getppid() != worker_pid:
            _kill_step(tag)

    for guarded in GUARDED_SIGNALS:
        signal.signal(guarded, on_signal)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the step then outlives a killed worker
    if os.getppid() != worker_pid:
        return 1  # the worker died before the signal was asked for

    # Found before the fork: after it the child may run as a user who cannot
    # read Python's standard library, so it must not import anything.
    command = [_find_program(command[0], environment.get("PATH", os.defpath)), *command[1:]]
    shell = os.fork()
    if shell == 0:
        _exec_shell(command, uid, gid, environment)
    _pid, status = os.waitpid(shell, 0)
    if not os.WIFSIGNALED(status):
        return os.waitstatus_to_exitcode(status)
    # Die of the shell's signal, so that the worker reads the same status.
    number = os.WTERMSIG(status)
    try:
        signal.signal(number, signal.SIG_DFL)
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP keep their default action anyway
    os.kill(os.getpid(), number)
    return 128 + number


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
