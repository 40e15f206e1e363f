"""Which pipeline files a run uses, and the combined job graph of the ones its event matches.

A repository with `.minijenkin.yml` uses that file only. Without it, each
GitHub Actions workflow in `.github/workflows/*.yml` (or `.yaml`) whose `on`
matches the event is planned, so a project moving from GitHub Actions runs
its workflows unchanged. Problems in `.minijenkin.yml` always fail the run.
Problems in a workflow fail it only when the workflow matches the event, or
when its `on` is itself invalid, because GitHub runs the other workflows.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minijenkin.errors import PipelineError
from minijenkin.pipeline import PIPELINE_FILE, triggers
from minijenkin.pipeline.diagnostics import PipelineValidationError
from minijenkin.pipeline.events import Event
from minijenkin.pipeline.inputs import resolve_inputs
from minijenkin.pipeline.parser import ParseResult, parse_source
from minijenkin.pipeline.plan import MAX_KEY_CHARS, build_graph

WORKFLOWS_DIR = ".github/workflows"
WORKFLOW_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class SourceFile:
    path: str
    data: bytes


@dataclass
class Plan:
    """The graph to submit, what was skipped and why, and the errors that fail the run."""

    graph: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[PipelineError] = field(default_factory=list)


def is_workflow_file(path: str) -> bool:
    return path.startswith(WORKFLOWS_DIR + "/") and path.endswith(WORKFLOW_SUFFIXES)


def workflow_paths(names: Iterable[str]) -> list[str]:
    """The workflow files among the names of `.github/workflows`, sorted."""
    return sorted(f"{WORKFLOWS_DIR}/{name}" for name in names if name.endswith(WORKFLOW_SUFFIXES))


def read_local_files(root: Path) -> list[SourceFile]:
    """`.minijenkin.yml` of a directory on disk, or else its GitHub Actions workflow files."""
    pipeline = root / PIPELINE_FILE
    if pipeline.is_file():
        return [SourceFile(PIPELINE_FILE, pipeline.read_bytes())]
    workflows = root / WORKFLOWS_DIR
    names = [entry.name for entry in workflows.iterdir() if entry.is_file()] if workflows.is_dir() else []
    return [SourceFile(path, (root / path).read_bytes()) for path in workflow_paths(names)]


def parse_sources(files: list[SourceFile]) -> list[ParseResult]:
    return [parse_source(source.data, file=source.path, workflow=is_workflow_file(source.path))
            for source in files]


def needs_changed_files(results: list[ParseResult], event: Event) -> bool:
    """Whether any file's triggers need the list of changed files for this event."""
    return any(result.triggers is not None and triggers.needs_changed_files(result.triggers, event)
               for result in results)


def plan_run(results: list[ParseResult], event: Event, changed_files: tuple[str, ...] | None,
             variables: dict[str, str] | None = None) -> Plan:
    """Match every parsed file against `event` and build the combined graph.

    `variables` are the repository's `vars` for plan-time expressions.
    """
    plan = Plan()
    planned: list[tuple[ParseResult, list[dict[str, Any]]]] = []
    for result in results:
        strict = not is_workflow_file(result.file)
        if result.triggers is None or (strict and result.errors):
            plan.errors.extend(result.errors)
            continue
        decision = triggers.match(result.triggers, event, changed_files)
        if not decision.matched:
            plan.notes.append(f"{result.file}: not run: {decision.reason}")
            continue
        if result.pipeline is None:
            plan.errors.extend(result.errors)
            continue
        plan.notes.append(f"{result.file}: runs for {decision.reason}")
        try:
            inputs: dict[str, Any] = {}
            if event.kind in ("manual", "api") and result.triggers.dispatch_inputs is not None:
                inputs = resolve_inputs(result.triggers.dispatch_inputs, event.inputs, file=result.file)
            planned.append((result, build_graph(result.pipeline, event, inputs, variables)))
        except PipelineValidationError as exc:
            plan.errors.extend(exc.errors)
        except PipelineError as exc:
            plan.errors.append(exc)
    if plan.errors:
        return plan
    if len(planned) == 1:
        plan.graph = planned[0][1]
    else:
        _drop_unshared_concurrency(plan, planned)
        prefixes = key_prefixes([result.file for result in results])
        for result, graph in planned:
            plan.graph.extend(_prefixed(result, graph, prefixes[result.file]))
    _check_unique_keys(plan)
    return plan


