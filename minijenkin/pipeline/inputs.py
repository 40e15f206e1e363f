"""`on.workflow_dispatch.inputs`: typed inputs of manual runs.

Declared as in GitHub Actions:

    on:
      workflow_dispatch:
        inputs:
          target:
            type: choice
            options: [staging, production]
            default: staging
          dry-run:
            type: boolean

Types: `string` (the default), `boolean`, `number`, `choice` (one of
`options`) and `environment` (an environment name, a string). A run's raw
inputs are checked and completed with the defaults by `resolve_inputs`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minijenkin.errors import PipelineError
from minijenkin.pipeline.diagnostics import Collector, PipelineValidationError, check_keys, plain
from minijenkin.pipeline.loader import Position, key_position, value_position

INPUT_KEYS = ("description", "required", "default", "type", "options")
INPUT_TYPES = ("string", "boolean", "number", "choice", "environment")
INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_INPUTS = 25


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str = "string"
    description: str | None = None
    required: bool = False
    default: Any = None
    options: tuple[str, ...] = ()
    line: int | None = None
    column: int | None = None

    @property
    def is_free_text(self) -> bool:
        """Whether the caller can pass any text (so the value must never be spliced into a script)."""
        return self.type in ("string", "environment")


def parse_inputs(errors: Collector, node: Any, path: str, parent: Mapping[Any, Any]) -> tuple[InputSpec, ...]:
    """Validate an `inputs` mapping; report problems to `errors`."""
    if node is None:
        return ()
    if not isinstance(node, Mapping):
        errors.add("'inputs' must be a mapping of input names to their settings",
                   value_position(parent, "inputs"), path)
        return ()
    if len(node) > MAX_INPUTS:
        errors.add(f"a workflow may declare at most {MAX_INPUTS} inputs", value_position(parent, "inputs"),
                   path)
    specs: list[InputSpec] = []
    for name, raw in node.items():
        input_path = f"{path}.inputs.{name}"
        position = key_position(node, name)
        if not isinstance(name, str) or not INPUT_NAME.match(name):
            errors.add("invalid input name: use letters, digits, '-' and '_', starting with a letter or '_'",
                       position, input_path)
            continue
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            errors.add("an input must be a mapping with 'type', 'description', 'default' ...",
                       value_position(node, name), input_path)
            continue
        check_keys(errors, raw, INPUT_KEYS, input_path)
        spec = _input_spec(errors, name, raw, input_path, position)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _input_spec(errors: Collector, name: str, raw: Mapping[Any, Any], path: str,
                position: Position | None) -> InputSpec | None:
    kind = raw.get("type", "string")
    if kind not in INPUT_TYPES:
        errors.add(f"invalid input type {kind!r}; expected one of: {', '.join(INPUT_TYPES)}",
                   value_position(raw, "type"), path)
        return None
    required = raw.get("required", False)
    if not isinstance(required, bool):
        errors.add("'required' must be true or false", value_position(raw, "required"), path)
        required = False
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        errors.add("'description' must be a string", value_position(raw, "description"), path)
        description = None

    options: tuple[str, ...] = ()
    raw_options = raw.get("options")
    if kind == "choice":
        if not isinstance(raw_options, list) or not raw_options or not all(
                isinstance(option, str | int | float) and not isinstance(option, bool)
                for option in raw_options):
            errors.add("a 'choice' input needs 'options': a non-empty list of strings",
                       value_position(raw, "options") or position, path)
            return None
        options = tuple(str(option) for option in raw_options)
    elif raw_options is not None:
        errors.add("'options' is only valid for inputs of type 'choice'", key_position(raw, "options"), path)

    default = plain(raw.get("default"))
    if default is not None:
        try:
            default = _convert(kind, default, options)
        except ValueError as exc:
            errors.add(f"invalid default: {exc}", value_position(raw, "default"), path)
            return None
    return InputSpec(name=name, type=kind, description=description, required=required, default=default,
                     options=options, line=position.line if position else None,
                     column=position.column if position else None)


def _convert(kind: str, value: Any, options: tuple[str, ...]) -> Any:
    """`value` as the input type requires; raise ValueError naming what was expected."""
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float | int = value
        elif isinstance(value, str):
            try:
                number = float(value) if any(char in value for char in ".eE") else int(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        else:
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a string, got {value!r}")
    text = value if isinstance(value, str) else str(value)
    if kind == "choice" and text not in options:
        raise ValueError(f"{text!r} is not one of the options: {', '.join(options)}")
    return text


def resolve_inputs(specs: tuple[InputSpec, ...], raw: Mapping[str, Any], *, file: str) -> dict[str, Any]:
    """Check a manual run's inputs against the declarations and fill in defaults.

    Returns {name: typed value}. Raises PipelineValidationError listing
    every unknown, missing or invalid input, positioned at its declaration.
    """
    problems: list[PipelineError] = []
    declared = {spec.name: spec for spec in specs}
    for name in raw:
        if name not in declared:
            known = ", ".join(declared) or "none are declared"
            problems.append(PipelineError(
                f"inputs: unknown input {name!r}; the workflow declares: {known}", file=file,
                line=None, column=None, path="inputs"))

    values: dict[str, Any] = {}
    for spec in specs:
        where = {"file": file, "line": spec.line, "column": spec.column, "path": f"inputs.{spec.name}"}
        if spec.name in raw:
            try:
                values[spec.name] = _convert(spec.type, raw[spec.name], spec.options)
            except ValueError as exc:
                problems.append(PipelineError(f"inputs.{spec.name}: {exc}", **where))  # type: ignore[arg-type]
        elif spec.default is not None:
            values[spec.name] = spec.default
        elif spec.required:
            problems.append(PipelineError(
                f"inputs.{spec.name}: this input is required and has no default",
                **where))  # type: ignore[arg-type]
        else:
            values[spec.name] = False if spec.type == "boolean" else ""
    if problems:
        raise PipelineValidationError(problems)
    return values
