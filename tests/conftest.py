"""Fixtures shared by all tests: PostgreSQL servers, databases, API and workers.

Database tests run once against the machine's PostgreSQL server and once
against an embedded PostgreSQL 18 (`MINIJENKIN_TEST_SERVERS=system,embedded`,
the default). Every test gets its own database cloned from a migrated
template.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from minijenkin.config import Settings, load_settings
from tests.support.api import ApiServer
from tests.support.gitrepo import GitRepo
from tests.support.postgres import PgServer, embedded_server, server_directory, system_server
from tests.support.workers import FAST_WORKER_ENV, WorkerProcess


def pytest_configure(config: pytest.Config) -> None:
    """Give each session a private temporary root.

    pytest keeps only the newest three /tmp/pytest-of-<user>/pytest-N folders
    and deletes older ones when a session starts, so two sessions running at
    once on one machine can delete each other's repositories and data
    directories. An explicit --basetemp still wins.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="minijenkin-tests-")
        config._minijenkin_private_basetemp = True  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the private temporary root after a green session; keep it to debug a red one."""
    config = session.config
    if getattr(config, "_minijenkin_private_basetemp", False) and exitstatus == 0:
        shutil.rmtree(config.option.basetemp, ignore_errors=True)


SERVERS = [name.strip() for name in
           os.environ.get("MINIJENKIN_TEST_SERVERS", "system,embedded").split(",") if name.strip()]


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> None:
    """Tests configure everything explicitly; leftovers from the shell must not leak in."""
    for key in list(os.environ):
        if key.startswith("MINIJENKIN_") and key != "MINIJENKIN_TEST_SERVERS" and \
                not key.startswith("MINIJENKIN_TEST_"):
            del os.environ[key]
    os.environ.pop("DATABASE_URL", None)


@pytest.fixture(scope="session", params=SERVERS)
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    if request.param == "system":
        yield from system_server()
    elif request.param == "embedded":
        with server_directory("embedded-pg") as directory:
            yield from embedded_server(directory)
    else:
        raise ValueError(f"unknown test server {request.param!r}: use system or embedded")


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A synchronous autocommit connection to the test database, for setup and assertions."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return load_settings(
        data_dir=data_dir,
        worker_heartbeat_seconds=float(FAST_WORKER_ENV["MINIJENKIN_WORKER_HEARTBEAT_SECONDS"]),
        worker_lease_seconds=float(FAST_WORKER_ENV["MINIJENKIN_WORKER_LEASE_SECONDS"]),
        maintenance_interval_seconds=0.5,
        retry_backoff_seconds=0.2,
        retry_backoff_max_seconds=1.0,
    )


@pytest.fixture
def api_server(settings: Settings, database_url: str) -> Iterator[ApiServer]:
    server = ApiServer(settings, database_url).start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(database_url: str, data_dir: Path,
                 tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; every one still running is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(database_url, data_dir, log_path, **env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=15)


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")
