"""`minijenkin up`: database, migrations, API and local workers in one process tree.

The API (with the maintenance loops) runs in this process; each worker is a
child process (`python -m minijenkin worker`) restarted if it dies. Ctrl-C
stops the API, then the workers (SIGTERM, so they finish or hand back their
jobs), then the embedded database if this process started it.

Workers run in process groups of their own, so a terminal's Ctrl-C reaches
only this process, and the workers get a single stop signal, from it. A
second signal would make them hand their jobs back at once. A worker whose
`up` dies (kill -9) gets SIGTERM from the kernel and stops the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import uvicorn

from minijenkin.api.app import create_app
from minijenkin.auth import hash_token, new_token_value
from minijenkin.config import Settings
from minijenkin.db import connect
from minijenkin.db.embedded import EmbeddedPostgres, create_data_dir
from minijenkin.db.migrate import migrate
from minijenkin.sql import QUERIES
from minijenkin.worker.isolation import SUPERVISOR_PID_VARIABLE

logger = logging.getLogger(__name__)

WORKER_RESTART_DELAY_SECONDS = 2.0
WORKER_STOP_EXTRA_SECONDS = 10.0
LOCAL_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
LOCAL_TOKEN_NAME = "local admin (minijenkin up)"  # noqa: S105 (a label)


def ensure_local_admin_token(conninfo: str, data_dir: Path) -> Path:
    """Keep an admin token for this machine's user in `<data_dir>/admin-token` (mode 0600).

    The file is reused while its token is valid, so repeated `up` runs do
    not pile up tokens.
    """
    path = data_dir / LOCAL_TOKEN_FILE
    with connect(conninfo, application_name="minijenkin-up") as conn:
        if path.exists():
            value = path.read_text().strip()
            found = conn.execute(QUERIES["token_find_by_hash"],
                                 {"token_hash": hash_token(value)}).fetchone()
            if found is not None:
                return path
        value = new_token_value()
        conn.execute(QUERIES["token_insert"], {
            "name": LOCAL_TOKEN_NAME, "token_hash": hash_token(value), "scope": "admin",
            "expires_at": None})
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    temporary.replace(path)
    return path


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling.

    uvicorn re-raises SIGINT or SIGTERM once it has shut down, which would
    kill this process before it stops the workers and the embedded
    database. `serve()` handles the signals instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerProcesses:
    """Local worker child processes, restarted when they exit unexpectedly."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.count = count
        self.env = env
        self.processes: list[asyncio.subprocess.Process] = []
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for index in range(self.count):
            self._tasks.append(asyncio.create_task(self._keep_running(index)))

    async def _keep_running(self, index: int) -> None:
        while not self.stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "minijenkin", "worker",
                env={**self.env, SUPERVISOR_PID_VARIABLE: str(os.getpid())}, process_group=0)
            self.processes.append(process)
            code = await process.wait()
            self.processes.remove(process)
            if self.stopping:
                return
            logger.warning("worker process exited; restarting", extra={
                "action": "worker_restart", "index": index, "exit_code": code})
            await asyncio.sleep(WORKER_RESTART_DELAY_SECONDS)

    def signal_all(self) -> None:
        """Send SIGTERM to every worker: the first lets jobs finish, a second hands them back."""
        # Workers that exit now are not restarted.
        self.stopping = True
        for process in list(self.processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    async def stop(self, grace_seconds: float) -> None:
        self.stopping = True
        self.signal_all()
        deadline = grace_seconds + WORKER_STOP_EXTRA_SECONDS
        for process in list(self.processes):
            try:
                await asyncio.wait_for(process.wait(), timeout=deadline)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _install_stop_handlers(server: uvicorn.Server, workers: WorkerProcesses) -> None:
    """First SIGINT or SIGTERM: shut down gracefully.

    A second SIGINT: do not wait for requests. A second signal of either
    kind also reaches the workers, which then hand their jobs back at once,
    as a second signal to `minijenkin worker` does.
    """
    loop = asyncio.get_running_loop()

    def request_stop(sig: signal.Signals) -> None:
        if server.should_exit:
            if sig == signal.SIGINT:
                server.force_exit = True
            workers.signal_all()
        logger.info("stop signal received; shutting down", extra={
            "action": "up_stop", "signal": sig.name})
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, sig)


def _port_in_use(host: str, port: int) -> bool:
    """Check whether binding `host:port` fails because another socket has that address."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        return False
    with socket.socket(family, kind, proto) as probe:
        # asyncio.create_server, which uvicorn calls, sets SO_REUSEADDR on Unix too, so a port
        # with only TIME_WAIT connections counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


async def serve(
    settings: Settings,
    *,
    workers: int,
    after_start: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Run everything until interrupted; `after_start(api_url)` runs once the API listens."""
    embedded: EmbeddedPostgres | None = None
    # Also with an external database: the admin token file goes there, and a
    # missing directory found only after the token was stored would leave
    # that token behind unused.
    create_data_dir(settings.data_dir)
    if settings.database_url:
        conninfo = settings.database_url
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        conninfo = await asyncio.to_thread(embedded.start)
        logger.info("embedded PostgreSQL ready", extra={
            "action": "embedded_ready", "data_dir": str(settings.data_dir)})
    try:
        await asyncio.to_thread(migrate, conninfo)
        token_path = await asyncio.to_thread(ensure_local_admin_token, conninfo, settings.data_dir)
        logger.info("admin token for this machine stored", extra={
            "action": "local_token", "path": str(token_path)})
        env = {**os.environ, "MINIJENKIN_DATABASE_URL": conninfo,
               "MINIJENKIN_DATA_DIR": str(settings.data_dir)}
        env.pop("DATABASE_URL", None)
        worker_processes = WorkerProcesses(workers, env)
        await worker_processes.start()

        app = create_app(settings, conninfo)
        server = _Server(uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False))
        _install_stop_handlers(server, worker_processes)
        api_url = f"http://{settings.host}:{settings.port}"

        async def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                await asyncio.sleep(0.05)
            logger.info("Mini-Jenkin is up", extra={"action": "up", "url": api_url,
                                                    "workers": workers})
            if after_start is not None:
                try:
                    await after_start(api_url)
                except Exception:
                    logger.exception("start-up task failed", extra={"action": "after_start"})

        announcer = asyncio.create_task(announce())
        try:
            await server.serve()
        except SystemExit:
            # uvicorn (0.54) exits with status 3 when it cannot bind, and logs only the OSError.
            if not server.started and _port_in_use(settings.host, settings.port):
                logger.error(
                    f"another program uses port {settings.port} on {settings.host}, so the API "
                    "cannot listen there. Stop that program, or choose another port with --port "
                    "or MINIJENKIN_PORT", extra={"action": "api_port_in_use", "port": settings.port})
            raise
        finally:
            announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcer
            await worker_processes.stop(settings.worker_shutdown_grace_seconds)
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
