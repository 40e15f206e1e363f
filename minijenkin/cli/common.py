"""Helpers shared by CLI commands."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console

from minijenkin.config import Settings, load_settings
from minijenkin.db import connect_async
from minijenkin.errors import ConfigurationError, MiniJenkinError
from minijenkin.runtime import database_url

T = TypeVar("T")

# Shown under the --help of every command that connects to the database.
DATABASE_EPILOG = (
    "Database: MINIJENKIN_DATABASE_URL (or DATABASE_URL); when unset, the embedded server that "
    "`minijenkin up` runs in MINIJENKIN_DATA_DIR (default: ~/.local/share/minijenkin)."
)
# Shown under the --help of the long-running processes.
SETTINGS_EPILOG = (
    DATABASE_EPILOG + " Every other setting is a MINIJENKIN_* environment variable; "
    "`minijenkin settings` lists them with their values, units and defaults."
)

# Width used for tables when stdout is a pipe or a file: rich would otherwise
# assume 80 columns and cut long URLs and view names with an ellipsis.
UNBOUNDED_WIDTH = 10_000


def output_console() -> Console:
    """Return a console for command output on stdout. Its tables keep every
    character when the output is piped or redirected, and fit the terminal otherwise."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=UNBOUNDED_WIDTH)


def load_cli_settings(**overrides: object) -> Settings:
    """Settings from the environment, with the options the user passed (not None) on top."""
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        return load_settings(**explicit)
    except ValidationError as exc:
        problems = "; ".join(_describe_setting_error(error) for error in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from exc


# Settings whose value an error message must not show.
_SECRET_SETTINGS = frozenset({"database_url", "worker_database_url", "secret_key", "admin_token"})


def _describe_setting_error(error: ErrorDetails) -> str:
    """Describe a rejected setting by its environment variable and, unless secret, its value."""
    field = ".".join(str(part) for part in error["loc"])
    if not field:
        # A check across settings, whose message names the variables itself.
        return error["msg"].removeprefix("Value error, ")
    variable = "MINIJENKIN_DATABASE_URL" if field == "database_url" else f"MINIJENKIN_{field.upper()}"
    message = error["msg"].removeprefix("Value error, ")
    if field in _SECRET_SETTINGS:
        return f"{variable}: {message}"
    return f"{variable}={error.get('input')!r}: {message}"


# A quoted value in a message, as repr() writes it.
_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


@contextmanager
def option_names(options: Mapping[str, str]) -> Iterator[None]:
    """Name command-line options instead of the API fields in the errors raised inside.

    `options` maps a field to its option, e.g. "webhook_secret" to "--secret". An
    error whose `field` is one of them gets the first whole-word mention of
    that field replaced, outside quoted values: a message quotes what the
    user gave ("has no branch or tag 'ref'"), which must stay as given. Only
    the first, because a message names the field first and may use the same
    word in prose later ("invalid commit ...: give the full commit id").
    """
    try:
        yield
    except MiniJenkinError as exc:
        if exc.field not in options:
            raise
        mention = re.compile(rf"(?<![\w-]){re.escape(exc.field)}(?![\w-])")
        parts = _QUOTED.split(exc.message)
        # Even indexes are the text between quoted values.
        for index in range(0, len(parts), 2):
            replaced, count = mention.subn(options[exc.field], parts[index], count=1)
            if count:
                parts[index] = replaced
                break
        exc.message = "".join(parts)
        exc.args = (exc.message,)
        raise


def run_with_connection(action: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Open a connection to the configured database, run `action`, close it."""
    settings = load_cli_settings()
    conninfo = database_url(settings)

    async def runner() -> T:
        conn = await connect_async(conninfo, application_name="minijenkin-cli")
        try:
            return await action(conn)
        finally:
            await conn.close()

    return asyncio.run(runner())
