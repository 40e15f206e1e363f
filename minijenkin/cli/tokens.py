"""`minijenkin token`: create, list and revoke API tokens."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from minijenkin import auth
from minijenkin.cli.common import DATABASE_EPILOG, output_console, run_with_connection


class ScopeChoice(enum.StrEnum):
    """The values of --scope, so that an unknown one is a usage error (exit status 2)."""

    READ = "read"
    TRIGGER = "trigger"
    ADMIN = "admin"


app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)


@app.command("create", epilog=DATABASE_EPILOG)
def create(
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. 'deploy bot'.")],
    scope: Annotated[ScopeChoice, typer.Option(
        "--scope", help="read (view), trigger (also start, cancel, re-run) or admin (everything).")],
    expires_days: Annotated[int | None, typer.Option(
        "--expires-days", min=1, help="Days until the token stops working; default: never.")] = None,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    auth.validate_scope(scope.value)
    expires_at = None
    if expires_days is not None:
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days)
    value, row = run_with_connection(
        lambda conn: auth.create_token(conn, name=name, scope=scope.value, expires_at=expires_at))
    Console(stderr=True).print(
        f"created token {row['id']} ({row['name']}, scope {row['scope']}); "
        "it is shown only once:")
    print(value)


@app.command("list", epilog=DATABASE_EPILOG)
def list_tokens() -> None:
    """List tokens (never their values)."""
    rows = run_with_connection(auth.list_tokens)
    table = Table("id", "name", "scope", "created", "last used", "expires", "revoked")
    for row in rows:
        table.add_row(*(str(row[key]) if row[key] is not None else "-" for key in (
            "id", "name", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")))
    output_console().print(table)


@app.command("revoke", epilog=DATABASE_EPILOG)
def revoke(token_id: Annotated[int, typer.Argument(help="Id shown by `minijenkin token list`.")]) -> None:
    """Revoke a token; requests using it fail from now on."""
    run_with_connection(lambda conn: auth.revoke_token(conn, token_id))
    print(f"revoked token {token_id}")
