"""`strategy`: matrix expansion with `include` and `exclude`, `fail-fast`, `max-parallel`.

Expansion follows GitHub Actions:

1. the cross product of the axes (`python: [3.11, 3.12]`, `os: [linux, arm]`);
2. minus every combination that matches all key-value pairs of an `exclude`
   entry; a mapping or list value in the entry matches as a part of the
   combination's value (`arch: {cpu: arm}` matches `{cpu: arm, bits: 64}`);
3. then each `include` entry is merged into every combination whose original
   axis values it does not change (values it added earlier may be
   overwritten); an entry that fits no combination becomes a combination of
   its own.

A job with a matrix becomes one job per combination, named like
`test (3.12, linux)`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minijenkin.pipeline.diagnostics import Collector, check_keys, plain
from minijenkin.pipeline.expressions import to_text
from minijenkin.pipeline.loader import item_position, key_position, value_position

STRATEGY_KEYS = ("matrix", "fail-fast", "max-parallel")
MATRIX_RESERVED_KEYS = ("include", "exclude")
MAX_COMBINATIONS = 256
MATRIX_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Matrix:
    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    include: tuple[Mapping[str, Any], ...] = ()
    exclude: tuple[Mapping[str, Any], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key a combination may have: the axes, then keys only `include` adds."""
        names = [name for name, _values in self.axes]
        for entry in self.include:
            for key in entry:
                if key not in names:
                    names.append(key)
        return tuple(names)


@dataclass(frozen=True)
class Strategy:
    matrix: Matrix | None = None
    fail_fast: bool = True
    max_parallel: int | None = None
    # Whether the file sets strategy.matrix, even when it is invalid (matrix is then None).
    matrix_declared: bool = False


def _same(left: Any, right: Any) -> bool:
    # YAML's true is not the number 1 here, unlike in Python.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)


def _part_of(pattern: Any, value: Any) -> bool:
    """Whether an `exclude` value matches a combination's value.

    Mappings match when each of the pattern's keys matches, and lists when
    the pattern matches the list's first items. GitHub Actions excludes
    this way, although its documentation shows only scalar values; the
    behaviour is reported in rhysd/actionlint's issue 249.
    """
    if isinstance(pattern, Mapping) and isinstance(value, Mapping):
        return all(key in value and _part_of(item, value[key]) for key, item in pattern.items())
    if isinstance(pattern, list) and isinstance(value, list):
        return len(pattern) <= len(value) and all(map(_part_of, pattern, value))
    return _same(pattern, value)


def expand(matrix: Matrix) -> list[dict[str, Any]]:
    """Every combination of `matrix`, in order: product, minus excludes, plus includes."""
    originals: list[dict[str, Any]] = []
    if matrix.axes:
        originals = [{}]
        for name, values in matrix.axes:
            originals = [{**combination, name: value} for combination in originals for value in values]
    originals = [
        combination for combination in originals
        if not any(all(key in combination and _part_of(value, combination[key])
                       for key, value in rule.items())
                   for rule in matrix.exclude)
    ]

    axis_names = {name for name, _values in matrix.axes}
    combinations = [dict(combination) for combination in originals]
    extras: list[dict[str, Any]] = []
    for entry in matrix.include:
        merged = False
        for original, combination in zip(originals, combinations, strict=True):
            if all(_same(original[key], value) for key, value in entry.items() if key in axis_names):
                combination.update(entry)
                merged = True
        if not merged:
            extras.append(dict(entry))
    return combinations + extras


def label(combination: Mapping[str, Any]) -> str:
    """The values of a combination as GitHub shows them: `3.12, linux`."""
    parts = []
    for value in combination.values():
        if isinstance(value, Mapping | list):
            parts.append(json.dumps(value, separators=(",", ":"), sort_keys=True))
        else:
            parts.append(to_text(value))
    return ", ".join(parts)


