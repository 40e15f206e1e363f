"""Filter patterns for branches, tags and paths, as GitHub Actions defines them.

- `*` matches zero or more characters, but not `/`;
- `**` matches zero or more of any character; `**/` also matches no directory,
  so `**/README.md` matches `README.md` at the root;
- `?` makes the preceding character optional, `+` repeats it one or more times;
- `[abc]`, `[a-z0-9]` match one listed character (ranges of letters or digits);
- `\\` escapes the next character;
- a leading `!` negates a pattern in a list.

In a list, patterns apply in order and the last one that matches decides, so
`['releases/**', '!releases/**-alpha']` matches `releases/1.0` but not
`releases/1.0-alpha`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache


class PatternError(ValueError):
    """A filter pattern is invalid."""


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression equivalent to one pattern (without a leading `!`)."""
    atoms: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            if position + 1 >= len(pattern):
                raise PatternError(f"pattern {pattern!r} ends with an escape character '\\'")
            atoms.append(re.escape(pattern[position + 1]))
            position += 2
        elif pattern.startswith("**/", position):
            atoms.append("(?:.*/)?")
            position += 3
        elif pattern.startswith("**", position):
            atoms.append(".*")
            position += 2
        elif char == "*":
            atoms.append("[^/]*")
            position += 1
        elif char in "?+":
            if not atoms or atoms[-1] in ("(?:.*/)?", ".*", "[^/]*") or atoms[-1][-1:] in ("?", "+"):
                raise PatternError(f"{char!r} in pattern {pattern!r} must follow a character it applies to")
            atoms[-1] = f"(?:{atoms[-1]}){char}"
            position += 1
        elif char == "[":
            end = pattern.find("]", position + 1)
            if end < 0:
                raise PatternError(f"pattern {pattern!r} has a '[' without a closing ']'")
            body = pattern[position + 1:end]
            if not body or not re.fullmatch(r"(?:[A-Za-z0-9]-[A-Za-z0-9]|[^\]\\-])+", body):
                raise PatternError(f"invalid character class [{body}] in pattern {pattern!r}")
            atoms.append(f"[{re.escape(body).replace(chr(92) + '-', '-')}]")
            position = end + 1
        else:
            atoms.append(re.escape(char))
            position += 1
    return re.compile("".join(atoms), re.DOTALL)


def check_pattern(pattern: str) -> None:
    """Raise PatternError when `pattern` is invalid."""
    compile_pattern(pattern.removeprefix("!"))


def matches(pattern: str, value: str) -> bool:
    """Whether one pattern (without a leading `!`) matches the whole of `value`."""
    return compile_pattern(pattern).fullmatch(value) is not None


def matches_any(patterns: Sequence[str], value: str) -> bool:
    """Whether a list of patterns selects `value`: the last matching pattern decides."""
    selected = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if matches(pattern[1:], value):
                selected = False
        elif matches(pattern, value):
            selected = True
    return selected


def any_path_selected(patterns: Sequence[str], paths: Iterable[str]) -> bool:
    """Whether at least one of `paths` is selected by `patterns`."""
    return any(matches_any(patterns, path) for path in paths)
