"""Pipeline semantics inside a job: conditions, expressions, step results and command files.

The executor runs processes; this module decides what they run. It builds
the expression contexts from the claimed job (run facts, matrix values,
inputs, needed jobs' results, secrets), evaluates job and step conditions,
renders scripts and environment values, and reads the files GitHub Actions
scripts write to (`$GITHUB_ENV`, `$GITHUB_OUTPUT`, `$GITHUB_PATH`).

Scripts only ever contain `${{ }}` values the parser accepted for shell
text; event text reaches steps as environment variables.
"""

from __future__ import annotations

import platform
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minijenkin.pipeline import shells
from minijenkin.pipeline.events import Event, github_context, minijenkin_context
from minijenkin.pipeline.expressions import (
    ExpressionError,
    Scope,
    evaluate_condition,
    evaluate_value,
    is_truthy,
    parse_condition,
    render_text,
    uses_status_function,
)
from minijenkin.pipeline.plan import STRATEGY_DEFAULT
from minijenkin.queue.client import ClaimedJob

# Words for a needed job's result in a skip reason, e.g. "needed job lint failed".
_UNMET_RESULTS = {"failure": "failed", "cancelled": "was cancelled", "skipped": "was skipped"}

# Our job statuses as GitHub Actions names job results.
RESULTS = {"succeeded": "success", "failed": "failure", "timed_out": "failure", "cancelled": "cancelled",
           "skipped": "skipped"}
MAX_COMMAND_FILE_BYTES = 1024 * 1024


class StepError(Exception):
    """A step's fields could not be evaluated; the message names the field and the reason."""


