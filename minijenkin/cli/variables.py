"""`minijenkin var`: store, list and delete a repository's configuration variables."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
import typer
from rich.table import Table

from minijenkin import repos, variables
from minijenkin.cli.common import DATABASE_EPILOG, output_console, run_with_connection

app = typer.Typer(help="Store, list and delete variables that pipelines read as ${{ vars.NAME }}.",
                  no_args_is_help=True)

RepoArgument = Annotated[str, typer.Argument(help="Repository name, e.g. acme/web.")]
NameArgument = Annotated[str, typer.Argument(help="Variable name: letters, digits and '_'.")]


@app.command("set", epilog=DATABASE_EPILOG)
def set_variable(
    repo: RepoArgument,
    name: NameArgument,
    value: Annotated[str, typer.Argument(help="The value, stored and shown in clear (use a secret "
                                              "for anything sensitive).")],
) -> None:
    """Create or replace a variable; runs planned afterwards read the new value."""

    async def store(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        return await variables.set_variable(conn, repo_id=row["id"], name=name, value=value)

    row = run_with_connection(store)
    print(f"{'created' if row['created'] else 'updated'} variable {name} of {repo}")


@app.command("list", epilog=DATABASE_EPILOG)
def list_variables(repo: RepoArgument) -> None:
    """List a repository's variables with their values."""

    async def fetch(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        return await variables.list_variables(conn, row["id"])

    table = Table("name", "value", "updated")
    for row in run_with_connection(fetch):
        table.add_row(row["name"], row["value"], str(row["updated_at"]))
    output_console().print(table)


@app.command("delete", epilog=DATABASE_EPILOG)
def delete_variable(repo: RepoArgument, name: NameArgument) -> None:
    """Delete a variable; runs planned afterwards read it as an empty string."""

    async def delete(conn: psycopg.AsyncConnection) -> Any:
        row = await repos.get_repo_by_name(conn, repo)
        await variables.delete_variable(conn, repo_id=row["id"], name=name)

    run_with_connection(delete)
    print(f"deleted variable {name} of {repo}")
