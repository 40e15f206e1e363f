"""Turn a validated pipeline into the job graph a plan job submits.

Matrices are expanded here: each combination becomes a job of its own,
keyed and named like `test (3.12, linux)`. Fields that decide where and how
a job is queued (name, labels, timeout, continue-on-error, environment,
concurrency) are evaluated now, with the `github`, `minijenkin`, `inputs` and
`matrix` contexts. Everything else (conditions, scripts, environment values)
travels in the job's spec and is evaluated by the worker that runs it.

`strategy.max-parallel: N` is kept by ordering: combination i also needs
combination i-N, so at most N of them run at once. Such ordering edges are
not listed in the spec's `needs`, and a job that has one always gets a
condition, so the worker decides from its real needs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from minijenkin.errors import PipelineError
from minijenkin.pipeline import matrix as matrix_module
from minijenkin.pipeline.events import Event, github_context, minijenkin_context
from minijenkin.pipeline.expressions import (
    ExpressionError,
    Scope,
    calls,
    evaluate_value,
    is_truthy,
    parse_condition,
    render_text,
)
from minijenkin.pipeline.model import JobDefinition, Pipeline, Step
from minijenkin.pipeline.parser import HOSTED_RUNNER
from minijenkin.pipeline.retry import max_attempts

MAX_KEY_CHARS = 200
# Environment names and concurrency groups name deploy locks; the
# environments table allows up to 255 characters.
MAX_LOCK_NAME_CHARS = 255
DEFAULT_CONDITION = "success()"


@dataclass(frozen=True)
class ExpandedJob:
    """One job of the graph: a job definition with one matrix combination applied."""

    key: str
    name: str
    definition: JobDefinition
    matrix: dict[str, Any] | None
    labels: tuple[str, ...]
    timeout_minutes: float
    continue_on_error: bool
    environment: dict[str, Any] | None
    concurrency: dict[str, Any] | None
    needs: list[str] = field(default_factory=list)
    order_after: list[str] = field(default_factory=list)
    # The `strategy` context of this combination (STRATEGY_DEFAULT without a matrix).
    strategy: dict[str, Any] = field(default_factory=lambda: dict(STRATEGY_DEFAULT))


# The `strategy` context of a job without a matrix, as on GitHub.
STRATEGY_DEFAULT = {"fail-fast": True, "job-index": 0, "job-total": 1, "max-parallel": 1}


def plan_contexts(pipeline: Pipeline, event: Event, inputs: dict[str, Any], job_id: str,
                  combination: dict[str, Any] | None,
                  strategy: dict[str, Any] | None = None,
                  variables: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "github": github_context(event, job=job_id, workflow=pipeline.name or pipeline.file),
        "minijenkin": minijenkin_context(event),
        "inputs": dict(inputs),
        "vars": dict(variables or {}),
        "matrix": combination or {},
        "strategy": strategy or dict(STRATEGY_DEFAULT),
    }


class _Planner:
    def __init__(self, pipeline: Pipeline, event: Event, inputs: dict[str, Any],
                 variables: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.event = event
        self.inputs = inputs
        self.variables = variables

    def fail(self, job: JobDefinition, field_name: str, message: str) -> PipelineError:
        line, column = job.positions.get(field_name) or job.positions.get("") or (job.line, None)
        return PipelineError(f"jobs.{job.id}.{field_name}: {message}", file=self.pipeline.file,
                             line=line, column=column, path=f"jobs.{job.id}.{field_name}")

    def value(self, job: JobDefinition, field_name: str, text: str, scope: Scope) -> Any:
        try:
            return evaluate_value(text, scope)
        except ExpressionError as exc:
            raise self.fail(job, field_name, exc.message) from exc

    def text(self, job: JobDefinition, field_name: str, text: str, scope: Scope) -> str:
        try:
            return render_text(text, scope)
        except ExpressionError as exc:
            raise self.fail(job, field_name, exc.message) from exc

    def expand(self, job: JobDefinition) -> list[ExpandedJob]:
        combinations: list[dict[str, Any] | None] = (
            list(matrix_module.expand(job.strategy.matrix)) if job.strategy.matrix is not None else [None])
        expanded: list[ExpandedJob] = []
        for index, combination in enumerate(combinations):
            strategy = dict(STRATEGY_DEFAULT)
            if combination is not None:
                strategy = {"fail-fast": job.strategy.fail_fast, "job-index": index,
                            "job-total": len(combinations),
                            "max-parallel": job.strategy.max_parallel or len(combinations)}
            scope = Scope(contexts=plan_contexts(self.pipeline, self.event, self.inputs, job.id, combination,
                                                 strategy, self.variables))
            suffix = f" ({matrix_module.label(combination)})" if combination else ""
            name = self.text(job, "name", job.name, scope)
            if combination and (not job.has_name or "matrix" not in job.name):
                name += suffix
            labels = [self.text(job, "runs-on", label, scope) for label in job.runs_on]
            expanded.append(ExpandedJob(
                key=(job.id + suffix)[:MAX_KEY_CHARS],
                name=name[:MAX_KEY_CHARS] or job.id,
                definition=job,
                matrix=combination,
                labels=tuple(sorted({label for label in labels if label and not HOSTED_RUNNER.match(label)})),
                timeout_minutes=self._timeout(job, scope),
                continue_on_error=self._flag(job, "continue-on-error", job.continue_on_error, scope),
                environment=self._environment(job, scope),
                concurrency=self._concurrency(job, job.concurrency, scope),
                strategy=strategy,
            ))
        _make_keys_unique(expanded)
        return expanded

    def _timeout(self, job: JobDefinition, scope: Scope) -> float:
        if not isinstance(job.timeout_minutes, str):
            return float(job.timeout_minutes)
        value = self.value(job, "timeout-minutes", job.timeout_minutes, scope)
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
        if not (0 < number <= 7 * 24 * 60):
            raise self.fail(job, "timeout-minutes",
                            f"the expression gave {value!r}; expected minutes above 0")
        return number

    def _flag(self, job: JobDefinition, field_name: str, value: bool | str, scope: Scope) -> bool:
        if isinstance(value, bool):
            return value
        return is_truthy(self.value(job, field_name, value, scope))

    def _environment(self, job: JobDefinition, scope: Scope) -> dict[str, Any] | None:
        if job.environment is None:
            return None
        name = self.text(job, "environment", job.environment.name, scope).strip()
        if not name:
            # As in GitHub Actions, a name that evaluates to '' means no environment,
            # e.g. `${{ github.ref == 'refs/heads/main' && 'production' || '' }}`.
            return None
        if len(name) > MAX_LOCK_NAME_CHARS:
            raise self.fail(job, "environment", f"the environment name is longer than "
                                                f"{MAX_LOCK_NAME_CHARS} characters")
        url = self.text(job, "environment", job.environment.url, scope) if job.environment.url else None
        return {"name": name, "url": url}

    def _concurrency(self, job: JobDefinition, concurrency: Any, scope: Scope) -> dict[str, Any] | None:
        if concurrency is None:
            return None
        group = self.text(job, "concurrency", concurrency.group, scope).strip()
        if not group:
            raise self.fail(job, "concurrency", "the concurrency group is empty")
        if len(group) > MAX_LOCK_NAME_CHARS:
            raise self.fail(job, "concurrency", f"the concurrency group is longer than "
                                                f"{MAX_LOCK_NAME_CHARS} characters")
        cancel = self._flag(job, "concurrency", concurrency.cancel_in_progress, scope)
        return {"group": group, "cancel_in_progress": cancel, "queue": concurrency.queue}


    def workflow_concurrency(self) -> dict[str, Any] | None:
        """The top-level `concurrency`, evaluated without a job or matrix."""
        concurrency = self.pipeline.concurrency
        if concurrency is None:
            return None
        scope = Scope(contexts=plan_contexts(self.pipeline, self.event, self.inputs, "", None,
                                             variables=self.variables))
        try:
            group = render_text(concurrency.group, scope).strip()
            cancel = concurrency.cancel_in_progress
            if isinstance(cancel, str):
                cancel = is_truthy(evaluate_value(cancel, scope))
        except ExpressionError as exc:
            line, column = self.pipeline.concurrency_position or (None, None)
            raise PipelineError(f"concurrency: {exc.message}", file=self.pipeline.file,
                                line=line, column=column, path="concurrency") from exc
        if not group:
            return None
        return {"group": group, "cancel_in_progress": cancel, "queue": concurrency.queue}


def _make_keys_unique(jobs: list[ExpandedJob]) -> None:
    seen: dict[str, int] = {}
    for index, job in enumerate(jobs):
        count = seen.get(job.key, 0) + 1
        seen[job.key] = count
        if count > 1:
            jobs[index] = ExpandedJob(**{**job.__dict__, "key": f"{job.key} #{count}"})


def expand_jobs(pipeline: Pipeline, event: Event, inputs: dict[str, Any] | None = None,
                variables: dict[str, str] | None = None) -> list[ExpandedJob]:
    """Every job of the graph, matrices expanded, with needs resolved to keys."""
    planner = _Planner(pipeline, event, inputs or {}, variables or {})
    groups: dict[str, list[ExpandedJob]] = {}
    for job in pipeline.jobs.values():
        groups[job.id] = planner.expand(job)
    for job_id, group in groups.items():
        definition = pipeline.jobs[job_id]
        needed = [job.key for need in definition.needs for job in groups.get(need, [])]
        parallel = definition.strategy.max_parallel
        for index, job in enumerate(group):
            job.needs.extend(needed)
            if parallel is not None and index >= parallel:
                job.order_after.append(group[index - parallel].key)
    return [job for group in groups.values() for job in group]


def _step_entry(step: Step) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": step.display_name, "env": step.env}
    if step.run is not None:
        entry["run"] = step.run
    if step.uses is not None:
        entry["uses"] = step.uses
    optional = {"id": step.id, "if": step.condition, "working_directory": step.working_directory,
                "timeout_minutes": step.timeout_minutes, "line": step.line, "shell": step.shell}
    entry.update({key: value for key, value in optional.items() if value is not None})
    if step.continue_on_error is not False:
        entry["continue_on_error"] = step.continue_on_error
    return entry


def _calls_failure(condition: str | None) -> bool:
    return condition is not None and any(call.name == "failure" for call in calls(parse_condition(condition)))


def _indirect_ancestors(pipeline: Pipeline, job_id: str) -> list[str]:
    """Return the ids of the jobs this job depends on through other jobs only, sorted."""
    direct = set(pipeline.jobs[job_id].needs)
    seen: set[str] = set()
    pending = list(direct)
    while pending:
        definition = pipeline.jobs.get(pending.pop())
        for parent in definition.needs if definition is not None else ():
            if parent not in seen:
                seen.add(parent)
                pending.append(parent)
    return sorted(seen - direct)


def graph_entries(pipeline: Pipeline, jobs: list[ExpandedJob], inputs: dict[str, Any],
                  workflow_concurrency: dict[str, Any] | None = None,
                  variables: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The JSON entries mj_plan_submit_v1 stores, one per expanded job."""
    by_key = {job.key: job for job in jobs}
    by_definition: dict[str, list[str]] = {}
    for job in jobs:
        by_definition.setdefault(job.definition.id, []).append(job.key)

    entries: list[dict[str, Any]] = []
    for job in jobs:
        definition = job.definition
        condition = definition.condition
        if condition is None and job.order_after:
            condition = DEFAULT_CONDITION
        spec: dict[str, Any] = {
            "env": {**pipeline.env, **definition.env},
            "steps": [_step_entry(step) for step in definition.steps],
            "job": definition.id,
            "workflow": pipeline.name or pipeline.file,
            "file": pipeline.file,
            "matrix": job.matrix or {},
            "inputs": inputs,
            # needs by job id, and the needed jobs whose failure counts as success.
            "needs": {need: by_definition.get(need, []) for need in definition.needs},
            "tolerated_needs": sorted(key for key in job.needs if by_key[key].continue_on_error),
            "secrets": list(definition.secrets),
        }
        if definition.working_directory is not None:
            spec["working_directory"] = definition.working_directory
        # The values of the variables the job reads, as they were when the run was planned.
        job_variables = {name: variables[name] for name in definition.variables
                         if variables and name in variables}
        if job_variables:
            spec["vars"] = job_variables
        if definition.outputs:
            spec["outputs"] = definition.outputs
        # failure() is true when any ancestor failed, as on GitHub, so the
        # worker reads the statuses of the indirect ones too.
        ancestors = _indirect_ancestors(pipeline, definition.id) if _calls_failure(condition) else []
        if ancestors:
            spec["ancestors"] = [key for ancestor in ancestors for key in by_definition.get(ancestor, [])]
        # The worker then reads the outputs of the needed jobs before the job starts.
        if any(pipeline.jobs[need].outputs for need in definition.needs if need in pipeline.jobs):
            spec["needs_outputs"] = True
        if job.matrix is not None:
            spec["strategy"] = {"job": definition.id, "fail_fast": definition.strategy.fail_fast,
                                "max_parallel": definition.strategy.max_parallel,
                                "context": job.strategy}
        if job.environment is not None:
            spec["environment"] = job.environment
        if job.concurrency is not None:
            spec["concurrency"] = job.concurrency
        if workflow_concurrency is not None:
            spec["workflow_concurrency"] = workflow_concurrency
        entries.append({
            "key": job.key,
            "name": job.name,
            "needs": job.needs + [key for key in job.order_after if key not in job.needs],
            "labels": list(job.labels),
            "timeout_seconds": max(1, math.ceil(job.timeout_minutes * 60)),
            "max_attempts": max_attempts(definition.retry),
            "retry": definition.retry,
            "condition": condition,
            "continue_on_error": job.continue_on_error,
            "environment": job.environment["name"] if job.environment else None,
            "concurrency": job.concurrency,
            "spec": spec,
        })
    return entries


def build_graph(pipeline: Pipeline, event: Event | None = None, inputs: dict[str, Any] | None = None,
                variables: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per job (matrices expanded), in the JSON shape mj_plan_submit_v1 stores.

    `variables` are the repository's `vars`. Raises PipelineError when a
    plan-time expression cannot be evaluated.
    """
    event = event or Event(kind="push", ref="refs/heads/main", commit="0" * 40)
    inputs = inputs or {}
    variables = variables or {}
    concurrency = _Planner(pipeline, event, inputs, variables).workflow_concurrency()
    return graph_entries(pipeline, expand_jobs(pipeline, event, inputs, variables), inputs, concurrency,
                         variables)
