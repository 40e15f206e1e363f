"""Safe YAML loading that keeps line and column numbers.

The file is first scanned as a stream of parser events to enforce limits
(size, nesting depth, aliases, node count) before any tree is built, so a
"billion laughs" alias bomb or a deeply nested document is rejected in
milliseconds. It is then composed with ruamel.yaml's round-trip loader, which
only builds plain mappings, sequences and scalars (no Python objects) and
records the position of every key and item. Duplicate keys are rejected.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from minijenkin.errors import PipelineError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_NODES = 100_000


@dataclass(frozen=True)
class Position:
    line: int
    column: int


def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml


# Plain explanations of the YAML parser's messages for common mistakes. The
# parser's own text follows each one in brackets.
_PLAIN_PROBLEMS = (
    ("expected <block end>", "this line's indentation does not match the lines above it"),
    ("mapping values are not allowed here",
     "unexpected ':'; quote a value that contains ': ', or check the indentation"),
    ("found character '\\t' that cannot start any token",
     "a tab character; indent with spaces"),
    ("could not find expected ':'", "a line without 'key: value'; check the indentation"),
)


def _plain_problem(problem: str) -> str:
    for prefix, plain in _PLAIN_PROBLEMS:
        if problem.startswith(prefix):
            return f"{plain} ({problem})"
    return problem


def _mark_error(file: str, exc: MarkedYAMLError) -> PipelineError:
    mark = exc.problem_mark or exc.context_mark
    problem = _plain_problem(exc.problem or exc.context or "invalid YAML")
    if mark is None:
        return PipelineError(f"invalid YAML: {problem}", file=file)
    return PipelineError(f"invalid YAML: {problem}", file=file, line=mark.line + 1,
                         column=mark.column + 1)


def _check_limits(file: str, text: str) -> None:
    """Reject documents too deep, with too many aliases, or too large once aliases expand.

    Each anchored node's expanded size is remembered, and every alias adds
    that size again, so the count is what a walk over the loaded tree would
    visit, computed without building it.
    """
    sizes: list[int] = []
    anchors: dict[str, int] = {}
    open_anchors: list[str | None] = []
    aliases = 0
    total = 0

    def add(size: int, mark: object) -> None:
        nonlocal total
        if sizes:
            sizes[-1] += size
        else:
            total += size
        if total > MAX_NODES or (sizes and sizes[-1] > MAX_NODES):
            raise PipelineError(
                f"the document expands to more than {MAX_NODES} nodes (check its aliases)",
                file=file, line=mark.line + 1, column=mark.column + 1,  # type: ignore[attr-defined]
            )

    try:
        for event in _yaml().parse(io.StringIO(text)):
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                if len(sizes) >= MAX_DEPTH:
                    mark = event.start_mark
                    raise PipelineError(
                        f"the document is nested deeper than {MAX_DEPTH} levels",
                        file=file, line=mark.line + 1, column=mark.column + 1,
                    )
                sizes.append(1)
                open_anchors.append(event.anchor)
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                size = sizes.pop()
                anchor = open_anchors.pop()
                if anchor is not None:
                    anchors[anchor] = size
                add(size, event.start_mark)
            elif isinstance(event, ScalarEvent):
                if "\0" in (event.value or ""):
                    # A "\0" escape: the database stores the pipeline as JSON
                    # text, and no environment variable can hold it either.
                    mark = event.start_mark
                    raise PipelineError(
                        "the value contains a NUL character (\\0), which pipeline values cannot hold",
                        file=file, line=mark.line + 1, column=mark.column + 1,
                    )
                if event.anchor is not None:
                    anchors[event.anchor] = 1
                add(1, event.start_mark)
            elif isinstance(event, AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    mark = event.start_mark
                    raise PipelineError(
                        f"the document uses more than {MAX_ALIASES} aliases (*name); "
                        "expand them or simplify the file",
                        file=file, line=mark.line + 1, column=mark.column + 1,
                    )
                add(anchors.get(event.anchor, 1), event.start_mark)
    except MarkedYAMLError as exc:
        raise _mark_error(file, exc) from exc
    except YAMLError as exc:
        raise PipelineError(f"invalid YAML: {exc}", file=file) from exc


def load_yaml(data: bytes | str, *, file: str) -> Any:
    """Parse one YAML document; raise PipelineError with file:line:column on any problem."""
    return load_yaml_source(data, file=file)[0]


def load_yaml_source(data: bytes | str, *, file: str) -> tuple[Any, str]:
    """Parse one YAML document; return it with its decoded text (for positions inside values)."""
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            raise PipelineError(
                f"the file is {len(data)} bytes; the limit is {MAX_FILE_BYTES} bytes (1 MiB)",
                file=file,
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PipelineError(f"the file is not valid UTF-8 (byte {exc.start})", file=file) from exc
    else:
        text = data
        if len(text.encode("utf-8")) > MAX_FILE_BYTES:
            raise PipelineError(f"the file is larger than {MAX_FILE_BYTES} bytes (1 MiB)", file=file)
    text = text.removeprefix("\ufeff")

    _check_limits(file, text)
    try:
        documents = list(_yaml().load_all(io.StringIO(text)))
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = (exc.problem or "").split('"')[1] if '"' in (exc.problem or "") else "a key"
        raise PipelineError(
            f"duplicate key {key!r}: each key may appear once in a mapping",
            file=file, line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    except MarkedYAMLError as exc:
        raise _mark_error(file, exc) from exc
    except YAMLError as exc:
        raise PipelineError(f"invalid YAML: {exc}", file=file) from exc

    if len(documents) > 1:
        raise PipelineError("the file holds more than one YAML document (---)", file=file)
    return (documents[0] if documents else None), text


def key_position(mapping: Any, key: Any) -> Position | None:
    """Line and column (1-based) of `key` in a loaded mapping."""
    if isinstance(mapping, CommentedMap):
        try:
            line, column = mapping.lc.key(key)
        except (KeyError, TypeError):
            return None
        return Position(line + 1, column + 1)
    return None


def value_position(mapping: Any, key: Any) -> Position | None:
    """Line and column (1-based) of the value under `key` in a loaded mapping."""
    if isinstance(mapping, CommentedMap):
        try:
            line, column = mapping.lc.value(key)
        except (KeyError, TypeError):
            return None
        return Position(line + 1, column + 1)
    return None


def item_position(sequence: Any, index: int) -> Position | None:
    """Line and column (1-based) of item `index` of a loaded sequence."""
    if isinstance(sequence, CommentedSeq):
        try:
            line, column = sequence.lc.item(index)
        except (KeyError, IndexError, TypeError):
            return None
        return Position(line + 1, column + 1)
    return None


def node_position(node: Any) -> Position | None:
    """Where a mapping or sequence starts."""
    if isinstance(node, CommentedMap | CommentedSeq):
        return Position(node.lc.line + 1, node.lc.col + 1)
    return None
