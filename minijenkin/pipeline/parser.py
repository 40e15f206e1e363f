"""Validate a loaded pipeline file and build the pipeline model.

The same parser reads `.minijenkin.yml` and GitHub Actions workflow files
(`.github/workflows/*.yml`); for the latter, events Mini-Jenkin never
receives are ignored instead of rejected. Every problem is reported as
`file:line:column: path: message`, and all problems of a file are collected
before raising, so one run of `minijenkin validate` shows them all.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minijenkin.errors import PipelineError
from minijenkin.pipeline import checks, shells
from minijenkin.pipeline.checks import Scope
from minijenkin.pipeline.diagnostics import (
    Collector,
    PipelineValidationError,
    check_keys,
    misspelled,
    scalar_text,
    suggestion,
)
from minijenkin.pipeline.inputs import INPUT_KEYS
from minijenkin.pipeline.loader import (
    Position,
    item_position,
    key_position,
    load_yaml_source,
    node_position,
    value_position,
)
from minijenkin.pipeline.matrix import STRATEGY_KEYS, parse_strategy
from minijenkin.pipeline.matrix import expand as expand_matrix
from minijenkin.pipeline.model import (
    DEFAULT_TIMEOUT_MINUTES,
    Concurrency,
    Environment,
    JobDefinition,
    Pipeline,
    Step,
)
from minijenkin.pipeline.retry import parse_retry
from minijenkin.pipeline.triggers import (
    DISPATCH_KEYS,
    PULL_REQUEST_KEYS,
    PUSH_KEYS,
    SCHEDULE_KEYS,
    Triggers,
    parse_triggers,
)

__all__ = ["PipelineValidationError", "ParseResult", "accepted_keys", "parse_pipeline", "parse_source"]

PIPELINE_KEYS = ("name", "run-name", "on", "env", "defaults", "concurrency", "permissions", "jobs")
JOB_KEYS = ("name", "needs", "runs-on", "if", "env", "timeout-minutes", "retry", "continue-on-error",
            "environment", "concurrency", "strategy", "defaults", "permissions", "outputs", "steps")
STEP_KEYS = ("name", "id", "if", "run", "uses", "with", "env", "working-directory", "shell",
             "continue-on-error", "timeout-minutes")
# Job keys whose expressions the planner evaluates when a run starts.
PLANNED_JOB_KEYS = ("name", "runs-on", "timeout-minutes", "continue-on-error", "environment", "concurrency")
DEFAULTS_KEYS = ("run",)
DEFAULTS_RUN_KEYS = ("shell", "working-directory")
ENVIRONMENT_KEYS = ("name", "url")
CONCURRENCY_KEYS = ("group", "cancel-in-progress", "queue")
CONCURRENCY_QUEUES = ("all", "latest")
# actions/checkout inputs that change nothing here: the workspace is always
# a full clone of the run's commit.
CHECKOUT_INPUTS = ("fetch-depth", "fetch-tags", "persist-credentials", "clean", "show-progress",
                   "set-safe-directory")
# actions/checkout inputs that add work to the step, and the commands that
# do it in the workspace: the step runs them as its script.
CHECKOUT_SUBMODULES = {True: "git submodule update --init",
                       "recursive": "git submodule update --init --recursive"}
CHECKOUT_LFS = "git lfs pull"
UNSUPPORTED_JOB_KEYS = {
    "services": "service containers need a container engine; start what the job needs in a step",
    "container": "jobs run on the worker's machine; there is no container engine",
    "uses": "reusable workflows cannot be called; copy the jobs into this file",
    "secrets": "secrets are configured on the repository, not passed per job",
    "with": "reusable workflows cannot be called; copy the jobs into this file",
}
# GitHub-hosted runner names: they pick a virtual machine image on GitHub and
# impose no label here, so a workflow written for GitHub runs on any worker.
HOSTED_RUNNER = re.compile(r"^(ubuntu|linux)-(latest|\d+\.\d+)(-arm)?$|^self-hosted$")

JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CHECKOUT = re.compile(r"^actions/checkout@[A-Za-z0-9._/-]+$", re.IGNORECASE)
MAX_JOBS = 256
MAX_STEPS = 256
MAX_TIMEOUT_MINUTES = 7 * 24 * 60


def accepted_keys() -> list[str]:
    """Every key path the parser accepts, for the pipeline reference to list."""
    keys = [*PIPELINE_KEYS, "on.push", "on.pull_request", "on.schedule", "on.workflow_dispatch"]
    keys += [f"on.push.{key}" for key in PUSH_KEYS]
    keys += [f"on.pull_request.{key}" for key in PULL_REQUEST_KEYS]
    keys += [f"on.schedule.{key}" for key in SCHEDULE_KEYS]
    keys += [f"on.workflow_dispatch.{key}" for key in DISPATCH_KEYS]
    keys += [f"on.workflow_dispatch.inputs.<name>.{key}" for key in INPUT_KEYS]
    keys += [f"defaults.run.{key}" for key in DEFAULTS_RUN_KEYS]
    keys += [f"concurrency.{key}" for key in CONCURRENCY_KEYS]
    keys += [f"jobs.<job_id>.{key}" for key in JOB_KEYS]
    keys += [f"jobs.<job_id>.environment.{key}" for key in ENVIRONMENT_KEYS]
    keys += [f"jobs.<job_id>.concurrency.{key}" for key in CONCURRENCY_KEYS]
    keys += [f"jobs.<job_id>.strategy.{key}" for key in STRATEGY_KEYS]
    keys += ["jobs.<job_id>.strategy.matrix.include", "jobs.<job_id>.strategy.matrix.exclude"]
    keys += [f"jobs.<job_id>.defaults.run.{key}" for key in DEFAULTS_RUN_KEYS]
    keys += [f"jobs.<job_id>.steps[*].{key}" for key in STEP_KEYS]
    return keys


@dataclass(frozen=True)
class RunDefaults:
    """`defaults.run` as it applies to a job's `run:` steps."""

    shell: str | None = None
    working_directory: str | None = None


