"""`minijenkin trigger`: start a manual run with inputs."""

from __future__ import annotations

import getpass
from typing import Annotated, Any

import psycopg
import typer

from minijenkin import triggers
from minijenkin.cli.common import load_cli_settings, option_names, run_with_connection


def trigger(
    repo: Annotated[str, typer.Argument(help="Repository name, e.g. acme/web.")],
    ref: Annotated[str, typer.Option("--ref", help="Branch or tag to run, e.g. main or v1.2.0.")],
    inputs: Annotated[list[str] | None, typer.Option(
        "--input", help="Pipeline input as name=value; repeat for several.")] = None,
    commit: Annotated[str | None, typer.Option(
        "--commit", help="Run this commit instead of the ref's current head: its full id, "
                         "40 or 64 hex digits.")] = None,
) -> None:
    """Start a manual run of REPO at --ref and print its id."""
    values = triggers.parse_input_options(inputs or [])
    settings = load_cli_settings()
    actor = f"cli:{getpass.getuser()}"

    async def create(conn: psycopg.AsyncConnection) -> Any:
        return await triggers.create_manual_run(
            conn, repo_name=repo, ref=ref, commit=commit, inputs=values, actor=actor,
            source="cli", data_dir=settings.data_dir)

    with option_names({"ref": "--ref", "commit": "--commit"}):
        run = run_with_connection(create)
    print(f"started run {run['id']} of {repo} at {run['ref']} ({run['commit_sha'][:12]}); "
          f"see its jobs with `minijenkin show {run['id']}`")
