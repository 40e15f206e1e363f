"""`minijenkin repo`: register and list repositories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from minijenkin import repos
from minijenkin.api.schemas import validate_git_url
from minijenkin.cli.common import run_with_connection
from minijenkin.errors import InvalidInputError

app = typer.Typer(help="Register and list repositories.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Unique name, usually the forge's owner/project.")],
    url: Annotated[str, typer.Option("--url", help="Git URL the workers clone "
                                                   "(https://, ssh://, file://, user@host:path).")],
    secret: Annotated[str | None, typer.Option(
        "--secret", help="Webhook secret shared with the forge (at least 8 characters); "
                         "without one, webhooks for this repository are refused.")] = None,
) -> None:
    """Register a repository."""
    try:
        validate_git_url(url)
    except ValueError as exc:
        raise InvalidInputError(f"invalid --url {url!r}: {exc}", field="url") from exc
    row = run_with_connection(
        lambda conn: repos.create_repo(conn, name=name, url=url, webhook_secret=secret))
    print(f"registered repository {row['name']} (id {row['id']})")


@app.command("list")
def list_repositories() -> None:
    """List registered repositories with their latest run."""
    rows = run_with_connection(lambda conn: repos.list_repos(conn, limit=500))
    table = Table("id", "name", "url", "webhook secret", "last run")
    for row in rows:
        last = f"{row['last_run_id']} {row['last_run_status']}" if row["last_run_id"] else "-"
        table.add_row(str(row["id"]), row["name"], row["url"],
                      "yes" if row["has_webhook_secret"] else "no", last)
    Console().print(table)