def parse_strategy(errors: Collector, job: Mapping[Any, Any], path: str) -> Strategy:
    raw = job.get("strategy")
    if raw is None:
        return Strategy()
    strategy_path = f"{path}.strategy"
    if not isinstance(raw, Mapping):
        errors.add("'strategy' must be a mapping with 'matrix', 'fail-fast' or 'max-parallel'",
                   value_position(job, "strategy"), path)
        return Strategy()
    check_keys(errors, raw, STRATEGY_KEYS, strategy_path)

    fail_fast = raw.get("fail-fast", True)
    if not isinstance(fail_fast, bool):
        errors.add("'fail-fast' must be true or false", value_position(raw, "fail-fast"), strategy_path)
        fail_fast = True
    max_parallel = raw.get("max-parallel")
    if max_parallel is not None and (
            isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1):
        errors.add("'max-parallel' must be a whole number of at least 1",
                   value_position(raw, "max-parallel"), strategy_path)
        max_parallel = None

    matrix = _matrix(errors, raw, strategy_path) if "matrix" in raw else None
    return Strategy(matrix=matrix, fail_fast=fail_fast,
                    max_parallel=int(max_parallel) if max_parallel is not None else None,
                    matrix_declared="matrix" in raw)


def _matrix(errors: Collector, strategy: Mapping[Any, Any], path: str) -> Matrix | None:
    raw = strategy["matrix"]
    matrix_path = f"{path}.matrix"
    if isinstance(raw, str) and "${{" in raw:
        errors.add("a matrix computed by an expression (such as fromJSON of a job output) is not "
                   "supported; list its keys and values in the file",
                   value_position(strategy, "matrix"), path)
        return None
    if not isinstance(raw, Mapping) or not raw:
        errors.add("'matrix' must be a mapping of keys to lists of values, with optional "
                   "'include' and 'exclude'", value_position(strategy, "matrix"), path)
        return None

    axes: list[tuple[str, tuple[Any, ...]]] = []
    failed = False
    for key, values in raw.items():
        if key in MATRIX_RESERVED_KEYS:
            continue
        if not isinstance(key, str) or not MATRIX_KEY.match(key):
            errors.add(f"invalid matrix key {key!r}: use letters, digits, '-' and '_'",
                       key_position(raw, key), matrix_path)
            failed = True
            continue
        if isinstance(values, str) and "${{" in values:
            errors.add(f"matrix key {key!r}: values computed by expressions are not supported; "
                       "list the values", value_position(raw, key), matrix_path)
            failed = True
            continue
        if not isinstance(values, list) or not values:
            errors.add(f"matrix key {key!r} must be a non-empty list of values", value_position(raw, key),
                       matrix_path)
            failed = True
            continue
        axes.append((key, tuple(plain(value) for value in values)))

    include = _entries(errors, raw, "include", matrix_path)
    exclude = _entries(errors, raw, "exclude", matrix_path)
    axis_names = [name for name, _values in axes]
    if exclude is not None:
        for index, rule in enumerate(exclude):
            for key in rule:
                if key not in axis_names:
                    errors.add(f"exclude entry uses {key!r}, which is not a matrix key; matrix keys: "
                               f"{', '.join(axis_names) or 'none'}",
                               item_position(raw["exclude"], index), matrix_path)
                    failed = True
    if not axes and not include:
        if not failed:
            errors.add("the matrix has no keys and no 'include' entries", value_position(strategy, "matrix"),
                       path)
        return None
    if failed or include is None or exclude is None:
        return None

    product = math.prod(len(values) for _name, values in axes) if axes else 0
    if product > MAX_COMBINATIONS:
        errors.add(f"the matrix has {product} combinations; the limit is {MAX_COMBINATIONS}",
                   value_position(strategy, "matrix"), path)
        return None
    matrix = Matrix(axes=tuple(axes), include=tuple(include), exclude=tuple(exclude))
    combinations = expand(matrix)
    if not combinations:
        errors.add("the matrix is empty: 'exclude' removes every combination",
                   value_position(strategy, "matrix"), path)
        return None
    if len(combinations) > MAX_COMBINATIONS:
        errors.add(f"the matrix has {len(combinations)} combinations; the limit is {MAX_COMBINATIONS}",
                   value_position(strategy, "matrix"), path)
        return None
    return matrix


def _entries(errors: Collector, raw: Mapping[Any, Any], key: str, path: str) -> list[dict[str, Any]] | None:
    """The `include` or `exclude` list as plain mappings; None after an error."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(f"'{key}' must be a list of mappings", value_position(raw, key), path)
        return None
    entries: list[dict[str, Any]] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not entry:
            errors.add(f"each '{key}' entry must be a non-empty mapping of matrix keys to values",
                       item_position(value, index), path)
            return None
        for name in entry:
            if not isinstance(name, str) or not MATRIX_KEY.match(name):
                errors.add(f"invalid matrix key {name!r} in '{key}'", key_position(entry, name), path)
                return None
        entries.append(plain(dict(entry)))
    return entries
