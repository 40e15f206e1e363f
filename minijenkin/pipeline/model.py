"""The validated pipeline, as plain frozen dataclasses.

String fields marked "template" may contain `${{ }}` expressions, kept as
written. The plan job evaluates job names, labels and environments when it
expands the graph; the worker evaluates scripts, environment values and
conditions when it runs the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minijenkin.pipeline.matrix import Strategy
from minijenkin.pipeline.triggers import Triggers

DEFAULT_TIMEOUT_MINUTES = 360


@dataclass(frozen=True)
class Step:
    # A shell script (template). For `uses: actions/checkout`, None, or the
    # commands its `submodules` and `lfs` inputs ask for.
    run: str | None = None
    name: str | None = None  # template
    env: dict[str, str] = field(default_factory=dict)  # values are templates
    line: int | None = None
    id: str | None = None
    uses: str | None = None
    condition: str | None = None  # the `if:` expression
    working_directory: str | None = None  # template
    # A boolean, or a `${{ }}` template evaluated by the worker.
    continue_on_error: bool | str = False
    # Minutes, or a `${{ }}` template evaluated by the worker.
    timeout_minutes: float | str | None = None
    # The `shell` keyword or template (minijenkin.pipeline.shells), defaults
    # applied; None runs the script with bash and pipefail.
    shell: str | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.uses:
            return f"Run {self.uses}"
        script = (self.run or "").strip()
        first_line = script.splitlines()[0] if script else ""
        shown = first_line[:60]
        # Never cut an expression in half: the name is rendered like a template.
        opening = shown.rfind("${{")
        if opening >= 0 and "}}" not in shown[opening:]:
            shown = shown[:opening].rstrip()
        return f"Run {shown}"


@dataclass(frozen=True)
class Environment:
    name: str  # template
    url: str | None = None  # template


@dataclass(frozen=True)
class Concurrency:
    group: str  # template
    cancel_in_progress: bool | str = False
    # Pending jobs of the group: "all" run in order, "latest" keeps only the newest.
    queue: str = "all"


@dataclass(frozen=True)
class JobDefinition:
    id: str
    name: str  # template; the job id when the file sets no name
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ()
    runs_on: tuple[str, ...] = ()  # templates
    env: dict[str, str] = field(default_factory=dict)  # values are templates
    timeout_minutes: float | str = DEFAULT_TIMEOUT_MINUTES
    # Normalised retry policy (see minijenkin.pipeline.retry).
    retry: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    has_name: bool = False
    condition: str | None = None  # the `if:` expression
    continue_on_error: bool | str = False
    environment: Environment | None = None
    concurrency: Concurrency | None = None
    strategy: Strategy = field(default_factory=Strategy)
    working_directory: str | None = None  # defaults.run.working-directory
    # Secret names the job's expressions read, so only those need to reach it.
    secrets: tuple[str, ...] = ()
    # Names of the `vars` the job's expressions read, likewise.
    variables: tuple[str, ...] = ()
    # `outputs`: names to templates, evaluated by the worker after the last step.
    outputs: dict[str, str] = field(default_factory=dict)
    # (line, column) of the values of the keys the planner evaluates, and of
    # the job's own key under "", for errors found when the run is planned.
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    file: str
    jobs: dict[str, JobDefinition]
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # values are templates
    triggers: Triggers = field(default_factory=Triggers)
    concurrency: Concurrency | None = None
    # GitHub Actions workflow (.github/workflows) rather than .minijenkin.yml.
    is_workflow: bool = False
    # (line, column) of the top-level `concurrency` value.
    concurrency_position: tuple[int, int] | None = None
