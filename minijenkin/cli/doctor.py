"""`minijenkin doctor`: check an installation and print what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from minijenkin import doctor as checks
from minijenkin.cli.common import load_cli_settings
from minijenkin.text import quantity

STATUS_LABEL = {"ok": "[green]ok[/]  ", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


# Typer renders help text as Rich markup, which drops an unescaped "[...]", so a literal "[" is written "\\[".
def doctor(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Directory whose disk space is checked. \\[env: MINIJENKIN_DATA_DIR; "
                           "default: ~/.local/share/minijenkin]")] = None,
    max_clock_skew: Annotated[float, typer.Option(
        "--max-clock-skew", min=0.0,
        help="Largest clock difference in seconds allowed between a host and the database.")
    ] = checks.MAX_CLOCK_SKEW_SECONDS_DEFAULT,
    min_free: Annotated[int, typer.Option(
        "--min-free", min=0,
        help="Free disk space in MiB the data directory's file system must have.")
    ] = checks.MIN_FREE_MIB_DEFAULT,
) -> None:
    """Check the database version, migrations, workers, clocks and disk space.

    Reads the database from MINIJENKIN_DATABASE_URL (or the embedded server
    that `minijenkin up` runs). Exits with 1 when a check fails and prints
    what to fix under it.
    """
    settings = load_cli_settings(data_dir=data_dir)
    limits = checks.Limits(max_clock_skew_seconds=max_clock_skew, min_free_mib=min_free)
    findings = checks.run_checks(settings, limits)

    console = Console(highlight=False, soft_wrap=True)
    for finding in findings:
        console.print(f"{STATUS_LABEL[finding.status]} {finding.check:<10} {escape(finding.detail)}")
        if finding.fix and finding.status != "ok":
            console.print(f"            fix: {escape(finding.fix)}")
    failed = [finding for finding in findings if finding.status == "fail"]
    if failed:
        console.print(f"{quantity(len(failed), 'check')} failed")
        raise typer.Exit(1)
    console.print("all checks passed")
