"""The files steps write to: `$GITHUB_OUTPUT` and `$GITHUB_ENV` lines as GitHub's runner reads them."""

from __future__ import annotations

import pytest

from minijenkin.worker.steps import parse_key_values


@pytest.mark.parametrize(("text", "expected"), [
    ("plain=v\n", {"plain": "v"}),
    ("cache-hit=true\n", {"cache-hit": "true"}),
    ("eq=a=b=c\n", {"eq": "a=b=c"}),
    ("empty=\n", {"empty": ""}),
    ("last=no newline", {"last": "no newline"}),
    ("crlf=x\r\nnext=y\r\n", {"crlf": "x", "next": "y"}),
    ("x=a<<b\n", {"x": "a<<b"}),
    ("multi<<EOF\nl1\nl2\nEOF\n", {"multi": "l1\nl2"}),
    ("blank<<EOF\nEOF\n", {"blank": ""}),
    ("h<<E=F\nq\nE=F\n", {"h": "q"}),
])
def test_values_as_github_reads_them(text: str, expected: dict[str, str]) -> None:
    values, problems = parse_key_values(text)

    assert values == expected
    assert problems == []


def test_heredoc_with_hyphenated_name_keeps_body() -> None:
    text = "release-notes<<EOF\nfixed=bug\nPATH=/nowhere\nEOF\n"

    values, problems = parse_key_values(text)

    assert values == {"release-notes": "fixed=bug\nPATH=/nowhere"}
    assert problems == []


@pytest.mark.parametrize("separator", ["\f", "\v", "\x1c", "\x1e", "\x85", "\u2028", "\u2029"])
def test_only_newline_ends_a_line(separator: str) -> None:
    values, problems = parse_key_values(f"value=a{separator}b\nblock<<EOF\nc{separator}d\nEOF\n")

    assert values == {"value": f"a{separator}b", "block": f"c{separator}d"}
    assert problems == []


@pytest.mark.parametrize(("text", "problem"), [
    ("no separator\n", "invalid line 'no separator': expected NAME=value or NAME<<DELIMITER"),
    ("=value\n", "invalid line '=value': expected NAME=value or NAME<<DELIMITER"),
    ("<<EOF\nx\nEOF\n", "invalid line '<<EOF': expected NAME<<DELIMITER with a name and a delimiter"),
    ("name<<\n", "invalid line 'name<<': expected NAME<<DELIMITER with a name and a delimiter"),
    ("open<<EOF\nbody\n", "open: the closing delimiter 'EOF' is missing"),
])
def test_invalid_lines_are_reported(text: str, problem: str) -> None:
    _values, problems = parse_key_values(text)

    assert problems[0] == problem
