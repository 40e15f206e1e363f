"""PostgreSQL servers for the tests: the machine's server and an embedded PostgreSQL 18.

Each test session builds one template database per server (migrations
applied once) and every test that needs a database gets a fresh clone of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from minijenkin.db.embedded import EmbeddedPostgres
from minijenkin.db.migrate import migrate

SYSTEM_SERVER_URL = os.environ.get(
    "MINIJENKIN_TEST_SYSTEM_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def with_database(conninfo: str, database: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = database
    return make_conninfo("", **params)


@dataclass
class PgServer:
    name: str
    admin_url: str
    template: str
    major_version: int

    def create_database(self) -> str:
        database = f"mj_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(database), sql.Identifier(self.template)))
        return with_database(self.admin_url, database)

    def drop_database(self, url: str) -> None:
        database = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database)))


def _build_template(admin_url: str, name: str) -> tuple[str, int]:
    template = f"mj_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        version = conn.info.server_version // 10000
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    migrate(with_database(admin_url, template))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(template)))
    return template, version


def _drop_template(admin_url: str, template: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(template)))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(template)))


def system_server() -> Iterator[PgServer]:
    template, version = _build_template(SYSTEM_SERVER_URL, "pg15")
    try:
        yield PgServer("system", SYSTEM_SERVER_URL, template, version)
    finally:
        _drop_template(SYSTEM_SERVER_URL, template)


@contextlib.contextmanager
def server_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory for an embedded server, outside pytest's temporary root.

    pytest sets /tmp/pytest-of-<user> to mode 0700 whenever a session starts,
    on this machine or in a parallel run. The unprivileged user that runs an
    embedded server under root then loses access to its own data directory
    and the server stops, so the cluster lives in its own directory under
    the system temporary directory instead.
    """
    path = Path(tempfile.mkdtemp(prefix=f"mj-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def embedded_server(data_dir: Path) -> Iterator[PgServer]:
    server = EmbeddedPostgres(data_dir)
    server.start()
    admin_url = server.conninfo("postgres")
    try:
        template, version = _build_template(admin_url, "pg18")
        yield PgServer("embedded", admin_url, template, version)
    finally:
        server.stop()