def key_prefixes(files: list[str]) -> dict[str, str]:
    """Map each file to the prefix of its job keys: its name without the extension.

    Two files with the same stem (`ci.yml` and `ci.yaml`) both keep their
    full name (`ci.yml/test`, `ci.yaml/test`), so keys stay unique in a run.
    A stem has no '/', so the text before a key's first '/' identifies its
    file. Every file of the repository counts, so a file's keys do not
    depend on which other files match an event.
    """
    names = {file: posixpath.basename(file) for file in files}
    stems = {file: posixpath.splitext(name)[0] for file, name in names.items()}
    counts = Counter(stems.values())
    return {file: stems[file] if counts[stems[file]] == 1 else names[file] for file in files}


def _check_unique_keys(plan: Plan) -> None:
    """Turn a key that two jobs share into a plan error, instead of a failed insert."""
    files: dict[str, str] = {}
    for entry in plan.graph:
        file = entry["spec"]["file"]
        other = files.get(entry["key"])
        if other == file:
            plan.errors.append(PipelineError(
                f"two jobs have the key {entry['key']!r} (keys are truncated to {MAX_KEY_CHARS} characters); "
                "shorten the job ids", file=file))
        elif other is not None:
            plan.errors.append(PipelineError(
                f"job key {entry['key']!r} is also a job key of {other}; rename one of the jobs",
                file=file))
        else:
            files[entry["key"]] = file
    if plan.errors:
        plan.graph = []


def _drop_unshared_concurrency(plan: Plan, planned: list[tuple[ParseResult, list[dict[str, Any]]]]) -> None:
    """Keep a pipeline-wide concurrency group only when every file of the run names the same one.

    The files of one event become one run, and the group applies to the
    whole run: a group of one file would otherwise hold back, or cancel, the
    jobs of the others.
    """
    groups = {result.file: graph[0]["spec"].get("workflow_concurrency")
              for result, graph in planned if graph}
    if len({repr(group) for group in groups.values()}) <= 1:
        return
    for file, group in groups.items():
        if group is not None:
            plan.notes.append(f"{file}: concurrency group {group['group']!r} not applied: this run "
                              "also holds jobs of pipeline files without that same group")
    for _result, graph in planned:
        for entry in graph:
            entry["spec"].pop("workflow_concurrency", None)


def _prefixed(result: ParseResult, graph: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Entries of one of several workflows, keyed `<prefix>/<key>` so keys stay unique per run."""
    title = result.pipeline.name if result.pipeline and result.pipeline.name else prefix

    def key(value: str) -> str:
        return f"{prefix}/{value}"

    prefixed = []
    for entry in graph:
        spec: dict[str, Any] = dict(entry["spec"])
        if "strategy" in spec:
            # Fail-fast finds a matrix's jobs by this name, which must stay unique in the run.
            spec["strategy"] = {**spec["strategy"], "job": key(spec["strategy"]["job"])}
        prefixed.append({
            **entry,
            "key": key(entry["key"]),
            "name": f"{title} / {entry['name']}",
            "needs": [key(need) for need in entry["needs"]],
            "spec": {
                **spec,
                "needs": {job: [key(value) for value in keys] for job, keys in spec["needs"].items()},
                "tolerated_needs": [key(value) for value in spec["tolerated_needs"]],
            },
        })
    return prefixed


def schedules(files: list[SourceFile]) -> list[tuple[str, triggers.Schedule]]:
    """Return the (file, schedule) pairs of the files a run would use, for the cron scheduler.

    Files whose `on` is invalid contribute nothing; their errors show up in
    the plan of any run of the commit.
    """
    found = []
    for result in parse_sources(files):
        if result.triggers is not None:
            found.extend((result.file, schedule) for schedule in result.triggers.schedules)
    return found


def missing_message(commit: str) -> str:
    return (f"{PIPELINE_FILE}: the pipeline file does not exist at commit {commit[:12]}, "
            f"and {WORKFLOWS_DIR} holds no workflow (*.yml)")
