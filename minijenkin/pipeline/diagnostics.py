"""Collecting validation errors with their file, line, column and key path."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml.scalarstring import LiteralScalarString

from minijenkin.errors import PipelineError
from minijenkin.pipeline.expressions import to_text
from minijenkin.pipeline.loader import Position, item_position, key_position, value_position


class PipelineValidationError(PipelineError):
    """One or more problems in a pipeline file; `errors` lists each one."""

    def __init__(self, errors: list[PipelineError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.message, file=first.file, line=first.line, column=first.column,
                         path=first.path)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class Collector:
    """The errors found in one file, and the source text to locate positions inside values."""

    def __init__(self, file: str, text: str = "") -> None:
        self.file = file
        self.lines = text.splitlines()
        self.errors: list[PipelineError] = []

    def add(self, message: str, position: Position | None, path: str | None = None) -> None:
        text = f"{path}: {message}" if path else message
        self.errors.append(PipelineError(
            text, file=self.file, line=position.line if position else None,
            column=position.column if position else None, path=path,
        ))

    def raise_if_any(self) -> None:
        if self.errors:
            self.errors.sort(key=lambda error: (error.line or 0, error.column or 0))
            raise PipelineValidationError(self.errors)

    def inside_value(self, container: Any, key: Any, offset: int) -> Position | None:
        """Position of character `offset` of the string under `key` (a mapping key or list index).

        Exact for one-line plain or quoted scalars and for literal blocks
        (`|`). For folded blocks (`>`) and plain or quoted scalars over
        several lines, whose line breaks became spaces, the position is
        found line by line and checked against the source text. When the
        check fails (escapes, blank lines), it is the start of the value.
        """
        if isinstance(container, Mapping):
            base = value_position(container, key)
        else:
            base = item_position(container, key)
        value = container[key]
        if base is None or not isinstance(value, str):
            return base
        if isinstance(value, LiteralScalarString):
            prefix = value[:offset]
            indent = self._block_indent(base.line)
            if indent is None:
                return base
            line_start = prefix.rfind("\n") + 1
            return Position(base.line + 1 + prefix.count("\n"), indent + (len(prefix) - line_start) + 1)
        source_line = self.lines[base.line - 1] if base.line - 1 < len(self.lines) else ""
        opening = source_line[base.column - 1:base.column]
        if opening in (">", "|"):
            indent = self._block_indent(base.line)
            start = None if indent is None else Position(base.line + 1, indent + 1)
        elif opening in ("'", '"'):
            start = Position(base.line, base.column + 1)
        else:
            start = base
        if start is None or "\n" in value:
            return base
        return self._folded_position(start, value, offset) or base

    def _folded_position(self, start: Position, value: str, offset: int) -> Position | None:
        """Locate `value[offset]` in source lines that YAML joined with single spaces."""
        remaining = offset
        column = start.column
        for index in range(start.line - 1, len(self.lines)):
            content = self.lines[index][column - 1:]
            if index > start.line - 1:
                stripped = content.lstrip(" ")
                column += len(content) - len(stripped)
                content = stripped
            content = content.rstrip()
            if remaining < len(content):
                found = Position(index + 1, column + remaining)
                return found if content[remaining:].startswith(value[offset:offset + 8].rstrip()) else None
            # The line break between two source lines became one space.
            remaining -= len(content) + 1
            column = 1
            if remaining < 0:
                return None
        return None

    def _block_indent(self, indicator_line: int) -> int | None:
        for text in self.lines[indicator_line:]:
            if text.strip():
                return len(text) - len(text.lstrip(" "))
        return None


def nearest(word: str, choices: Sequence[str]) -> str | None:
    """Return the choice `word` is a near miss of, if any."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def suggestion(word: str, choices: Sequence[str]) -> str:
    """'; did you mean X?' for a near miss, else the list of choices."""
    close = nearest(word, choices)
    if close is not None:
        return f"; did you mean {close!r}?"
    return f"; expected one of: {', '.join(choices)}"


def misspelled(node: Mapping[Any, Any], key: str, allowed: Sequence[str]) -> bool:
    """Return whether `node` has an unknown key whose nearest allowed key is `key`.

    A missing required key is then not reported, because the unknown-key
    error already suggests it.
    """
    return any(isinstance(present, str) and present not in allowed
               and nearest(present, allowed) == key for present in node)


def check_keys(errors: Collector, node: Mapping[Any, Any], allowed: Sequence[str], path: str,
               unsupported: Mapping[str, str] | None = None) -> None:
    """Report keys of `node` outside `allowed`, with a near-miss suggestion.

    `unsupported` maps keys that other CI systems accept to the reason they
    are rejected here.
    """
    for key in node:
        if not isinstance(key, str):
            errors.add(f"keys must be strings, got {key!r}", key_position(node, key), path or None)
        elif key not in allowed:
            if unsupported and key in unsupported:
                errors.add(f"{key!r} is not supported: {unsupported[key]}", key_position(node, key),
                           path or None)
            else:
                errors.add(f"unknown key {key!r}{suggestion(key, allowed)}", key_position(node, key),
                           path or None)


def plain(value: Any) -> Any:
    """`value` with ruamel's scalar, mapping and sequence types turned into plain Python ones."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def scalar_text(value: Any) -> str | None:
    """Convert a YAML scalar to the string expressions and environments get; None for other nodes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return to_text(plain(value))
    return None


__all__ = [
    "Collector",
    "PipelineValidationError",
    "check_keys",
    "key_position",
    "plain",
    "scalar_text",
    "suggestion",
    "value_position",
]
