"""`minijenkin notify`: add, list and remove a repository's notification targets."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.table import Table

from minijenkin import repos
from minijenkin.cli.common import DATABASE_EPILOG, load_cli_settings, output_console, run_with_connection
from minijenkin.crypto import load_keyring
from minijenkin.notify import KINDS, targets

app = typer.Typer(help="Add, list and remove notification targets of a repository.",
                  no_args_is_help=True)

RepoArgument = Annotated[str, typer.Argument(help="Repository name, as in `minijenkin repo list`.")]


@app.command("add", epilog=DATABASE_EPILOG)
def add(
    repo: RepoArgument,
    kind: Annotated[str, typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.")],
    url: Annotated[str | None, typer.Option(
        "--url", envvar="MINIJENKIN_NOTIFY_URL",
        help="Webhook URL, or the forge API base URL of a commit-status target (default: "
             "MINIJENKIN_GITHUB_API_URL or MINIJENKIN_GITLAB_API_URL). Stored encrypted.")] = None,
    secret: Annotated[str | None, typer.Option(
        "--secret", envvar="MINIJENKIN_NOTIFY_SECRET",
        help="HMAC key of a generic webhook, or the API token of a commit-status target. "
             "Stored encrypted.")] = None,
    events: Annotated[str | None, typer.Option(
        "--events", help="Comma-separated events, e.g. run.failed,run.fixed; default: all "
                         "the kind supports.")] = None,
    project: Annotated[str | None, typer.Option(
        "--project", help="Commit statuses: forge project (owner/repository on GitHub); "
                          "default: the repository name.")] = None,
    context: Annotated[str | None, typer.Option(
        "--context", help="Commit statuses: status name shown by the forge; default: "
                          "minijenkin.")] = None,
) -> None:
    """Add a notification target to a repository."""
    settings = load_cli_settings()
    keyring = load_keyring(settings.secret_key, settings.data_dir)
    default_status_url = {"github-status": settings.github_api_url,
                          "gitlab-status": settings.gitlab_api_url}.get(kind)
    event_list = [event.strip() for event in events.split(",") if event.strip()] \
        if events is not None else None

    async def create(conn: psycopg.AsyncConnection) -> dict:
        repository = await repos.get_repo_by_name(conn, repo)
        return await targets.create_target(
            conn, keyring, repo_id=repository["id"], kind=kind, url=url, secret=secret,
            events=event_list, project=project, context=context,
            default_status_url=default_status_url)

    row = run_with_connection(create)
    print(f"added {row['kind']} target {row['id']} to {repo} for {', '.join(row['events'])}")


@app.command("list", epilog=DATABASE_EPILOG)
def list_targets(repo: RepoArgument) -> None:
    """List a repository's targets (URLs shown as scheme and host only)."""

    async def fetch(conn: psycopg.AsyncConnection) -> list[dict]:
        repository = await repos.get_repo_by_name(conn, repo)
        return await targets.list_targets(conn, repository["id"])

    table = Table("id", "kind", "url", "secret", "events", "options")
    for row in run_with_connection(fetch):
        options = ", ".join(f"{key}={value}" for key, value in sorted(row["options"].items()))
        table.add_row(str(row["id"]), row["kind"], row["url_display"],
                      "yes" if row["has_secret"] else "no", ", ".join(row["events"]), options or "-")
    output_console().print(table)


@app.command("remove", epilog=DATABASE_EPILOG)
def remove(
    repo: RepoArgument,
    target_id: Annotated[int, typer.Argument(help="Id shown by `minijenkin notify list`.")],
) -> None:
    """Remove a target and its deliveries."""

    async def delete(conn: psycopg.AsyncConnection) -> None:
        repository = await repos.get_repo_by_name(conn, repo)
        await targets.delete_target(conn, repo_id=repository["id"], target_id=target_id)

    run_with_connection(delete)
    print(f"removed notification target {target_id} from {repo}")
