"""The `minijenkin` command line.

Every option also reads a MINIJENKIN_* environment variable, named in its
help text; explicit options win.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from minijenkin import __version__
from minijenkin.cli import doctor as doctor_command
from minijenkin.cli import logs as log_commands
from minijenkin.cli import notify as notify_commands
from minijenkin.cli import pipeline as pipeline_commands
from minijenkin.cli import repos as repo_commands
from minijenkin.cli import runs as run_commands
from minijenkin.cli import secrets as secret_commands
from minijenkin.cli import settings as settings_command
from minijenkin.cli import status as status_command
from minijenkin.cli import tokens as token_commands
from minijenkin.cli import variables as variable_commands
from minijenkin.cli.common import DATABASE_EPILOG, SETTINGS_EPILOG, load_cli_settings
from minijenkin.cli.trigger import trigger as trigger_command
from minijenkin.errors import MiniJenkinError
from minijenkin.logconfig import configure_logging

app = typer.Typer(
    name="minijenkin",
    help="Mini-Jenkin: CI/CD whose only infrastructure is PostgreSQL.",
    epilog="New here? `minijenkin up --demo` starts the database, API and workers and runs a "
           "demo pipeline. `minijenkin doctor` checks an installation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(notify_commands.app, name="notify")
app.add_typer(repo_commands.app, name="repo")
app.add_typer(token_commands.app, name="token")
app.command("show", epilog=DATABASE_EPILOG)(run_commands.show)
app.command("cancel", epilog=DATABASE_EPILOG)(run_commands.cancel)
app.command("rerun", epilog=DATABASE_EPILOG)(run_commands.rerun)
app.command("approve", epilog=DATABASE_EPILOG)(run_commands.approve)
app.command("validate")(pipeline_commands.validate)
app.command("exec")(pipeline_commands.exec_command)
app.add_typer(secret_commands.app, name="secret")
app.add_typer(variable_commands.app, name="var")
app.command("trigger", epilog=DATABASE_EPILOG)(trigger_command)
app.command("status", epilog=DATABASE_EPILOG)(status_command.status)
app.command("logs")(log_commands.logs)
app.command("search")(log_commands.search)
app.command("doctor", epilog=DATABASE_EPILOG)(doctor_command.doctor)
app.command("settings")(settings_command.settings)
console = Console(stderr=True)

# Typer renders help text as Rich markup, which drops an unescaped "[...]", so a literal "[" is written "\\[".
HostOption = Annotated[str | None, typer.Option(
    "--host", help="Address the API binds to. \\[env: MINIJENKIN_HOST; default: 127.0.0.1]")]
PortOption = Annotated[int | None, typer.Option(
    "--port", min=0, max=65535, help="TCP port of the API. \\[env: MINIJENKIN_PORT; default: 3000]")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="Directory for the embedded database, mirrors and workspaces. "
                       "\\[env: MINIJENKIN_DATA_DIR]")]


def _version(value: bool) -> None:
    if value:
        print(f"minijenkin {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Mini-Jenkin: CI/CD whose only infrastructure is PostgreSQL."""


@app.command(epilog=SETTINGS_EPILOG)
def up(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, max=64, help="Local worker processes to start.")] = 2,
    data_dir: DataDirOption = None,
    demo: Annotated[bool, typer.Option(
        "--demo/--no-demo", help="Push to a demo repository once up and follow its run.")] = False,
) -> None:
    """Start the database (embedded unless MINIJENKIN_DATABASE_URL is set), API and workers."""
    from minijenkin.supervisor import serve

    settings = load_cli_settings(host=host, port=port, data_dir=data_dir)
    configure_logging(settings.log_level, component="up")

    after_start = None
    if demo:
        from minijenkin.demo import run_demo

        async def after_start(api_url: str) -> None:
            await run_demo(api_url, settings.data_dir, Console())

    asyncio.run(serve(settings, workers=workers, after_start=after_start))


@app.command(epilog=SETTINGS_EPILOG)
def api(
    host: HostOption = None,
    port: PortOption = None,
    maintenance: Annotated[bool, typer.Option(
        "--maintenance/--no-maintenance",
        help="Take part in the leader-elected maintenance loops (reaper, log partitions) "
             "and deliver notifications.")] = True,
) -> None:
    """Run the HTTP API (webhooks, REST, dashboard) against the configured database."""
    import uvicorn

    from minijenkin.api.app import create_app
    from minijenkin.runtime import database_url

    settings = load_cli_settings(host=host, port=port)
    configure_logging(settings.log_level, component="api")
    conninfo = database_url(settings)
    uvicorn.run(create_app(settings, conninfo, maintenance=maintenance), host=settings.host,
                port=settings.port, log_config=None, access_log=False)


@app.command(epilog=SETTINGS_EPILOG)
def worker(
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, help="Jobs run at once. \\[env: MINIJENKIN_WORKER_CONCURRENCY; "
                                     "default: 4]")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="Comma-separated labels offered to `runs-on`. "
                         "\\[env: MINIJENKIN_WORKER_LABELS]")] = None,
) -> None:
    """Run a worker that claims and runs jobs until SIGTERM (graceful) or a second signal."""
    from minijenkin.runtime import worker_database_url
    from minijenkin.worker.main import run_worker

    settings = load_cli_settings(worker_concurrency=concurrency, worker_labels=labels)
    configure_logging(settings.log_level, component="worker")
    asyncio.run(run_worker(settings, worker_database_url(settings)))


@app.command(epilog=SETTINGS_EPILOG)
def dispatcher() -> None:
    """Deliver notifications from the outbox until SIGTERM (API processes also do this)."""
    from minijenkin.notify.dispatcher import run_dispatcher
    from minijenkin.runtime import database_url

    settings = load_cli_settings()
    configure_logging(settings.log_level, component="dispatcher")
    asyncio.run(run_dispatcher(settings, database_url(settings)))


@app.command(epilog=DATABASE_EPILOG)
def migrate() -> None:
    """Apply pending database migrations (safe to run from several processes at once)."""
    from minijenkin.db.migrate import migrate as apply_migrations
    from minijenkin.runtime import database_url

    settings = load_cli_settings()
    configure_logging(settings.log_level, component="migrate")
    report = apply_migrations(database_url(settings))
    if report.applied or report.reapplied:
        for name in report.applied + report.reapplied:
            print(f"applied {name}")
    else:
        print("the database schema is up to date")


def main() -> None:
    try:
        app()
    except MiniJenkinError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True, highlight=False)
        sys.exit(1)
