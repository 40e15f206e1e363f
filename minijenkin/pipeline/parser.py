"""Validate a loaded `.minijenkin.yml` and build the pipeline model.

Every problem is reported as `file:line:column: message` with the key path,
and all problems of a file are collected before raising, so one run of
`minijenkin validate` shows them all.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from minijenkin.errors import PipelineError
from minijenkin.pipeline.loader import (
    Position,
    item_position,
    key_position,
    load_yaml,
    node_position,
    value_position,
)
from minijenkin.pipeline.model import DEFAULT_TIMEOUT_MINUTES, JobDefinition, Pipeline, Step
from minijenkin.pipeline.retry import parse_retry

PIPELINE_KEYS = ("name", "on", "env", "jobs")
JOB_KEYS = ("name", "needs", "runs-on", "steps", "env", "timeout-minutes", "retry")
STEP_KEYS = ("name", "run", "env")

JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_JOBS = 256
MAX_STEPS = 256
MAX_TIMEOUT_MINUTES = 7 * 24 * 60


class PipelineValidationError(PipelineError):
    """One or more problems in a pipeline file; `errors` lists each one."""

    def __init__(self, errors: list[PipelineError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, file=first.file, line=first.line, column=first.column,
                         path=first.path)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class _Collector:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[PipelineError] = []

    def add(self, message: str, position: Position | None, path: str | None = None) -> None:
        text = f"{path}: {message}" if path else message
        self.errors.append(PipelineError(
            text, file=self.file, line=position.line if position else None,
            column=position.column if position else None, path=path,
        ))


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(allowed)}"


def _check_keys(errors: _Collector, node: Mapping[Any, Any], allowed: tuple[str, ...],
                path: str) -> None:
    for key in node:
        if not isinstance(key, str):
            errors.add(f"keys must be strings, got {key!r}", key_position(node, key), path)
        elif key not in allowed:
            errors.add(f"unknown key {key!r}{_suggest(key, allowed)}", key_position(node, key), path)


def _string(errors: _Collector, node: Mapping[Any, Any], key: str, path: str) -> str | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        errors.add(f"{key!r} must be a string", value_position(node, key), path)
        return None
    return str(value)


def _env(errors: _Collector, node: Mapping[Any, Any], path: str) -> dict[str, str]:
    value = node.get("env")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add("'env' must be a mapping of variable names to values",
                   value_position(node, "env"), path)
        return {}
    env: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            errors.add(f"invalid environment variable name {name!r}: use letters, digits and '_'",
                       key_position(value, name), f"{path}.env")
            continue
        if isinstance(item, Mapping | list) or item is None:
            errors.add(f"the value of {name!r} must be a string, number or boolean",
                       value_position(value, name), f"{path}.env")
            continue
        env[name] = ("true" if item else "false") if isinstance(item, bool) else str(item)
    return env


def _string_list(errors: _Collector, node: Mapping[Any, Any], key: str, path: str) -> tuple[str, ...]:
    value = node.get(key)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        errors.add(f"{key!r} must be a string or a list of strings", value_position(node, key), path)
        return ()
    return tuple(items)


def _steps(errors: _Collector, job: Mapping[Any, Any], path: str) -> tuple[Step, ...]:
    raw = job.get("steps")
    if raw is None:
        errors.add("missing required key 'steps'", node_position(job), path)
        return ()
    if not isinstance(raw, list) or not raw:
        errors.add("'steps' must be a non-empty list", value_position(job, "steps"), path)
        return ()
    if len(raw) > MAX_STEPS:
        errors.add(f"a job may have at most {MAX_STEPS} steps", value_position(job, "steps"), path)
    steps: list[Step] = []
    for index, item in enumerate(raw):
        step_path = f"{path}.steps[{index}]"
        position = item_position(raw, index)
        if not isinstance(item, Mapping):
            errors.add("each step must be a mapping with a 'run' key", position, step_path)
            continue
        _check_keys(errors, item, STEP_KEYS, step_path)
        run = item.get("run")
        if run is None:
            errors.add("missing required key 'run'", position, step_path)
            continue
        if not isinstance(run, str) or not run.strip():
            errors.add("'run' must be a non-empty string", value_position(item, "run"), step_path)
            continue
        steps.append(Step(run=run, name=_string(errors, item, "name", step_path),
                          env=_env(errors, item, step_path),
                          line=position.line if position else None))
    return tuple(steps)


def _timeout(errors: _Collector, job: Mapping[Any, Any], path: str) -> float:
    value = job.get("timeout-minutes")
    if value is None:
        return DEFAULT_TIMEOUT_MINUTES
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 < value <= MAX_TIMEOUT_MINUTES
    ):
        errors.add(f"'timeout-minutes' must be a number above 0 and at most {MAX_TIMEOUT_MINUTES}",
                   value_position(job, "timeout-minutes"), path)
        return DEFAULT_TIMEOUT_MINUTES
    return float(value)


def _job(errors: _Collector, job_id: str, raw: Any, jobs_node: Mapping[Any, Any]) -> JobDefinition | None:
    path = f"jobs.{job_id}"
    if not JOB_ID.match(job_id):
        errors.add("invalid job id: start with a letter or '_', then letters, digits, '-' or '_'",
                   key_position(jobs_node, job_id), path)
    if not isinstance(raw, Mapping):
        errors.add("a job must be a mapping with 'steps'", value_position(jobs_node, job_id), path)
        return None
    _check_keys(errors, raw, JOB_KEYS, path)
    position = key_position(jobs_node, job_id)
    return JobDefinition(
        id=job_id,
        name=_string(errors, raw, "name", path) or job_id,
        steps=_steps(errors, raw, path),
        needs=_string_list(errors, raw, "needs", path),
        runs_on=_string_list(errors, raw, "runs-on", path),
        env=_env(errors, raw, path),
        timeout_minutes=_timeout(errors, raw, path),
        retry=parse_retry(
            raw.get("retry"),
            lambda message: errors.add(message, value_position(raw, "retry"), path),
        ),
        line=position.line if position else None,
    )


def _check_needs(errors: _Collector, jobs: dict[str, JobDefinition], jobs_node: Mapping[Any, Any]) -> None:
    for job in jobs.values():
        raw_job = jobs_node.get(job.id)
        for need in job.needs:
            if need not in jobs:
                close = difflib.get_close_matches(need, list(jobs), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                errors.add(f"'needs' names unknown job {need!r}{hint}",
                           value_position(raw_job, "needs"), f"jobs.{job.id}")
            elif need == job.id:
                errors.add("a job cannot need itself", value_position(raw_job, "needs"),
                           f"jobs.{job.id}")
    cycle = _find_cycle(jobs)
    if cycle:
        first = jobs[cycle[0]]
        errors.add(f"'needs' forms a cycle: {' -> '.join(cycle + [cycle[0]])}",
                   value_position(jobs_node.get(first.id), "needs"), f"jobs.{first.id}")


def _find_cycle(jobs: dict[str, JobDefinition]) -> list[str] | None:
    """A cycle in the `needs` graph as a list of job ids, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(job_id: str) -> list[str] | None:
        state[job_id] = 1
        stack.append(job_id)
        for need in jobs[job_id].needs:
            if need not in jobs or need == job_id:
                continue
            if state.get(need) == 1:
                return stack[stack.index(need):]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        stack.pop()
        state[job_id] = 2
        return None

    for job_id in jobs:
        if job_id not in state:
            found = visit(job_id)
            if found:
                return found
    return None


