"""Database access: connections, pools and the mapping of driver errors.

This package is the only place that configures psycopg. Code elsewhere gets
connections from here and runs named queries from `minijenkin.sql.QUERIES`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from minijenkin.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
)

CONNECT_TIMEOUT_SECONDS = 10

# Errors after which the same statement can succeed later, so loops retry
# them: the server is unreachable, restarting or short of resources, or it
# is read-only for a while (a failover that has not promoted the new primary
# yet, or default_transaction_read_only set for maintenance). PostgreSQL
# reports the last as SQLSTATE 25006, which psycopg raises as an
# InternalError rather than an OperationalError.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    pg_errors.ReadOnlySqlTransaction,
    PoolTimeout,
    DatabaseUnavailableError,
)


def with_application_name(conninfo: str, application_name: str) -> str:
    """Return `conninfo` with `application_name` set, so pg_stat_activity names the component."""
    params = conninfo_to_dict(conninfo)
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    params["application_name"] = application_name
    return make_conninfo("", **params)


def connect(conninfo: str, *, application_name: str, autocommit: bool = True) -> psycopg.Connection:
    """Open a synchronous connection with dict rows."""
    try:
        return psycopg.connect(
            with_application_name(conninfo, application_name),
            autocommit=autocommit,
            row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc


async def connect_async(
    conninfo: str, *, application_name: str, autocommit: bool = True
) -> psycopg.AsyncConnection:
    """Open an asynchronous connection with dict rows."""
    try:
        return await psycopg.AsyncConnection.connect(
            with_application_name(conninfo, application_name),
            autocommit=autocommit,
            row_factory=dict_row,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to the database: {exc}") from exc


def create_pool(
    conninfo: str, *, application_name: str, min_size: int = 1, max_size: int = 10,
    check_on_checkout: bool = True,
) -> AsyncConnectionPool:
    """Create (but do not open) an async pool.

    With `check_on_checkout`, every checkout first proves the connection is
    alive, which costs one round trip and spares callers a failed query after
    a database restart. Callers that retry failed queries anyway (the worker)
    turn it off; a broken connection is discarded when it is returned.
    """
    return AsyncConnectionPool(
        with_application_name(conninfo, application_name),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        check=AsyncConnectionPool.check_connection if check_on_checkout else None,
        open=False,
        name=application_name,
        reconnect_timeout=300,
    )


@contextlib.asynccontextmanager
async def pooled(pool: AsyncConnectionPool, *,
                 wait_seconds: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
    """Check out a connection for one block; an exhausted pool raises DatabaseUnavailableError (503).

    `wait_seconds` bounds the wait for a free connection (default: the pool's timeout).
    """
    wait = pool.timeout if wait_seconds is None else wait_seconds
    try:
        conn = await pool.getconn(timeout=wait)
    except PoolTimeout as exc:
        raise DatabaseUnavailableError(f"no database connection became free within {wait:g} s") from exc
    try:
        yield conn
    finally:
        # putconn rolls back or discards a connection left in a bad state.
        await pool.putconn(conn)


def _translate(exc: psycopg.Error) -> Exception | None:
    message = exc.diag.message_primary or str(exc)
    if isinstance(exc, pg_errors.NoDataFound):
        return NotFoundError(message)
    if isinstance(exc, pg_errors.ObjectNotInPrerequisiteState | pg_errors.UniqueViolation):
        return ConflictError(message, constraint=exc.diag.constraint_name)
    if isinstance(exc, pg_errors.InvalidParameterValue | pg_errors.CheckViolation
                  | pg_errors.StringDataRightTruncation | pg_errors.NumericValueOutOfRange
                  | pg_errors.InvalidTextRepresentation | pg_errors.UntranslatableCharacter
                  | pg_errors.CharacterNotInRepertoire):
        return InvalidInputError(message, constraint=exc.diag.constraint_name)
    if isinstance(exc, psycopg.OperationalError | pg_errors.ReadOnlySqlTransaction):
        return DatabaseUnavailableError(f"the database is unavailable: {message}")
    return None


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise known driver errors as Mini-Jenkin errors (chained with `from`).

    Works around awaited queries too: the block may contain `await`.
    """
    try:
        yield
    except psycopg.Error as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from exc