@dataclass(frozen=True)
class ParseResult:
    """A parsed file: the pipeline when valid, its triggers when `on` was valid, and every error."""

    file: str
    pipeline: Pipeline | None
    triggers: Triggers | None
    errors: tuple[PipelineError, ...]


class _FileParser:
    def __init__(self, errors: Collector, document: Mapping[Any, Any], *, workflow: bool) -> None:
        self.errors = errors
        self.document = document
        self.workflow = workflow
        self.triggers = Triggers()
        self.inputs: dict[str, Any] | None = None
        self.workflow_env_taint: dict[str, bool] = {}
        self.run_defaults = RunDefaults()

    def add(self, message: str, position: Position | None, path: str | None = None) -> None:
        self.errors.add(message, position, path)

    def at(self, container: Any, key: Any) -> checks.PositionAt:
        """A function from an offset inside the string under `key` to its position."""
        return lambda offset: self.errors.inside_value(container, key, offset)

    # -- top level ------------------------------------------------------------

    def parse(self) -> Pipeline:
        document = self.document
        check_keys(self.errors, document, PIPELINE_KEYS, "")
        self.triggers = parse_triggers(self.errors, document, lenient=self.workflow)
        if self.triggers.call_inputs or self.triggers.dispatch_inputs is not None:
            # A manual run's input wins over a reusable workflow's input of the same name.
            specs = [*self.triggers.call_inputs, *(self.triggers.dispatch_inputs or ())]
            self.inputs = {spec.name: spec for spec in specs}

        name = self._string(document, "name", "")
        run_name = self._string(document, "run-name", "")
        if run_name is not None:
            checks.check_template(self.errors, run_name, self._scope(checks.WORKFLOW_CONTEXTS), "run-name",
                                  self.at(document, "run-name"))
        env = self._env(document, "", checks.WORKFLOW_ENV_CONTEXTS)
        scope = self._scope(checks.WORKFLOW_ENV_CONTEXTS)
        self.workflow_env_taint = {key: checks.template_is_tainted(value, scope)
                                   for key, value in env.items()}
        self.run_defaults = self._defaults(document, "", RunDefaults())
        concurrency = self._concurrency(document, "", checks.WORKFLOW_CONTEXTS)

        jobs: dict[str, JobDefinition] = {}
        jobs_node = document.get("jobs")
        if jobs_node is None:
            if not misspelled(document, "jobs", PIPELINE_KEYS):
                self.add("missing required key 'jobs'", Position(1, 1))
        elif not isinstance(jobs_node, Mapping) or not jobs_node:
            self.add("'jobs' must be a mapping of job ids to jobs", value_position(document, "jobs"))
        else:
            for job_id, raw in jobs_node.items():
                job = self._job(str(job_id), raw, jobs_node, env)
                if job is not None:
                    jobs[job.id] = job
            self._check_job_count(jobs, jobs_node)
            self._check_needs(jobs, jobs_node)

        concurrency_at = value_position(document, "concurrency")
        return Pipeline(file=self.errors.file, jobs=jobs, name=name, env=env, triggers=self.triggers,
                        concurrency=concurrency, is_workflow=self.workflow,
                        concurrency_position=(concurrency_at.line, concurrency_at.column)
                        if concurrency_at else None)

    def _scope(self, contexts: tuple[str, ...], **extra: Any) -> Scope:
        return Scope(contexts=contexts, inputs=self.inputs, **extra)

    # -- shared value checks --------------------------------------------------

    def _string(self, node: Mapping[Any, Any], key: str, path: str) -> str | None:
        value = node.get(key)
        if value is None:
            return None
        text = scalar_text(value)
        if text is None:
            self.add(f"{key!r} must be a string", value_position(node, key), path or None)
        return text

    def _env(self, node: Mapping[Any, Any], path: str, contexts: tuple[str, ...], *,
             step_scope: Scope | None = None) -> dict[str, str]:
        value = node.get("env")
        if value is None:
            return {}
        env_path = f"{path}.env" if path else "env"
        if not isinstance(value, Mapping):
            self.add("'env' must be a mapping of variable names to values", value_position(node, "env"),
                     path or None)
            return {}
        scope = step_scope or self._scope(contexts)
        env: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                self.add(f"invalid environment variable name {name!r}: use letters, digits and '_'",
                         key_position(value, name), env_path)
                continue
            # GitHub Actions sets a variable declared with no value (`NAME:`) to
            # the empty string, and workflows such as ripgrep's rely on that.
            text = "" if item is None else scalar_text(item)
            if text is None:
                self.add(f"the value of {name!r} must be a string, number or boolean",
                         value_position(value, name), env_path)
                continue
            checks.check_template(self.errors, text, scope, env_path, self.at(value, name))
            env[name] = text
        return env

    def _bool_or_expression(self, node: Mapping[Any, Any], key: str, path: str,
                            scope: Scope) -> bool | str:
        value = node.get(key, False)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and checks.whole_expression(value):
            checks.check_template(self.errors, value, scope, path, self.at(node, key))
            return value.strip()
        self.add(f"{key!r} must be true, false or a '${{{{ }}}}' expression", value_position(node, key), path)
        return False

    def _timeout(self, node: Mapping[Any, Any], path: str, scope: Scope) -> float | str | None:
        value = node.get("timeout-minutes")
        if value is None:
            return None
        if isinstance(value, str) and checks.whole_expression(value):
            checks.check_template(self.errors, value, scope, path, self.at(node, "timeout-minutes"))
            return value.strip()
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 < value <= MAX_TIMEOUT_MINUTES):
            self.add(f"'timeout-minutes' must be a number above 0 and at most {MAX_TIMEOUT_MINUTES}",
                     value_position(node, "timeout-minutes"), path)
            return None
        return float(value)

    def _condition(self, node: Mapping[Any, Any], path: str, scope: Scope) -> str | None:
        value = node.get("if")
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return scalar_text(value)
        if not isinstance(value, str) or not value.strip():
            self.add("'if' must be a non-empty expression", value_position(node, "if"), path)
            return None
        checks.check_condition(self.errors, value, scope, f"{path}.if", self.at(node, "if"))
        return value.strip()

    def _defaults(self, node: Mapping[Any, Any], path: str, outer: RunDefaults) -> RunDefaults:
        """Read `defaults.run` of the workflow or a job; what it leaves unset comes from `outer`."""
        raw = node.get("defaults")
        if raw is None:
            return outer
        defaults_path = f"{path}.defaults" if path else "defaults"
        if not isinstance(raw, Mapping):
            self.add("'defaults' must be a mapping with 'run'", value_position(node, "defaults"),
                     path or None)
            return outer
        check_keys(self.errors, raw, DEFAULTS_KEYS, defaults_path)
        run = raw.get("run")
        if run is None:
            return outer
        if not isinstance(run, Mapping):
            self.add("'run' must be a mapping with 'shell' or 'working-directory'",
                     value_position(raw, "run"), defaults_path)
            return outer
        check_keys(self.errors, run, DEFAULTS_RUN_KEYS, f"{defaults_path}.run")
        shell = self._shell(run, f"{defaults_path}.run")
        directory = self._string(run, "working-directory", f"{defaults_path}.run")
        if directory is not None:
            self._check_directory(run, directory, f"{defaults_path}.run")
        return RunDefaults(shell=shell if shell is not None else outer.shell,
                           working_directory=directory if directory is not None else outer.working_directory)

    def _shell(self, node: Mapping[Any, Any], path: str) -> str | None:
        """Check `shell`; return it stripped, or None when absent or invalid."""
        if "shell" not in node:
            return None
        value = node.get("shell")
        problem = shells.check(value)
        if problem is not None:
            self.add(problem, value_position(node, "shell"), path)
            return None
        assert isinstance(value, str)
        return value.strip()

    def _check_directory(self, node: Mapping[Any, Any], directory: str, path: str) -> None:
        if "${{" in directory:
            return
        normalised = posixpath.normpath(directory)
        if directory.startswith("/") or normalised == ".." or normalised.startswith("../"):
            self.add(f"'working-directory' {directory!r} must be a path inside the workspace, relative to it",
                     value_position(node, "working-directory"), path)

    def _concurrency(self, node: Mapping[Any, Any], path: str, contexts: tuple[str, ...],
                     scope: Scope | None = None) -> Concurrency | None:
        raw = node.get("concurrency")
        if raw is None:
            return None
        scope = scope or self._scope(contexts)
        where = f"{path}.concurrency" if path else "concurrency"
        if isinstance(raw, str):
            checks.check_template(self.errors, raw, scope, where, self.at(node, "concurrency"))
            return Concurrency(group=raw)
        if not isinstance(raw, Mapping):
            self.add("'concurrency' must be a group name or a mapping with 'group' and "
                     "'cancel-in-progress'", value_position(node, "concurrency"), path or None)
            return None
        check_keys(self.errors, raw, CONCURRENCY_KEYS, where)
        group = self._string(raw, "group", where)
        if group is None:
            self.add("missing required key 'group'", node_position(raw), where)
            return None
        checks.check_template(self.errors, group, scope, where, self.at(raw, "group"))
        cancel = self._bool_or_expression(raw, "cancel-in-progress", where, scope)
        queue = raw.get("queue", "all")
        if queue not in CONCURRENCY_QUEUES:
            self.add(f"invalid 'queue' value {queue!r}: use 'all' (run every pending job in "
                     "order) or 'latest' (run only the newest)", value_position(raw, "queue"),
                     f"{where}.queue")
            queue = "all"
        return Concurrency(group=group, cancel_in_progress=cancel, queue=queue)

    # -- jobs -----------------------------------------------------------------

    def _job(self, job_id: str, raw: Any, jobs_node: Mapping[Any, Any],
             workflow_env: dict[str, str]) -> JobDefinition | None:
        path = f"jobs.{job_id}"
        position = key_position(jobs_node, job_id)
        if not JOB_ID.match(job_id):
            self.add("invalid job id: start with a letter or '_', then letters, digits, '-' or '_'",
                     position, path)
        if not isinstance(raw, Mapping):
            self.add("a job must be a mapping with 'steps'", value_position(jobs_node, job_id), path)
            return None
        check_keys(self.errors, raw, JOB_KEYS, path, UNSUPPORTED_JOB_KEYS)

        needs = self._string_list(raw, "needs", path)
        strategy = parse_strategy(self.errors, raw, path)
        matrix_keys = strategy.matrix.keys if strategy.matrix is not None else None
        secrets: set[str] = set()
        variables: set[str] = set()

        matrix_unchecked = strategy.matrix is None and strategy.matrix_declared

        def scope(contexts: tuple[str, ...], **extra: Any) -> Scope:
            return self._scope(contexts, matrix_keys=matrix_keys, matrix_unchecked=matrix_unchecked,
                               needs=needs, secrets=secrets, variables=variables, **extra)

        plan_scope = scope(checks.PLAN_CONTEXTS)
        name = self._string(raw, "name", path)
        if name is not None:
            checks.check_template(self.errors, name, plan_scope, f"{path}.name", self.at(raw, "name"))
        runs_on = self._runs_on(raw, path, plan_scope)
        condition = self._condition(raw, path, scope(checks.JOB_IF_CONTEXTS))
        env = self._env(raw, path, checks.JOB_ENV_CONTEXTS, step_scope=scope(checks.JOB_ENV_CONTEXTS))
        timeout = self._timeout(raw, path, plan_scope)
        continue_on_error = self._bool_or_expression(raw, "continue-on-error", path, plan_scope)
        environment = self._environment(raw, path, plan_scope)
        concurrency = self._concurrency(raw, path, checks.PLAN_CONTEXTS, plan_scope)
        run_defaults = self._defaults(raw, path, self.run_defaults)

        # Environment variables whose values event text can reach, layer by layer.
        env_scope = scope(checks.JOB_ENV_CONTEXTS)
        env_taint = dict(self.workflow_env_taint)
        env_taint.update({key: checks.template_is_tainted(value, env_scope) for key, value in env.items()})

        steps = self._steps(raw, path, scope, env_taint, run_defaults)
        outputs = self._outputs(raw, path, scope(checks.STEP_CONTEXTS, step_ids=tuple(
            step.id for step in steps if step.id is not None)))
        # Workflow-level env values are evaluated with each job; their secrets and variables count too.
        workflow_scope = scope(checks.WORKFLOW_ENV_CONTEXTS)
        for value in workflow_env.values():
            checks.check_template(Collector(self.errors.file), value, workflow_scope, "", lambda _: None)
        return JobDefinition(
            id=job_id,
            name=name if name is not None else job_id,
            has_name=name is not None,
            steps=steps,
            needs=needs,
            runs_on=runs_on,
            env=env,
            timeout_minutes=timeout if timeout is not None else DEFAULT_TIMEOUT_MINUTES,
            retry=parse_retry(
                raw.get("retry"),
                lambda message: self.add(message, value_position(raw, "retry"), path),
            ),
            line=position.line if position else None,
            condition=condition,
            continue_on_error=continue_on_error,
            environment=environment,
            concurrency=concurrency,
            strategy=strategy,
            working_directory=run_defaults.working_directory,
            secrets=tuple(sorted(secrets)),
            variables=tuple(sorted(variables)),
            outputs=outputs,
            positions=self._plan_positions(raw, position),
        )

    @staticmethod
    def _plan_positions(raw: Mapping[Any, Any], job_position: Position | None) -> dict[str, tuple[int, int]]:
        positions = {"": (job_position.line, job_position.column)} if job_position else {}
        for key in PLANNED_JOB_KEYS:
            at = value_position(raw, key)
            if at is not None:
                positions[key] = (at.line, at.column)
        return positions

    def _outputs(self, raw: Mapping[Any, Any], path: str, scope: Scope) -> dict[str, str]:
        """Check `outputs`, a mapping of names to templates evaluated when the job's steps end."""
        node = raw.get("outputs")
        if node is None:
            return {}
        where = f"{path}.outputs"
        if not isinstance(node, Mapping):
            self.add("'outputs' must be a mapping of output names to values", value_position(raw, "outputs"),
                     path)
            return {}
        outputs: dict[str, str] = {}
        for name, value in node.items():
            if not isinstance(name, str) or not OUTPUT_NAME.match(name):
                self.add(f"invalid output name {name!r}: start with a letter or '_', then letters, digits, "
                         "'-' or '_'", key_position(node, name), where)
                continue
            text = scalar_text(value)
            if text is None:
                self.add(f"output {name!r} must be a string", value_position(node, name), where)
                continue
            checks.check_template(self.errors, text, scope, f"{where}.{name}", self.at(node, name))
            outputs[name] = text
        return outputs

    def _string_list(self, node: Mapping[Any, Any], key: str, path: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.add(f"{key!r} must be a string or a list of strings", value_position(node, key), path)
            return ()
        return tuple(items)

    def _runs_on(self, raw: Mapping[Any, Any], path: str, scope: Scope) -> tuple[str, ...]:
        value = raw.get("runs-on")
        if isinstance(value, Mapping):
            self.add("'runs-on' must be a label or a list of labels (runner groups are not supported)",
                     value_position(raw, "runs-on"), path)
            return ()
        labels = self._string_list(raw, "runs-on", path)
        for index, label in enumerate(labels):
            container, key = (value, index) if isinstance(value, list) else (raw, "runs-on")
            checks.check_template(self.errors, label, scope, f"{path}.runs-on", self.at(container, key))
        return tuple(label for label in labels if not HOSTED_RUNNER.match(label))

    def _environment(self, raw: Mapping[Any, Any], path: str, scope: Scope) -> Environment | None:
        value = raw.get("environment")
        if value is None:
            return None
        where = f"{path}.environment"
        if isinstance(value, str):
            checks.check_template(self.errors, value, scope, where, self.at(raw, "environment"))
            return Environment(name=value)
        if not isinstance(value, Mapping):
            self.add("'environment' must be a name or a mapping with 'name' and 'url'",
                     value_position(raw, "environment"), path)
            return None
        check_keys(self.errors, value, ENVIRONMENT_KEYS, where)
        name = self._string(value, "name", where)
        if name is None:
            if not misspelled(value, "name", ENVIRONMENT_KEYS):
                self.add("missing required key 'name'", node_position(value), where)
            return None
        checks.check_template(self.errors, name, scope, where, self.at(value, "name"))
        url = self._string(value, "url", where)
        if url is not None:
            checks.check_template(self.errors, url, scope, where, self.at(value, "url"))
        return Environment(name=name, url=url)

    # -- steps ----------------------------------------------------------------

    def _steps(self, job: Mapping[Any, Any], path: str, scope: Any,
               env_taint: dict[str, bool], run_defaults: RunDefaults) -> tuple[Step, ...]:
        raw = job.get("steps")
        if raw is None:
            if not misspelled(job, "steps", JOB_KEYS):
                self.add("missing required key 'steps'", node_position(job), path)
            return ()
        if not isinstance(raw, list) or not raw:
            self.add("'steps' must be a non-empty list", value_position(job, "steps"), path)
            return ()
        if len(raw) > MAX_STEPS:
            self.add(f"a job may have at most {MAX_STEPS} steps", value_position(job, "steps"), path)
        steps: list[Step] = []
        step_ids: list[str] = []
        for index, item in enumerate(raw):
            step_path = f"{path}.steps[{index}]"
            position = item_position(raw, index)
            if not isinstance(item, Mapping):
                self.add("each step must be a mapping with a 'run' key", position, step_path)
                continue
            earlier_ids = tuple(step_ids)
            step_id = self._step_id(item, step_path, earlier_ids)
            # A rejected step keeps its id, so later references to it get no follow-on error.
            if step_id is not None:
                step_ids.append(step_id)
            step = self._step(item, step_path, position, scope, env_taint, step_id, earlier_ids,
                              run_defaults)
            if step is not None:
                steps.append(step)
        return tuple(steps)

    def _step_id(self, item: Mapping[Any, Any], path: str, earlier: tuple[str, ...]) -> str | None:
        step_id = item.get("id")
        if step_id is None:
            return None
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            self.add("invalid step id: start with a letter or '_', then letters, digits, '-' or '_'",
                     value_position(item, "id"), path)
            return None
        if step_id in earlier:
            self.add(f"duplicate step id {step_id!r}: ids must be unique within a job",
                     value_position(item, "id"), path)
            return None
        return step_id

    def _step(self, item: Mapping[Any, Any], path: str, position: Position | None, scope: Any,
              env_taint: dict[str, bool], step_id: str | None, earlier_ids: tuple[str, ...],
              run_defaults: RunDefaults) -> Step | None:
        check_keys(self.errors, item, STEP_KEYS, path)
        shell = self._shell(item, path)
        run = item.get("run")
        uses = item.get("uses")
        if run is None and uses is None:
            if not (misspelled(item, "run", STEP_KEYS) or misspelled(item, "uses", STEP_KEYS)):
                self.add("missing required key 'run'", position, path)
            return None
        if run is not None and uses is not None:
            self.add("a step has either 'run' or 'uses', not both", key_position(item, "uses"), path)
            return None
        if uses is not None:
            checkout = self._checkout(item, uses, path)
            if checkout is False:
                return None
            run = checkout or None
        elif not isinstance(run, str) or not run.strip():
            self.add("'run' must be a non-empty string", value_position(item, "run"), path)
            return None
        elif "with" in item:
            self.add("'with' only goes with 'uses'", key_position(item, "with"), path)

        step_scope = scope(checks.STEP_CONTEXTS, step_ids=earlier_ids)
        step_scope.env = env_taint
        name = self._string(item, "name", path)
        if name is not None:
            checks.check_template(self.errors, name, step_scope, f"{path}.name", self.at(item, "name"))
        env = self._env(item, path, checks.STEP_CONTEXTS, step_scope=step_scope)
        # The script also gets the step's own variables.
        script_scope = scope(checks.STEP_CONTEXTS, step_ids=earlier_ids)
        script_scope.env = {**env_taint, **{key: checks.template_is_tainted(value, step_scope)
                                            for key, value in env.items()}}
        if isinstance(run, str) and uses is None:
            checks.check_template(self.errors, run, script_scope, f"{path}.run", self.at(item, "run"),
                                  script=True)
        condition = self._condition(item, path, scope(checks.STEP_IF_CONTEXTS, step_ids=earlier_ids))
        directory = self._string(item, "working-directory", path)
        if directory is not None:
            self._check_directory(item, directory, path)
            checks.check_template(self.errors, directory, step_scope, f"{path}.working-directory",
                                  self.at(item, "working-directory"))
        return Step(
            run=run if isinstance(run, str) else None,
            uses=uses if isinstance(uses, str) else None,
            name=name,
            id=step_id,
            env=env,
            condition=condition,
            working_directory=directory,
            continue_on_error=self._bool_or_expression(item, "continue-on-error", path, step_scope),
            timeout_minutes=self._timeout(item, path, step_scope),
            line=position.line if position else None,
            shell=self._step_shell(shell, run_defaults) if uses is None else None,
        )

    def _step_shell(self, shell: str | None, run_defaults: RunDefaults) -> str | None:
        """Return the shell a `run:` step gets, or None for Mini-Jenkin's default (bash with pipefail)."""
        chosen = shell if shell is not None else run_defaults.shell
        if chosen is None:
            return shells.WORKFLOW_DEFAULT if self.workflow else None
        return None if shells.template(chosen) == shells.BASH else chosen

    def _checkout(self, item: Mapping[Any, Any], uses: Any, path: str) -> str | bool:
        """Check an actions/checkout step; return False when invalid, else the script it runs.

        The workspace already contains the commit, so the script is empty ("")
        unless `submodules` or `lfs` ask for more.
        """
        if not isinstance(uses, str) or not CHECKOUT.match(uses.strip()):
            self.add(f"the action {uses!r} cannot run here: Mini-Jenkin runs 'run:' steps only, and treats "
                     "actions/checkout as already done; replace this step with a 'run:' step that does "
                     "the same", value_position(item, "uses"), path)
            return False
        with_inputs = item.get("with")
        if with_inputs is None:
            return ""
        if not isinstance(with_inputs, Mapping):
            self.add("'with' must be a mapping of action inputs", value_position(item, "with"), path)
            return False
        ok = True
        commands: list[str] = []
        for key, value in with_inputs.items():
            if key in ("submodules", "lfs"):
                # GitHub passes inputs as strings, so 'true' is true. Other
                # types (a number, a list) are invalid.
                setting: Any = None
                if isinstance(value, bool):
                    setting = value
                elif isinstance(value, str):
                    setting = {"true": True, "false": False}.get(value.strip().lower(),
                                                               value.strip().lower())
                command = None
                if key == "submodules" and (setting is True or setting == "recursive"):
                    command = CHECKOUT_SUBMODULES[setting]
                elif key == "lfs" and setting is True:
                    command = CHECKOUT_LFS
                if command is not None:
                    commands.append(command)
                elif setting is not False:
                    choices = "true, false or recursive" if key == "submodules" else "true or false"
                    self.add(f"actions/checkout input {key!r} must be {choices}, got {value!r}",
                             value_position(with_inputs, key), f"{path}.with")
                    ok = False
            elif key not in CHECKOUT_INPUTS:
                self.add(f"actions/checkout input {key!r} is not supported: the workspace is always a full "
                         "clone of the run's commit at $GITHUB_WORKSPACE", key_position(with_inputs, key),
                         f"{path}.with")
                ok = False
        return "\n".join(commands) if ok else False

    # -- graph checks ---------------------------------------------------------

    def _check_job_count(self, jobs: dict[str, JobDefinition], jobs_node: Mapping[Any, Any]) -> None:
        """Report a file with more than MAX_JOBS jobs once its matrices are expanded."""
        count = 0
        for job_id in jobs_node:
            job = jobs.get(str(job_id))
            matrix = job.strategy.matrix if job is not None else None
            count += len(expand_matrix(matrix)) if matrix is not None else 1
        if count > MAX_JOBS:
            self.add(f"the file has {count} jobs, matrix combinations included; the limit is {MAX_JOBS}",
                     value_position(self.document, "jobs"))

    def _check_needs(self, jobs: dict[str, JobDefinition], jobs_node: Mapping[Any, Any]) -> None:
        for job in jobs.values():
            raw_job = jobs_node.get(job.id)
            for need in job.needs:
                if need not in jobs:
                    hint = suggestion(need, list(jobs))
                    if "did you mean" not in hint:
                        hint = ""
                    self.add(f"'needs' names unknown job {need!r}{hint}", value_position(raw_job, "needs"),
                             f"jobs.{job.id}")
                elif need == job.id:
                    self.add("a job cannot need itself", value_position(raw_job, "needs"), f"jobs.{job.id}")
        cycle = _find_cycle(jobs)
        if cycle:
            first = jobs[cycle[0]]
            self.add(f"'needs' forms a cycle: {' -> '.join(cycle + [cycle[0]])}",
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


def parse_source(data: bytes | str, *, file: str, workflow: bool = False) -> ParseResult:
    """Load and validate a file without raising for validation errors.

    YAML-level problems (syntax, size, aliases) come back as the only error.
    """
    try:
        document, text = load_yaml_source(data, file=file)
    except PipelineError as exc:
        return ParseResult(file, None, None, (exc,))
    errors = Collector(file, text)
    if document is None:
        errors.add("the file is empty; it needs a 'jobs' key", Position(1, 1))
        return ParseResult(file, None, None, tuple(errors.errors))
    if not isinstance(document, Mapping):
        position = node_position(document) or Position(1, 1)
        errors.add("the file must be a mapping with a 'jobs' key", position)
        return ParseResult(file, None, None, tuple(errors.errors))

    parser = _FileParser(errors, document, workflow=workflow)
    pipeline = parser.parse()
    trigger_errors = [error for error in errors.errors if (error.path or "").startswith("on")]
    triggers = parser.triggers if not trigger_errors else None
    if errors.errors:
        errors.errors.sort(key=lambda error: (error.line or 0, error.column or 0))
        return ParseResult(file, None, triggers, tuple(errors.errors))
    return ParseResult(file, pipeline, triggers, ())


def parse_pipeline(data: bytes | str, *, file: str, workflow: bool = False) -> Pipeline:
    """Load and validate a pipeline file; raise PipelineValidationError listing every problem."""
    result = parse_source(data, file=file, workflow=workflow)
    if result.pipeline is None:
        raise PipelineValidationError(list(result.errors))
    return result.pipeline
