"""`minijenkin status`: the live figures as a table."""

from __future__ import annotations

import datetime as dt

from rich.table import Table

from minijenkin.cli.common import output_console, run_with_connection
from minijenkin.metrics.figures import Reading, read_figures


def format_value(reading: Reading) -> str:
    """A figure's value in its unit, e.g. `3 jobs`, `12.5 s`, `75.0 %`."""
    value = reading.value
    unit = reading.figure.unit
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "seconds":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "lines/s":
        return f"{value:.1f} lines/s"
    if unit == "timestamp":
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{value:g} {unit}"


def format_labels(reading: Reading) -> str:
    parts = []
    for name, value in reading.labels.items():
        # An empty label set means jobs any worker may run, or a worker without labels.
        shown = value if value or name != "labels" else "(none)"
        parts.append(f"{name}={shown}")
    return " ".join(parts) or "-"


def status() -> None:
    """Print the live figures: queue depth and age, worker slots, active runs, log ingest rate."""
    readings = run_with_connection(lambda conn: read_figures(conn, live_only=True))
    table = Table("figure", "labels", "value", title="Mini-Jenkin live figures")
    for reading in readings:
        table.add_row(reading.figure.name, format_labels(reading), format_value(reading))
    if not readings:
        table.add_row("-", "-", "nothing to report")
    output_console().print(table)
