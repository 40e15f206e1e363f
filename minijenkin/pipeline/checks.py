"""Static checks of `${{ }}` expressions: known contexts and keys, and no event text in scripts.

Every expression of a file is parsed while the file is validated. A
syntax error, a misspelt context or a `needs` reference to a job that is
not needed is therefore reported with its line and column before anything
runs.

Scripts get a stricter check. A `run:` value is shell text, so a `${{ }}`
in it must not produce text that whoever pushes controls (a branch name
like `$(touch /tmp/pwned)`, a commit message with backticks): only values
from the repository's own file (matrix, literals), from the project's
configuration (secrets, typed inputs) or from Mini-Jenkin (commit ids, run
ids, statuses) may be spliced in. Everything else is available as an
environment variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from minijenkin.pipeline import events
from minijenkin.pipeline.diagnostics import Collector, suggestion
from minijenkin.pipeline.expressions import (
    STATUS_FUNCTIONS,
    ExpressionError,
    Node,
    Reference,
    calls,
    parse_condition,
    parse_template,
    references,
    yields_boolean,
)
from minijenkin.pipeline.inputs import InputSpec
from minijenkin.pipeline.loader import Position

CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy", "needs", "secrets", "env",
            "steps", "job", "runner")
# Contexts each kind of field can read (GitHub Actions' availability table,
# plus `minijenkin`, and `matrix` in job conditions since jobs are expanded first).
PLAN_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy")
WORKFLOW_CONTEXTS = ("github", "minijenkin", "inputs", "vars")
WORKFLOW_ENV_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "secrets")
JOB_IF_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy", "needs")
JOB_ENV_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy", "needs", "secrets")
STEP_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy", "needs", "secrets", "env",
                 "steps", "job", "runner")
STEP_IF_CONTEXTS = ("github", "minijenkin", "inputs", "vars", "matrix", "strategy", "needs", "env", "steps",
                    "job", "runner")

NEEDS_KEYS = ("result", "outputs")
STEP_RESULT_KEYS = ("outcome", "conclusion", "outputs")
JOB_KEYS = ("status",)
RUNNER_KEYS = ("os", "arch", "name", "temp")
STRATEGY_KEYS = ("fail-fast", "job-index", "job-total", "max-parallel")

PositionAt = Callable[[int], Position | None]


@dataclass
class Scope:
    """The contexts, matrix keys, inputs, needs and step ids the expressions of one field may use."""

    contexts: tuple[str, ...]
    matrix_keys: tuple[str, ...] | None = None
    # The file sets a matrix that is invalid (and reported): matrix keys are not checked.
    matrix_unchecked: bool = False
    inputs: Mapping[str, InputSpec] | None = None
    needs: tuple[str, ...] = ()
    step_ids: tuple[str, ...] = ()
    # Statically defined environment variables: name -> whether event text reaches its value.
    env: Mapping[str, bool] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    # Names of the `vars` this field reads, collected like `secrets`.
    variables: set[str] = field(default_factory=set)


def _describe_untrusted(path: tuple[str | None, ...], scope: Scope) -> str:
    key = path[1] if len(path) > 1 else None
    if path[0] == "inputs":
        return "a manual run's free-text input"
    if path[0] == "env" and key is not None and key not in scope.env:
        return f"environment variable {key}, which this file does not set (a script may set it to anything)"
    if path[0] == "env":
        return f"environment variable {key}, whose value comes from event text"
    if path[0] == "steps":
        return "a step's output, which a script computed"
    if path[0] == "needs":
        return "a needed job's output, which a script computed"
    if key in ("ref", "ref_name", "head_ref", "base_ref", "branch", "tag"):
        return "a branch or tag name, which whoever pushes chooses"
    if key in ("actor", "triggering_actor", "author", "sender"):
        return "a user name"
    if key == "message" or path[-1] == "message":
        return "a commit message, which whoever pushes writes"
    if path[-1] == "title":
        return "a pull request title"
    return "event data that whoever triggers the run controls"


def is_trusted(path: tuple[str | None, ...], scope: Scope) -> bool:
    """Return whether the value at `path` may be spliced into a shell script."""
    context = (path[0] or "").lower()
    key = path[1] if len(path) > 1 else None
    if context in ("matrix", "strategy", "secrets", "vars", "runner"):
        return True
    if context == "needs":
        return len(path) == 3 and path[2] == "result"
    if context == "steps":
        return len(path) == 3 and path[2] in ("outcome", "conclusion")
    if context == "job":
        return len(path) == 2 and key == "status"
    if context == "inputs":
        spec = scope.inputs.get(key) if scope.inputs is not None and key else None
        return spec is not None and not spec.is_free_text and len(path) == 2
    if context == "env":
        return key is not None and len(path) == 2 and scope.env.get(key) is False
    if context == "github":
        return len(path) == 2 and key in events.TRUSTED_GITHUB_KEYS
    if context == "minijenkin":
        return len(path) == 2 and key in events.TRUSTED_MINIJENKIN_KEYS
    return False


def _check_reference(errors: Collector, reference: Reference, scope: Scope, where: str,
                     position_at: PositionAt) -> None:
    path = reference.path
    position = position_at(reference.offset)
    name = path[0] or ""
    context = name.lower()
    if context not in CONTEXTS:
        errors.add(f"unknown context {name!r}{suggestion(name, CONTEXTS)}", position, where)
        return
    if context not in scope.contexts:
        errors.add(f"the {context!r} context is not available here; available: {', '.join(scope.contexts)}",
                   position, where)
        return
    key = path[1] if len(path) > 1 else None
    if key is None:
        return

    if context == "matrix":
        if scope.matrix_unchecked:
            pass
        elif scope.matrix_keys is None:
            errors.add(f"matrix.{key} is used, but the job has no strategy.matrix", position, where)
        elif key not in scope.matrix_keys:
            errors.add(f"the matrix has no key {key!r}{suggestion(key, scope.matrix_keys)}", position, where)
    elif context == "inputs":
        if scope.inputs is None:
            errors.add(f"inputs.{key} is used, but the pipeline declares no on.workflow_dispatch.inputs",
                       position, where)
        elif key not in scope.inputs:
            errors.add(f"unknown input {key!r}{suggestion(key, tuple(scope.inputs))}", position, where)
    elif context == "needs":
        if key not in scope.needs:
            listed = ", ".join(scope.needs) or "none"
            errors.add(f"needs.{key} refers to a job this job does not list in 'needs' (it needs: {listed})",
                       position, where)
        elif len(path) > 2 and path[2] is not None and path[2] not in NEEDS_KEYS:
            errors.add(f"needs.{key}.{path[2]} is not available; use needs.{key}.result or "
                       f"needs.{key}.outputs.<name>", position, where)
    elif context == "steps":
        if key not in scope.step_ids:
            listed = ", ".join(scope.step_ids) or "none"
            errors.add(f"steps.{key} refers to no earlier step with that 'id' (earlier ids: {listed})",
                       position, where)
        elif len(path) > 2 and path[2] is not None and path[2] not in STEP_RESULT_KEYS:
            errors.add(f"steps.{key}.{path[2]} is not available{suggestion(path[2], STEP_RESULT_KEYS)}",
                       position, where)
    elif context == "github" and key not in events.GITHUB_KEYS:
        errors.add(f"unknown github property {key!r}{suggestion(key, events.GITHUB_KEYS)}", position, where)
    elif context == "minijenkin" and key not in events.MINIJENKIN_KEYS:
        errors.add(f"unknown minijenkin property {key!r}{suggestion(key, events.MINIJENKIN_KEYS)}",
                   position, where)
    elif context == "job" and key not in JOB_KEYS:
        errors.add(f"unknown job property {key!r}; available: status", position, where)
    elif context == "strategy" and key not in STRATEGY_KEYS:
        errors.add(f"unknown strategy property {key!r}{suggestion(key, STRATEGY_KEYS)}", position, where)
    elif context == "runner" and key not in RUNNER_KEYS:
        errors.add(f"unknown runner property {key!r}{suggestion(key, RUNNER_KEYS)}", position, where)
    elif context == "secrets":
        scope.secrets.add(key)
    elif context == "vars":
        scope.variables.add(key)


def _check_node(errors: Collector, node: Node, scope: Scope, where: str, position_at: PositionAt, *,
                condition: bool) -> None:
    for reference in references(node):
        _check_reference(errors, reference, scope, where, position_at)
    if not condition:
        for call in calls(node):
            if call.name in STATUS_FUNCTIONS:
                errors.add(f"{call.name}() can only be used in 'if' conditions", position_at(call.offset),
                           where)


def check_template(errors: Collector, text: str, scope: Scope, where: str, position_at: PositionAt, *,
                   script: bool = False) -> bool:
    """Check every `${{ }}` of a text field; with `script`, also reject untrusted values.

    Returns whether the text has no problem.
    """
    before = len(errors.errors)
    try:
        template = parse_template(text)
    except ExpressionError as exc:
        errors.add(f"invalid expression: {exc.message}", position_at(exc.offset), where)
        return False
    for embedded in template.expressions:
        _check_node(errors, embedded.node, scope, where, position_at, condition=False)
        if not script or yields_boolean(embedded.node):
            continue
        for reference in references(embedded.node):
            if reference.path[0] is None or reference.path[0].lower() not in scope.contexts:
                continue
            if not is_trusted(reference.path, scope):
                errors.add(_script_message(embedded.source, reference.path, scope),
                           position_at(reference.offset), where)
                break
    return len(errors.errors) == before


def _script_message(source: str, path: tuple[str | None, ...], scope: Scope) -> str:
    variable = events.ENVIRONMENT_EQUIVALENTS.get(tuple(part or "" for part in path))
    if variable is None and path[0] == "env" and len(path) > 1:
        variable = path[1]
    if variable is not None:
        fix = f"use the environment variable \"${variable}\" in the script instead"
    else:
        fix = ("set it in the step's 'env' (for example VALUE: ${{ " + source + " }}) and use \"$VALUE\" "
               "in the script instead")
    return (f"'${{{{ {source} }}}}' in a script would splice in {_describe_untrusted(path, scope)}, and such "
            f"text can run commands; {fix}")


def check_condition(errors: Collector, text: str, scope: Scope, where: str, position_at: PositionAt) -> None:
    try:
        node = parse_condition(text)
    except ExpressionError as exc:
        errors.add(f"invalid condition: {exc.message}", position_at(exc.offset), where)
        return
    _check_node(errors, node, scope, where, position_at, condition=True)


def template_is_tainted(text: str, scope: Scope) -> bool:
    """Return whether event text can reach the value of a template (used for environment variables)."""
    try:
        template = parse_template(text)
    except ExpressionError:
        return False
    for embedded in template.expressions:
        if yields_boolean(embedded.node):
            continue
        for reference in references(embedded.node):
            if reference.path[0] is not None and not is_trusted(reference.path, scope):
                return True
    return False


def whole_expression(text: str) -> bool:
    """Return whether `text` is exactly one `${{ }}` and nothing else."""
    try:
        template = parse_template(text.strip())
    except ExpressionError:
        return False
    return len(template.parts) == 1 and not isinstance(template.parts[0], str)

