"""`minijenkin validate` and `minijenkin exec`: pipeline files on this machine."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from minijenkin.errors import ConfigurationError
from minijenkin.pipeline import PIPELINE_FILE, sources
from minijenkin.pipeline.events import Event
from minijenkin.runs import EVENTS
from minijenkin.text import quantity

EventOption = Annotated[str, typer.Option(
    "--event", help=f"Event to plan for: {', '.join(EVENTS)}.")]
# Typer renders help text as Rich markup, which drops an unescaped "[...]", so a literal "[" is written "\\[".
RefOption = Annotated[str | None, typer.Option(
    "--ref", help="Full git ref of the event, e.g. refs/heads/main or refs/tags/v1.0. "
                  "\\[default: the checked-out branch]")]
InputOption = Annotated[list[str] | None, typer.Option(
    "--input", help="A manual run's input as NAME=VALUE; repeat for several.")]


def _inputs(values: list[str] | None) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for value in values or []:
        name, separator, text = value.partition("=")
        if not separator or not name:
            raise typer.BadParameter(f"invalid input {value!r}: expected NAME=VALUE", param_hint="--input")
        inputs[name] = text
    return inputs


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise typer.BadParameter(f"unknown event {event!r}; expected one of: {', '.join(EVENTS)}",
                                 param_hint="--event")


def _current_branch(directory: Path) -> str:
    result = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=directory,
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "main"


def _files(target: Path | None) -> tuple[list[sources.SourceFile], Path]:
    if target is None:
        files = sources.read_local_files(Path.cwd())
        if not files:
            raise ConfigurationError(f"no {PIPELINE_FILE} and no {sources.WORKFLOWS_DIR}/*.yml in "
                                     f"{Path.cwd()}; name the file to check")
        return files, Path.cwd()
    if target.is_dir():
        files = sources.read_local_files(target)
        if not files:
            raise ConfigurationError(f"no {PIPELINE_FILE} and no {sources.WORKFLOWS_DIR}/*.yml in {target}")
        return files, target
    if not target.is_file():
        raise ConfigurationError(f"{target} does not exist")
    # Report the path as given; a workflow file keeps GitHub's lenient event list.
    path = target.as_posix()
    marker = f"{sources.WORKFLOWS_DIR}/"
    if marker in path and sources.is_workflow_file(path[path.index(marker):]):
        path = path[path.index(marker):]
    return [sources.SourceFile(path, target.read_bytes())], target.parent


def _print_graph(console: Console, graph: list[dict[str, Any]]) -> None:
    for entry in graph:
        title = Text(entry["key"], style="bold")
        if entry["name"] != entry["key"]:
            title += Text(f"  ({entry['name']})")
        console.print(title, highlight=False)
        details = [
            ("needs", ", ".join(entry["needs"])),
            ("runs-on", ", ".join(entry["labels"])),
            ("if", entry["condition"] or ""),
            ("continue-on-error", "true" if entry["continue_on_error"] else ""),
            ("environment", entry["environment"] or ""),
            ("timeout", f"{entry['timeout_seconds'] / 60:g} min"),
        ]
        for label, value in details:
            if value:
                console.print(Text(f"  {label}: ", style="dim") + Text(value), highlight=False)
        for step in entry["spec"]["steps"]:
            condition = f"  [if {step['if']}]" if "if" in step else ""
            console.print(Text("  - ") + Text(step["name"]) + Text(condition, style="dim"), highlight=False)


def validate(
    file: Annotated[Path | None, typer.Argument(
        help=f"Pipeline file or directory to check. \\[default: {PIPELINE_FILE}, else "
             f"{sources.WORKFLOWS_DIR}/*.yml, in the current directory]")] = None,
    event: EventOption = "push",
    ref: RefOption = None,
    input_values: InputOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job graph as JSON.")] = False,
) -> None:
    """Check pipeline files; print every error with file:line:column, or the expanded job graph."""
    _check_event(event)
    files, directory = _files(file)
    ref = ref or (f"refs/heads/{_current_branch(directory)}" if event != "tag" else "refs/tags/v0.0.0")
    results = sources.parse_sources(files)
    console = Console()
    errors = [error for result in results for error in result.errors]
    if errors:
        for error in errors:
            console.print(Text(str(error), style="red"), soft_wrap=True, highlight=False)
        console.print(Text(f"{quantity(len(errors), 'problem')} found", style="bold red"))
        raise typer.Exit(1)

    plan = sources.plan_run(results, Event(kind=event, ref=ref, commit="0" * 40, inputs=_inputs(input_values),
                                           branch=ref.removeprefix("refs/heads/")
                                           if ref.startswith("refs/heads/") else None,
                                           tag=ref.removeprefix("refs/tags/")
                                           if ref.startswith("refs/tags/") else None), None)
    if plan.errors:
        for error in plan.errors:
            console.print(Text(str(error), style="red"), soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(plan.graph, indent=2))
        return
    for note in plan.notes:
        console.print(Text(note, style="dim"), soft_wrap=True, highlight=False)
    if not plan.graph:
        console.print(f"valid; no job runs for {event} {ref}")
        return
    count = len(plan.graph)
    console.print(Text(f"valid; {quantity(count, 'job')} for {event} {ref}:",
                       style="green"))
    _print_graph(console, plan.graph)


def exec_command(
    directory: Annotated[Path, typer.Argument(help="Working tree to run (uncommitted changes included).")]
    = Path("."),
    event: EventOption = "push",
    ref: RefOption = None,
    input_values: InputOption = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=64, help="Jobs run at once.")] = 2,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Directory for the embedded database, snapshots and workspaces "
                           "(exec uses its own folder inside it). \\[env: MINIJENKIN_DATA_DIR]")] = None,
) -> None:
    """Run the pipeline of a local working tree on this machine, streaming its logs."""
    from minijenkin.cli.common import load_cli_settings
    from minijenkin.localrun import execute
    from minijenkin.logconfig import configure_logging

    _check_event(event)
    settings = load_cli_settings(data_dir=data_dir)
    configure_logging("WARNING", component="exec")
    status = asyncio.run(execute(directory, settings, event_kind=event, ref=ref, inputs=_inputs(input_values),
                                 concurrency=jobs, console=Console()))
    if status not in ("succeeded", "skipped"):
        raise typer.Exit(1)