def runner_arch() -> str:
    machine = platform.machine().lower()
    names = {"x86_64": "X64", "amd64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}
    return names.get(machine, machine.upper())


@dataclass(frozen=True)
class NeedsSummary:
    """Results and outputs of the jobs a job needs, by job id, and what they mean for status functions."""

    results: dict[str, dict[str, Any]]
    succeeded: bool
    failed: bool
    cancelled: bool

    def describe_unmet(self) -> str | None:
        """Name each needed job that did not succeed, e.g. "needed job lint failed", or return None."""
        parts = [f"needed job {job_id} {_UNMET_RESULTS[entry['result']]}"
                 for job_id, entry in self.results.items() if entry["result"] != "success"]
        return ", ".join(parts) or None


def implies_success(condition: str) -> bool:
    """Whether an `if:` value has no status function, so `success() && (...)` is implied."""
    return not uses_status_function(parse_condition(condition))


def summarise_needs(job: ClaimedJob) -> NeedsSummary:
    """Aggregate the claim context's `needs` statuses per needed job id (matrix jobs together).

    Outputs of the jobs of one id are merged in the order the jobs finished,
    so for a matrix the last one's value of an output wins, as on GitHub.
    """
    statuses: Mapping[str, str] = job.context.get("needs") or {}
    outputs_by_key: dict[str, dict[str, str]] = {
        key: dict(outputs or {}) for key, outputs in job.context.get("needs_outputs") or []}
    finish_order = list(outputs_by_key)
    groups: Mapping[str, list[str]] = job.spec.get("needs") or {}
    tolerated = set(job.spec.get("tolerated_needs") or [])
    if not groups:
        # A graph without our spec fields (built by hand): each needed key is its own job.
        groups = {key: [key] for key in statuses}

    results: dict[str, dict[str, str]] = {}
    succeeded, failed, cancelled = True, False, False
    for job_id, keys in groups.items():
        outcomes = []
        for key in keys:
            status = statuses.get(key, "skipped")
            if status in ("failed", "timed_out") and key in tolerated:
                status = "succeeded"
            outcomes.append(RESULTS.get(status, "failure"))
        if "failure" in outcomes:
            result = "failure"
        elif "cancelled" in outcomes:
            result = "cancelled"
        elif "skipped" in outcomes:
            result = "skipped"
        else:
            result = "success"
        outputs: dict[str, str] = {}
        for key in sorted((key for key in keys if key in outputs_by_key), key=finish_order.index):
            outputs.update(outputs_by_key[key])
        results[job_id] = {"result": result, "outputs": outputs}
        succeeded = succeeded and result == "success"
        failed = failed or result == "failure"
        cancelled = cancelled or result == "cancelled"
    # Indirect ancestors, read only for conditions that call failure().
    ancestors: Mapping[str, str] = job.context.get("ancestors") or {}
    if any(status in ("failed", "timed_out") for status in ancestors.values()):
        failed, succeeded = True, False
    return NeedsSummary(results, succeeded, failed, cancelled)


@dataclass
class StepResult:
    outcome: str  # success, failure, skipped
    conclusion: str
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedStep:
    """A step with every expression evaluated, ready to run (or to skip)."""

    index: int
    name: str
    # Reason the step does not run, e.g. "an earlier step failed", or None when it runs.
    skip_reason: str | None
    script: str | None
    uses: str | None
    env: dict[str, str]
    cwd: Path
    continue_on_error: bool
    timeout_seconds: float | None
    id: str | None
    # The shell's command template, with {0} for the script's path.
    shell: str = shells.BASH

    @property
    def run_it(self) -> bool:
        return self.skip_reason is None


class JobRun:
    """The state of one job attempt's steps: contexts, results so far, variables steps exported."""

    def __init__(self, job: ClaimedJob, *, workspace: Path, temp: Path, worker_name: str,
                 on_unknown_secret: Callable[[str], None]) -> None:
        self.job = job
        self.workspace = workspace
        self.event = Event.from_context(job.run, job.repo)
        self.needs = summarise_needs(job)
        self.secrets: Mapping[str, str] = job.context.get("secrets") or {}
        self.on_unknown_secret = on_unknown_secret
        self.reported_secrets: set[str] = set()
        self.steps: dict[str, StepResult] = {}
        self.failed = False
        self.exported_env: dict[str, str] = {}
        self.path_prefix: list[str] = []
        self.job_env: dict[str, str] = {}
        self.runner = {"os": platform.system() or "Linux", "arch": runner_arch(), "name": worker_name,
                       "temp": str(temp)}

    # -- contexts --------------------------------------------------------------

    def _read(self, path: tuple[str, ...], value: Any) -> None:
        if len(path) == 2 and path[0].lower() == "secrets" and value is None:
            name = path[1]
            if name not in self.reported_secrets:
                self.reported_secrets.add(name)
                self.on_unknown_secret(name)

    def contexts(self, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        spec = self.job.spec
        return {
            "github": github_context(self.event, job=str(spec.get("job") or self.job.key),
                                     workspace=str(self.workspace), attempt=self.job.attempt,
                                     workflow=str(spec.get("workflow") or "")),
            "minijenkin": minijenkin_context(self.event),
            "inputs": dict(spec.get("inputs") or {}),
            "vars": dict(spec.get("vars") or {}),
            "matrix": dict(spec.get("matrix") or {}),
            "strategy": dict((spec.get("strategy") or {}).get("context") or STRATEGY_DEFAULT),
            "needs": self.needs.results,
            "secrets": dict(self.secrets),
            "env": dict(env or {}),
            "steps": {key: {"outcome": result.outcome, "conclusion": result.conclusion,
                            "outputs": dict(result.outputs)} for key, result in self.steps.items()},
            "job": {"status": "failure" if self.failed else "success"},
            "runner": dict(self.runner),
        }

    def job_scope(self) -> Scope:
        return Scope(contexts=self.contexts(), succeeded=self.needs.succeeded, failed=self.needs.failed,
                     was_cancelled=self.needs.cancelled, on_read=self._read)

    def step_scope(self, env: Mapping[str, str]) -> Scope:
        return Scope(contexts=self.contexts(env), succeeded=not self.failed, failed=self.failed,
                     on_read=self._read)

    # -- job level -------------------------------------------------------------

    def condition_holds(self) -> bool:
        """Evaluate the job's `if:` (with success() implied); raise ExpressionError."""
        assert self.job.condition is not None
        return evaluate_condition(self.job.condition, self.job_scope())

    def condition_skip_reason(self) -> str:
        """Explain a false job `if:` by unmet needs under the implied success(), else by the condition."""
        assert self.job.condition is not None
        if implies_success(self.job.condition):
            unmet = self.needs.describe_unmet()
            if unmet is not None:
                return f"skipped: {unmet}"
        return f"skipped: the condition {self.job.condition!r} is false"

    def evaluate_job_env(self) -> dict[str, str]:
        """The pipeline's and job's `env`, evaluated once for the whole job."""
        raw = self.job.spec.get("env") or {}
        scope = self.job_scope()
        env: dict[str, str] = {}
        for name, value in raw.items():
            try:
                env[str(name)] = render_text(str(value), scope)
            except ExpressionError as exc:
                raise StepError(f"env.{name}: {exc.message}") from exc
        self.job_env = env
        return env

    # -- steps -----------------------------------------------------------------

    def current_env(self) -> dict[str, str]:
        return {**self.job_env, **self.exported_env}

    def prepare(self, index: int, step: Mapping[str, Any]) -> PreparedStep:
        """Evaluate a step's fields in order: condition, env, name, script, directory, limits."""
        env = self.current_env()
        scope = self.step_scope(env)
        label = f"steps[{index}]"
        condition = step.get("if")
        try:
            run_it = (not self.failed) if condition is None else evaluate_condition(str(condition), scope)
            skip_reason = None
            if not run_it:
                # Only the implied success() can skip a step without a status function.
                if self.failed and (condition is None or implies_success(str(condition))):
                    skip_reason = "an earlier step failed"
                else:
                    skip_reason = "its condition is false"
        except ExpressionError as exc:
            raise StepError(f"{label}.if: {exc.message}") from exc

        step_env: dict[str, str] = {}
        for name, value in (step.get("env") or {}).items():
            try:
                step_env[str(name)] = render_text(str(value), scope)
            except ExpressionError as exc:
                raise StepError(f"{label}.env.{name}: {exc.message}") from exc
        scope = self.step_scope({**env, **step_env})

        name = self._text(step.get("name") or f"step {index + 1}", scope, f"{label}.name")
        script = None
        if step.get("run") is not None and run_it:
            script = self._text(str(step["run"]), scope, f"{label}.run")
        # defaults.run applies to `run:` steps only, as on GitHub: a checkout
        # step (its submodules and lfs commands) works in the workspace.
        default_directory = None if step.get("uses") else self.job.spec.get("working_directory")
        directory = step.get("working_directory") or default_directory
        cwd = self.workspace
        if directory and run_it:
            cwd = self._directory(self._text(str(directory), scope, f"{label}.working-directory"), label)

        continue_on_error = step.get("continue_on_error", False)
        if isinstance(continue_on_error, str):
            continue_on_error = is_truthy(self._value(continue_on_error, scope, f"{label}.continue-on-error"))
        timeout = step.get("timeout_minutes")
        if isinstance(timeout, str):
            timeout = self._value(timeout, scope, f"{label}.timeout-minutes")
        timeout_seconds = None
        if timeout is not None:
            try:
                timeout_seconds = float(timeout) * 60
            except (TypeError, ValueError):
                raise StepError(f"{label}.timeout-minutes: {timeout!r} is not a number") from None
            if not timeout_seconds > 0:
                raise StepError(f"{label}.timeout-minutes: {timeout!r} must be above 0")

        return PreparedStep(index=index, name=name, skip_reason=skip_reason, script=script,
                            uses=step.get("uses"), env={**env, **step_env}, cwd=cwd,
                            continue_on_error=bool(continue_on_error), timeout_seconds=timeout_seconds,
                            id=step.get("id"), shell=shells.template(step.get("shell")))

    def _text(self, text: str, scope: Scope, label: str) -> str:
        try:
            return render_text(text, scope)
        except ExpressionError as exc:
            raise StepError(f"{label}: {exc.message}") from exc

    def _value(self, text: str, scope: Scope, label: str) -> Any:
        try:
            return evaluate_value(text, scope)
        except ExpressionError as exc:
            raise StepError(f"{label}: {exc.message}") from exc

    def _directory(self, directory: str, label: str) -> Path:
        relative = posixpath.normpath(directory)
        if directory.startswith("/"):
            # An absolute path, such as `${{ github.workspace }}/app` in a
            # workflow written for GitHub, is allowed when it leads into the workspace.
            path = Path(relative).resolve()
        elif relative == ".." or relative.startswith("../"):
            raise StepError(f"{label}.working-directory: {directory!r} is outside the workspace")
        else:
            path = (self.workspace / relative).resolve()
        if not path.is_relative_to(self.workspace.resolve()):
            raise StepError(f"{label}.working-directory: {directory!r} leads outside the workspace")
        if not path.is_dir():
            raise StepError(f"{label}.working-directory: {directory!r} is not a directory in the workspace")
        return path

    def record(self, step_id: str | None, outcome: str, *, continue_on_error: bool = False,
               outputs: dict[str, str] | None = None) -> None:
        """Remember a step's result; a failure without continue-on-error fails the job."""
        conclusion = "success" if outcome == "failure" and continue_on_error else outcome
        if outcome == "failure" and not continue_on_error:
            self.failed = True
        if step_id:
            self.steps[step_id] = StepResult(outcome, conclusion, outputs or {})

    def path_variable(self, base_path: str) -> str:
        return ":".join([*reversed(self.path_prefix), base_path]) if self.path_prefix else base_path

    # -- command files ---------------------------------------------------------

    def apply_command_files(self, files: CommandFiles) -> tuple[dict[str, str], list[str]]:
        """Read what the step wrote to $GITHUB_ENV, $GITHUB_PATH and $GITHUB_OUTPUT.

        Returns the step's outputs and a list of problems to show in the log.
        """
        problems: list[str] = []
        for variable, path in (("$GITHUB_ENV", files.env), ("$GITHUB_PATH", files.path),
                               ("$GITHUB_OUTPUT", files.output)):
            if files.size(path) > MAX_COMMAND_FILE_BYTES:
                problems.append(f"{variable}: the file is larger than {MAX_COMMAND_FILE_BYTES} bytes; "
                                "only its first bytes are read, so later values are lost")
        exported, env_problems = parse_key_values(files.read(files.env))
        problems += [f"$GITHUB_ENV: {problem}" for problem in env_problems]
        for name, value in exported.items():
            # No process can receive a NUL byte in its environment.
            if "\0" in name or "\0" in value:
                problems.append(f"$GITHUB_ENV: {name.replace(chr(0), '?')}: contains a NUL byte, which an "
                                "environment variable cannot hold; it is not set")
            else:
                self.exported_env[name] = value
        for line in files.read(files.path).splitlines():
            if "\0" in line:
                problems.append("$GITHUB_PATH: a line contains a NUL byte, which PATH cannot hold; "
                                "it is not added")
            elif line.strip():
                self.path_prefix.append(line.strip())
        outputs, output_problems = parse_key_values(files.read(files.output))
        problems += [f"$GITHUB_OUTPUT: {problem}" for problem in output_problems]
        return outputs, problems


@dataclass(frozen=True)
class CommandFiles:
    """The per-step files behind $GITHUB_ENV, $GITHUB_OUTPUT, $GITHUB_PATH and $GITHUB_STEP_SUMMARY."""

    env: Path
    output: Path
    path: Path
    summary: Path

    @classmethod
    def create(cls, folder: Path, index: int) -> CommandFiles:
        folder.mkdir(parents=True, exist_ok=True)
        files = cls(env=folder / f"{index}.env", output=folder / f"{index}.output",
                    path=folder / f"{index}.path", summary=folder / f"{index}.summary")
        for item in (files.env, files.output, files.path, files.summary):
            item.write_bytes(b"")
        return files

    def variables(self) -> dict[str, str]:
        return {"GITHUB_ENV": str(self.env), "GITHUB_OUTPUT": str(self.output), "GITHUB_PATH": str(self.path),
                "GITHUB_STEP_SUMMARY": str(self.summary)}

    @staticmethod
    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def read(path: Path) -> str:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_COMMAND_FILE_BYTES)
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace")


def parse_key_values(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse `NAME=value` lines and `NAME<<DELIMITER` blocks, as GitHub Actions' runner does.

    As in the runner (actions/runner FileCommandManager.cs), a name is any
    non-empty text, so outputs such as `cache-hit` work, and a line is a
    heredoc when its first `<<` comes before its first `=`. Lines end at
    "\n" only: a form feed or U+2028 inside a value stays in the value.
    A "\r" before the "\n" is dropped, so files with CRLF line ends work.
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        equals = line.find("=")
        heredoc = line.find("<<")
        if heredoc >= 0 and (equals < 0 or heredoc < equals):
            name, delimiter = line[:heredoc], line[heredoc + 2:]
            if not name or not delimiter:
                problems.append(f"invalid line {line[:80]!r}: expected NAME<<DELIMITER with a name "
                                "and a delimiter")
                continue
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                problems.append(f"{name}: the closing delimiter {delimiter!r} is missing")
                break
            index += 1
            values[name] = "\n".join(body)
            continue
        name, separator, value = line.partition("=")
        if not separator or not name:
            problems.append(f"invalid line {line[:80]!r}: expected NAME=value or NAME<<DELIMITER")
            continue
        values[name] = value
    return values, problems
