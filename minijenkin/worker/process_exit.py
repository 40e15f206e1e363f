"""Waiting for a step's shell to exit while other processes keep its pipes open.

`asyncio.subprocess.Process.wait()` returns only once the process has exited
*and* every pipe to it has closed: CPython 3.11's base_subprocess.py resolves
the waiters in `_call_connection_lost`. A step such as
`python -m http.server &` leaves a background process that inherited the
step's stdout, so `wait()` would block until that process ends, and a cancel
or timeout could not end the step. `wait_exited` watches the process itself
instead.
"""

from __future__ import annotations

import asyncio
import os

# How often the return code is checked where no pidfd is available (kernels
# before Linux 5.3, other systems), and while the child watcher reaps a
# process that has exited.
POLL_SECONDS = 0.05
REAP_POLL_SECONDS = 0.005
REUSE_CHECK_SECONDS = 1.0


async def wait_exited(process: asyncio.subprocess.Process) -> int:
    """Wait until `process` has exited and return its return code, even while its pipes are open."""
    if process.returncode is not None:
        return process.returncode
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        # No pidfd, or the process is already reaped: its return code is
        # about to be set. asyncio has no event for the return code alone.
        while process.returncode is None:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        return process.returncode

    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    try:
        # A pidfd becomes readable when its process exits.
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            # The return code is checked too: if the process was reaped
            # before pidfd_open and its id reused, the pidfd watches another
            # process.
            while process.returncode is None and not exited.done():
                await asyncio.wait({exited}, timeout=REUSE_CHECK_SECONDS)
        finally:
            loop.remove_reader(pidfd)
    finally:
        os.close(pidfd)
    # asyncio's child watcher reaps the process and sets the return code
    # right after the exit.
    while process.returncode is None:  # noqa: ASYNC110
        await asyncio.sleep(REAP_POLL_SECONDS)
    return process.returncode
