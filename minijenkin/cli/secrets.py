"""`minijenkin secret`: store, list and delete secrets; rotate the encryption key."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import psycopg
import typer
from rich.table import Table

from minijenkin import repos, secrets
from minijenkin.cli.common import DATABASE_EPILOG, load_cli_settings, output_console, run_with_connection
from minijenkin.crypto import generate_key, load_keyring
from minijenkin.errors import InvalidInputError
from minijenkin.text import quantity

app = typer.Typer(help="Store, list and delete secrets; rotate the encryption key.",
                  no_args_is_help=True)

RepoArgument = Annotated[str, typer.Argument(help="Repository name, e.g. acme/web.")]
EnvironmentOption = Annotated[str | None, typer.Option(
    "--env", help="Environment the secret belongs to; default: the whole repository.")]


@app.command("set", epilog=DATABASE_EPILOG)
def set_secret(
    repo: RepoArgument,
    name: Annotated[str, typer.Argument(help="Secret name: letters, digits and '_'.")],
    environment: EnvironmentOption = None,
) -> None:
    """Store a secret read from standard input (one trailing newline is removed).

    The value is never taken from the command line, where process listings
    and shell history would show it.
    """
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise InvalidInputError("no secret value on standard input: pipe it in, e.g. "
                                "`printf %s \"$TOKEN\" | minijenkin secret set acme/web TOKEN`",
                                field="value")
    settings = load_cli_settings()
    keyring = load_keyring(settings.secret_key, settings.data_dir)

    async def store(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        return await secrets.set_secret(conn, keyring, repo_id=row["id"], name=name, value=value,
                                        environment=environment)

    row = run_with_connection(store)
    where = f" (environment {environment})" if environment else ""
    print(f"{'created' if row['created'] else 'updated'} secret {name} of {repo}{where}")


@app.command("list", epilog=DATABASE_EPILOG)
def list_secrets(repo: RepoArgument) -> None:
    """List a repository's secret names and environments (never values)."""

    async def fetch(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        return await secrets.list_secrets(conn, row["id"])

    table = Table("name", "environment", "updated")
    for row in run_with_connection(fetch):
        table.add_row(row["name"], row["environment"] or "-", str(row["updated_at"]))
    output_console().print(table)


@app.command("delete", epilog=DATABASE_EPILOG)
def delete_secret(
    repo: RepoArgument,
    name: Annotated[str, typer.Argument(help="Secret name.")],
    environment: EnvironmentOption = None,
) -> None:
    """Delete a secret; jobs that start afterwards no longer get it."""

    async def delete(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        await secrets.delete_secret(conn, repo_id=row["id"], name=name, environment=environment)

    run_with_connection(delete)
    print(f"deleted secret {name} of {repo}")


@app.command("rotate-key", epilog=DATABASE_EPILOG)
def rotate_key() -> None:
    """Re-encrypt every stored secret and webhook secret with the first MINIJENKIN_SECRET_KEY key.

    To rotate: set MINIJENKIN_SECRET_KEY to "NEW,OLD" (new key first) on every
    process, run this command, then drop OLD. Running it again is harmless.
    """
    settings = load_cli_settings()
    keyring = load_keyring(settings.secret_key, settings.data_dir)

    async def rotate(conn: psycopg.AsyncConnection) -> Any:
        return await secrets.rotate(conn, keyring)

    report = run_with_connection(rotate)
    print(f"re-encrypted {quantity(report.secrets, 'secret')} and "
          f"{quantity(report.webhook_secrets, 'webhook secret')} with key {keyring.active_id}; "
          f"encrypted {quantity(report.legacy_webhook_secrets, 'webhook secret')} stored in clear")


@app.command("generate-key")
def generate() -> None:
    """Print a new random key for MINIJENKIN_SECRET_KEY."""
    print(generate_key())
