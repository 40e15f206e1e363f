"""Layout of a run's job graph for the run page: a layered drawing of the `needs` DAG.

Jobs are placed in columns by the longest chain of `needs` before them
(the plan job first, then the jobs that need nothing), so every edge points
right. The combinations of a matrix job share one box ("unit") in a single
column. Within a column, units are ordered to reduce edge crossings by the
barycenter heuristic: a few sweeps that sort each column by the mean row of
the units it is connected to in the column before (then after) it.

The result is geometry only; the template draws it as SVG, and Jinja's
autoescaping escapes every job name in it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from minijenkin.web.templating import elapsed_seconds, format_duration

NODE_WIDTH = 210
NODE_HEIGHT = 44
NODE_GAP = 8
COLUMN_GAP = 64
UNIT_GAP = 16
GROUP_HEADER = 26
GROUP_PADDING = 8
MARGIN = 12
NAME_CHARS_MAX = 27
ORDERING_SWEEPS = 4

# Aggregate status of a matrix box, in order of precedence.
_GROUP_PRECEDENCE = ("running", "failed", "timed_out", "awaiting_approval", "waiting", "queued",
                     "pending", "cancelled", "succeeded", "superseded", "skipped")


@dataclass
class Node:
    job_id: int
    key: str
    name: str
    label: str
    status: str
    detail: str
    x: int = 0
    y: int = 0
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT


@dataclass
class Unit:
    """One box of a column: a single job, or every combination of one matrix job."""

    key: str
    nodes: list[Node]
    matrix: str | None = None
    column: int = 0
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0
    predecessors: set[str] = field(default_factory=set)
    successors: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        statuses = {node.status for node in self.nodes}
        for status in _GROUP_PRECEDENCE:
            if status in statuses:
                return status
        return self.nodes[0].status

    @property
    def summary(self) -> str:
        done = sum(1 for node in self.nodes if node.status == "succeeded")
        return f"{done}/{len(self.nodes)} succeeded"


@dataclass(frozen=True)
class Edge:
    path: str
    source: str
    target: str


@dataclass(frozen=True)
class Layout:
    units: list[Unit]
    edges: list[Edge]
    width: int
    height: int


def _short(text: str) -> str:
    return text if len(text) <= NAME_CHARS_MAX else text[:NAME_CHARS_MAX - 1] + "…"


def _detail(job: Mapping[str, Any], now: dt.datetime) -> str:
    parts = []
    seconds = elapsed_seconds(job.get("started_at"), job.get("finished_at"), now)
    if seconds is not None:
        parts.append(format_duration(seconds))
    if job.get("attempt", 0) > 1:
        parts.append(f"attempt {job['attempt']}")
    if job.get("environment"):
        parts.append(f"→ {job['environment']}")
    if not parts:
        parts.append(job["status"].replace("_", " "))
    return " · ".join(parts)


def _build_units(jobs: Sequence[Mapping[str, Any]], now: dt.datetime) -> tuple[
        dict[str, Unit], dict[int, str]]:
    units: dict[str, Unit] = {}
    unit_of: dict[int, str] = {}
    for job in jobs:
        matrix = job.get("matrix_job")
        key = f"matrix:{matrix}" if matrix else f"job:{job['id']}"
        node = Node(job_id=job["id"], key=job["key"], name=job["name"],
                    label=_short(job["name"]), status=job["status"], detail=_detail(job, now))
        if key not in units:
            units[key] = Unit(key=key, nodes=[], matrix=matrix)
        units[key].nodes.append(node)
        unit_of[job["id"]] = key
    return units, unit_of


def _connect(units: dict[str, Unit], unit_of: dict[int, str],
             jobs: Sequence[Mapping[str, Any]]) -> None:
    plan_units = [unit_of[job["id"]] for job in jobs if job["kind"] == "plan"]
    for job in jobs:
        target = unit_of[job["id"]]
        needs = [need for need in job.get("needs_ids") or () if need in unit_of]
        sources = {unit_of[need] for need in needs}
        if not needs and job["kind"] != "plan":
            # Jobs that need nothing start once the plan job has built the graph.
            sources.update(plan_units)
        for source in sources - {target}:
            units[target].predecessors.add(source)
            units[source].successors.add(target)


def _assign_columns(units: dict[str, Unit]) -> int:
    """Longest-path layering; return the number of columns."""
    pending = {key: len(unit.predecessors) for key, unit in units.items()}
    ready = [key for key, count in pending.items() if count == 0]
    placed = 0
    while ready:
        key = ready.pop()
        placed += 1
        unit = units[key]
        for successor in unit.successors:
            units[successor].column = max(units[successor].column, unit.column + 1)
            pending[successor] -= 1
            if pending[successor] == 0:
                ready.append(successor)
    columns = max((unit.column for unit in units.values()), default=-1) + 1
    if placed < len(units):
        # A cycle cannot come from the planner; draw such units last rather than fail.
        for key, count in pending.items():
            if count > 0:
                units[key].column = columns
        columns += 1
    return columns


def _order_columns(units: dict[str, Unit], count: int) -> list[list[Unit]]:
    columns: list[list[Unit]] = [[] for _ in range(count)]
    for unit in sorted(units.values(), key=lambda unit: unit.nodes[0].job_id):
        columns[unit.column].append(unit)

    def barycenter(linked_keys: set[str], rows: dict[str, int], position: int) -> float:
        linked = [rows[key] for key in linked_keys if key in rows]
        return sum(linked) / len(linked) if linked else float(position)

    def sweep(order: range, neighbours: str) -> None:
        for index in order:
            rows = {unit.key: row for column in columns for row, unit in enumerate(column)}
            current = columns[index]
            weights = {unit.key: barycenter(getattr(unit, neighbours), rows, row)
                       for row, unit in enumerate(current)}
            current.sort(key=lambda unit: weights[unit.key])

    for _ in range(ORDERING_SWEEPS):
        sweep(range(1, count), "predecessors")
        sweep(range(count - 2, -1, -1), "successors")
    return columns


def _place(columns: list[list[Unit]]) -> tuple[int, int]:
    for column in columns:
        for unit in column:
            if unit.matrix is None:
                unit.width, unit.height = NODE_WIDTH, NODE_HEIGHT
            else:
                count = len(unit.nodes)
                unit.width = NODE_WIDTH + 2 * GROUP_PADDING
                unit.height = (GROUP_HEADER + count * NODE_HEIGHT + (count - 1) * NODE_GAP
                               + GROUP_PADDING)
    column_width = NODE_WIDTH + 2 * GROUP_PADDING
    heights = [sum(unit.height for unit in column) + UNIT_GAP * max(len(column) - 1, 0)
               for column in columns]
    total_height = max(heights, default=0)
    for index, column in enumerate(columns):
        x = MARGIN + index * (column_width + COLUMN_GAP)
        # Columns are centred vertically on the tallest one.
        y = MARGIN + (total_height - heights[index]) // 2
        for unit in column:
            unit.x = x + (column_width - unit.width) // 2
            unit.y = y
            if unit.matrix is None:
                unit.nodes[0].x, unit.nodes[0].y = unit.x, unit.y
            else:
                for row, node in enumerate(unit.nodes):
                    node.x = unit.x + GROUP_PADDING
                    node.y = unit.y + GROUP_HEADER + row * (NODE_HEIGHT + NODE_GAP)
            y += unit.height + UNIT_GAP
    width = 2 * MARGIN + len(columns) * column_width + max(len(columns) - 1, 0) * COLUMN_GAP
    return width, total_height + 2 * MARGIN


def _edges(units: dict[str, Unit]) -> list[Edge]:
    edges = []
    for source in sorted(units.values(), key=lambda unit: unit.key):
        for target_key in sorted(source.successors):
            target = units[target_key]
            x1, y1 = source.x + source.width, source.y + source.height // 2
            x2, y2 = target.x, target.y + target.height // 2
            bend = max((x2 - x1) // 2, 16)
            path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
            edges.append(Edge(path=path, source=source.key, target=target.key))
    return edges


def layout(jobs: Sequence[Mapping[str, Any]], *, now: dt.datetime) -> Layout:
    """Lay out the jobs of a run (rows of the dashboard_run_jobs query)."""
    units, unit_of = _build_units(jobs, now)
    _connect(units, unit_of, jobs)
    count = _assign_columns(units)
    columns = _order_columns(units, count)
    width, height = _place(columns)
    ordered = [unit for column in columns for unit in column]
    return Layout(units=ordered, edges=_edges(units), width=width, height=height)
