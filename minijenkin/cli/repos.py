"""`minijenkin repo`: register and list repositories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from minijenkin import repos
from minijenkin.api.schemas import validate_git_url
from minijenkin.cli.common import (
    DATABASE_EPILOG,
    load_cli_settings,
    option_names,
    output_console,
    run_with_connection,
)
from minijenkin.crypto import load_keyring
from minijenkin.errors import InvalidInputError

app = typer.Typer(help="Register and list repositories.", no_args_is_help=True)


@app.command("add", epilog=DATABASE_EPILOG)
def add(
    name: Annotated[str, typer.Argument(help="Unique name, usually the forge's owner/project.")],
    url: Annotated[str, typer.Option("--url", help="Git URL the workers clone "
                                                   "(https://, ssh://, file://, user@host:path).")],
    secret: Annotated[str | None, typer.Option(
        "--secret", help="Webhook secret shared with the forge (at least 8 characters); "
                         "without one, webhooks for this repository are refused.")] = None,
    default_branch: Annotated[str, typer.Option(
        "--default-branch", help="Branch whose pipeline file defines cron schedules.")] = "main",
    poll_interval: Annotated[int | None, typer.Option(
        "--poll-interval", min=5, max=604800,
        help="Poll the repository with git ls-remote every this many seconds; default: never.")
    ] = None,
) -> None:
    """Register a repository."""
    try:
        validate_git_url(url)
    except ValueError as exc:
        raise InvalidInputError(f"invalid --url {url!r}: {exc}", field="url") from exc
    keyring = load_keyring(load_cli_settings().secret_key, load_cli_settings().data_dir)
    with option_names({"webhook_secret": "--secret", "default_branch": "--default-branch",
                       "poll_interval_seconds": "--poll-interval"}):
        row = run_with_connection(
            lambda conn: repos.create_repo(conn, name=name, url=url, webhook_secret=secret,
                                           keyring=keyring, default_branch=default_branch,
                                           poll_interval_seconds=poll_interval))
    print(f"registered repository {row['name']} (id {row['id']})")


@app.command("list", epilog=DATABASE_EPILOG)
def list_repositories() -> None:
    """List registered repositories with their latest run."""
    rows = run_with_connection(lambda conn: repos.list_repos(conn, limit=500))
    table = Table("id", "name", "url", "webhook secret", "last run")
    for row in rows:
        last = f"{row['last_run_id']} {row['last_run_status']}" if row["last_run_id"] else "-"
        table.add_row(str(row["id"]), row["name"], row["url"],
                      "yes" if row["has_webhook_secret"] else "no", last)
    output_console().print(table)


