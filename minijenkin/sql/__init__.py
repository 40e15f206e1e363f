"""SQL of Mini-Jenkin: migrations, repeatable function files and named queries.

Runtime queries live in `queries/*.sql`, one file per aggregate. Each
statement starts with a header line `-- name: <entity>_<verb>` followed by a
one-line comment that states its purpose. They are parsed once, at import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString, cast

_HEADER = re.compile(r"^--\s*name:\s*([a-z][a-z0-9_]*)\s*$", re.MULTILINE)


def _package_files(folder: str) -> list[tuple[str, str]]:
    root = resources.files(__name__) / folder
    files = [(entry.name, entry.read_text(encoding="utf-8")) for entry in root.iterdir()
             if entry.name.endswith(".sql")]
    return sorted(files)


def parse_queries(text: str, source: str) -> dict[str, LiteralString]:
    """Split a query file into {name: statement}; raise ValueError on a duplicate name."""
    queries: dict[str, LiteralString] = {}
    headers = list(_HEADER.finditer(text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body = text[header.end():end].strip()
        name = header.group(1)
        if name in queries:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        if not body:
            raise ValueError(f"{source}: query {name!r} is empty")
        queries[name] = cast(LiteralString, body)
    return queries


def _load_queries() -> Mapping[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    for filename, text in _package_files("queries"):
        for name, body in parse_queries(text, filename).items():
            if name in queries:
                raise ValueError(f"{filename}: query {name!r} is also defined in another file")
            queries[name] = body
    return MappingProxyType(queries)


def migration_files() -> list[tuple[str, str]]:
    """Numbered migrations as (file name, SQL), in the order they apply."""
    return _package_files("migrations")


def function_files() -> list[tuple[str, str]]:
    """Repeatable function files as (file name, SQL), in the order they apply."""
    return _package_files("functions")


QUERIES: Mapping[str, LiteralString] = _load_queries()