def parse_pipeline(data: bytes | str, *, file: str) -> Pipeline:
    """Load and validate a pipeline file; raise PipelineValidationError listing every problem."""
    document = load_yaml(data, file=file)
    errors = _Collector(file)
    if document is None:
        raise PipelineValidationError([PipelineError("the file is empty; it needs a 'jobs' key",
                                                     file=file, line=1, column=1)])
    if not isinstance(document, Mapping):
        position = node_position(document) or Position(1, 1)
        raise PipelineValidationError([PipelineError(
            "the file must be a mapping with a 'jobs' key", file=file, line=position.line,
            column=position.column)])

    _check_keys(errors, document, PIPELINE_KEYS, "")
    jobs_node = document.get("jobs")
    jobs: dict[str, JobDefinition] = {}
    if jobs_node is None:
        errors.add("missing required key 'jobs'", Position(1, 1))
    elif not isinstance(jobs_node, Mapping) or not jobs_node:
        errors.add("'jobs' must be a mapping of job ids to jobs", value_position(document, "jobs"))
    else:
        if len(jobs_node) > MAX_JOBS:
            errors.add(f"a pipeline may have at most {MAX_JOBS} jobs", value_position(document, "jobs"))
        for job_id, raw in jobs_node.items():
            job = _job(errors, str(job_id), raw, jobs_node)
            if job is not None:
                jobs[job.id] = job
        _check_needs(errors, jobs, jobs_node)

    pipeline = Pipeline(
        file=file, jobs=jobs, name=_string(errors, document, "name", ""), env=_env(errors, document, ""),
    )
    if errors.errors:
        errors.errors.sort(key=lambda error: (error.line or 0, error.column or 0))
        raise PipelineValidationError(errors.errors)
    return pipeline
