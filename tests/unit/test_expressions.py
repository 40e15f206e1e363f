"""The `${{ }}` expression language: every operator and function, and property-based checks."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minijenkin.pipeline.events import server_url
from minijenkin.pipeline.expressions import (
    ExpressionError,
    Scope,
    evaluate,
    evaluate_condition,
    evaluate_value,
    is_truthy,
    parse_condition,
    parse_expression,
    parse_template,
    references,
    render_text,
    to_text,
    uses_status_function,
    yields_boolean,
)

CONTEXTS: dict[str, Any] = {
    "github": {"ref": "refs/heads/main", "event_name": "push", "event": {"head_commit": {"message": "Fix"}}},
    "matrix": {"python-version": "3.12", "os": "linux", "n": 3, "flags": ["a", "b"]},
    "env": {"EMPTY": "", "ZERO": "0"},
    "inputs": {"dry": True},
}


def value(text: str, **status: bool) -> Any:
    return evaluate(parse_expression(text), Scope(contexts=CONTEXTS, **status))


@pytest.mark.parametrize(("text", "expected"), [
    ("null", None),
    ("true", True),
    ("FALSE", False),
    ("711", 711),
    ("-9.2", -9.2),
    ("0xff", 255),
    ("-2.99e-2", -0.0299),
    ("'it''s'", "it's"),
    ("''", ""),
])
def test_literals(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("github.ref", "refs/heads/main"),
    ("github['ref']", "refs/heads/main"),
    ("matrix.python-version", "3.12"),
    ("matrix['python-version']", "3.12"),
    ("github.event.head_commit.message", "Fix"),
    ("GitHub.Event_Name", "push"),
    ("github.missing", None),
    ("github.missing.deeper", None),
    ("matrix.flags[1]", "b"),
    ("matrix.flags[7]", None),
    ("matrix[matrix.os == 'linux' && 'os' || 'n']", "linux"),
    ("nothing", None),
])
def test_context_access(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1 == 1", True),
    ("'ABC' == 'abc'", True),
    ("1 == '1'", True),
    ("0 == ''", True),
    ("null == 0", True),
    ("true == 1", True),
    ("false == '0'", True),
    ("'abc' == 'abd'", False),
    ("'a' == 1", False),
    ("matrix.flags == matrix.flags", True),
    ("matrix.flags == 'a'", False),
    ("1 != 2", True),
    ("'x' != 'X'", False),
    ("1 < 2", True),
    ("2 < 1", False),
    ("'a' < 'B'", True),
    ("'10' < 9", False),
    ("'abc' < 1", False),
    ("1 <= 1", True),
    ("2 > 1", True),
    ("'b' > 'A'", True),
    ("2 >= 3", False),
    ("3 >= 3", True),
])
def test_comparisons(text: str, expected: bool) -> None:
    assert value(text) is expected


# Strings GitHub's runner converts to numbers as JavaScript's Number() does.
@pytest.mark.parametrize(("text", "expected"), [
    ("'05' == 5", True),
    ("'05' > 3", True),
    ("'+1' == 1", True),
    ("'.5' == 0.5", True),
    ("'1.' == 1", True),
    ("' 7 ' == 7", True),
    ("'0o17' == 15", True),
    ("'0x1f' == 31", True),
    ("'Infinity' > 1e300", True),
    ("'-Infinity' < -1e300", True),
    ("'1.2.3' == 1", False),
    ("'.' == 0", False),
    ("'e5' == 0", False),
    ("'5 apples' == 5", False),
])
def test_numeric_strings_compare_as_numbers(text: str, expected: bool) -> None:
    assert value(text) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("true && 'yes'", "yes"),
    ("'' && 'yes'", ""),
    ("null || 'fallback'", "fallback"),
    ("'first' || 'second'", "first"),
    ("!true", False),
    ("!''", True),
    ("!0", True),
    ("!matrix.flags", False),
    ("!!'x'", True),
    ("(1 == 2 || 2 == 2) && 3 == 3", True),
    ("1 == 2 || 2 == 2 && 3 == 4", False),
    ("!(1 == 2)", True),
    ("!1 == 2", False),
])
def test_logical_operators_and_parentheses(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("contains('Hello World', 'WORLD')", True),
    ("contains('Hello', 'bye')", False),
    ("contains(matrix.flags, 'A')", True),
    ("contains(matrix.flags, 'c')", False),
    ("contains(github.ref, 'main')", True),
    ("startsWith(github.ref, 'refs/heads/')", True),
    ("startswith('abc', 'B')", False),
    ("endsWith('file.TXT', '.txt')", True),
    ("endsWith('file.txt', '.md')", False),
    ("format('{0}-{1}', 'a', 3)", "a-3"),
    ("format('{{0}} {0}', 'x')", "{0} x"),
    ("join(matrix.flags, ', ')", "a, b"),
    ("join(matrix.flags)", "a,b"),
    ("join('plain')", "plain"),
    ("toJSON(matrix.flags)", '[\n  "a",\n  "b"\n]'),
    ("toJSON('Café ✓')", '"Café ✓"'),
    ("toJSON(fromJSON('{\"name\": \"Zoë\"}'))", '{\n  "name": "Zoë"\n}'),
    ("toJSON(fromJSON('[2.0, 2.5, true, null]'))", '[\n  2,\n  2.5,\n  true,\n  null\n]'),
    ("fromJSON('{\"a\": [1, true]}').a[1]", True),
    ("fromJSON('3') == 3", True),
])
def test_functions(text: str, expected: Any) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(("text", "status", "expected"), [
    ("success()", {}, True),
    ("success()", {"failed": True, "succeeded": False}, False),
    ("failure()", {"failed": True, "succeeded": False}, True),
    ("failure()", {}, False),
    ("always()", {"failed": True, "succeeded": False, "was_cancelled": True}, True),
    ("cancelled()", {"was_cancelled": True}, True),
    ("cancelled()", {}, False),
    ("success()", {"was_cancelled": True}, False),
])
def test_status_functions(text: str, status: dict[str, bool], expected: bool) -> None:
    assert value(text, **status) is expected


def test_condition_implies_success() -> None:
    failed = Scope(contexts=CONTEXTS, succeeded=False, failed=True)
    assert evaluate_condition("github.event_name == 'push'", Scope(contexts=CONTEXTS)) is True
    assert evaluate_condition("github.event_name == 'push'", failed) is False
    assert evaluate_condition("always() && github.event_name == 'push'", failed) is True
    assert evaluate_condition("${{ failure() }}", failed) is True
    assert evaluate_condition("  ${{ github.ref == 'refs/heads/main' }}  ", Scope(contexts=CONTEXTS)) is True


def test_condition_rejects_text_around_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_condition("${{ github.ref }} == 'refs/heads/main'")
    assert caught.value.message == (
        "mixing text and '${{ }}' in a condition makes it a non-empty string, which is always true; write "
        "the whole condition inside one '${{ }}', or without it")
    assert caught.value.offset == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("python ${{ matrix.python-version }} on ${{ matrix.os }}", "python 3.12 on linux"),
    ("no expressions", "no expressions"),
    ("${{ 'a}}b' }}", "a}}b"),
    ("${{ matrix.n }}${{ inputs.dry }}${{ github.nothing }}.", "3true."),
    ("${{ matrix.flags }}", '["a","b"]'),
])
def test_templates(text: str, expected: str) -> None:
    assert render_text(text, Scope(contexts=CONTEXTS)) == expected


def test_whole_expression_keeps_its_type() -> None:
    assert evaluate_value("${{ matrix.n }}", Scope(contexts=CONTEXTS)) == 3
    assert evaluate_value("${{ inputs.dry }}", Scope(contexts=CONTEXTS)) is True
    assert evaluate_value("x${{ matrix.n }}", Scope(contexts=CONTEXTS)) == "x3"


@pytest.mark.parametrize(("text", "message", "offset"), [
    ("", "the expression is empty", 0),
    ("github.", "expected a property name after '.', found the end of the expression", 7),
    ("a ==", "expected a value, found the end of the expression", 4),
    ("(a == b", "expected ')' to close '(', found the end of the expression", 7),
    ("a = b", "unexpected '='; did you mean '=='?", 2),
    ("a & b", "unexpected '&'; did you mean '&&'?", 2),
    ("'open", "unterminated string: a closing ' is missing", 0),
    ('"double"', "strings use single quotes: 'text'", 0),
    ("a.*.b", "object filters ('.*') are not supported", 2),
    ("contain(a, b)", "unknown function contain(); did you mean contains()?", 0),
    ("eval('x')", "unknown function eval(); available: contains, startsWith, endsWith, format, join, "
                  "toJSON, fromJSON, success, failure, always, cancelled", 0),
    ("contains(a)", "contains() takes 2 arguments, got 1", 0),
    ("success(1)", "success() takes 0 arguments, got 1", 0),
    ("a b", "unexpected 'b' after a complete expression", 2),
    ("12abc", "invalid number '12a'", 0),
    ("a # b", "unexpected character '#'", 2),
    ("join()", "join() takes 1 or 2 arguments, got 0", 0),
])
def test_syntax_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert caught.value.message == message
    assert caught.value.offset == offset


def test_nesting_limit() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression("(" * 100 + "1" + ")" * 100)
    assert caught.value.message == "the expression is nested deeper than 64 levels"


def test_template_errors_point_into_text() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_template("echo ${{ matrix.os == }}")
    assert caught.value.offset == 22
    with pytest.raises(ExpressionError) as caught:
        parse_template("echo ${{ matrix.os")
    assert (caught.value.message, caught.value.offset) == ("'${{' is not closed by '}}'", 5)
    with pytest.raises(ExpressionError) as caught:
        parse_template("echo ${{  }}")
    assert caught.value.message == "the expression inside '${{ }}' is empty"


def test_runtime_errors() -> None:
    with pytest.raises(ExpressionError) as caught:
        value("fromJSON('{nope')")
    assert caught.value.message.startswith("fromJSON(): the argument is not valid JSON: ")
    with pytest.raises(ExpressionError) as caught:
        value("format('{1}', 'a')")
    assert caught.value.message == "format(): placeholder {1} has no argument"


def test_references_list_context_paths() -> None:
    node = parse_expression("contains(github.event.head_commit.message, matrix['os']) || env[inputs.x]")
    assert [(ref.path, ref.offset) for ref in references(node)] == [
        (("github", "event", "head_commit", "message"), 9),
        (("matrix", "os"), 43),
        (("env", None), 60),
        (("inputs", "x"), 64),
    ]


def test_static_properties() -> None:
    assert uses_status_function(parse_expression("always() && a"))
    assert not uses_status_function(parse_expression("a == 'b'"))
    assert yields_boolean(parse_expression("contains(github.ref, 'x')"))
    assert yields_boolean(parse_expression("a == b && !c"))
    assert not yields_boolean(parse_expression("a && b"))
    assert not yields_boolean(parse_expression("format('{0}', a)"))


# -- properties -----------------------------------------------------------------------

safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), safe_text)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@given(safe_text)
def test_string_literal_round_trip(text: str) -> None:
    assert value(quote(text)) == text


@given(st.integers(-10**12, 10**12))
def test_integer_literal_round_trip(number: int) -> None:
    assert value(str(number)) == number
    assert to_text(value(str(number))) == str(number)


@given(st.text(max_size=60))
@settings(max_examples=400)
def test_parser_never_fails_unexpectedly(text: str) -> None:
    """Any input either parses or raises ExpressionError with an offset inside the text."""
    try:
        node = parse_expression(text)
    except ExpressionError as exc:
        assert 0 <= exc.offset <= len(text)
    else:
        evaluate(node, Scope(contexts=CONTEXTS))


@given(st.text(max_size=60))
def test_templates_never_fail_unexpectedly(text: str) -> None:
    try:
        template = parse_template(text)
    except ExpressionError as exc:
        assert 0 <= exc.offset <= len(text)
    else:
        if template.is_plain:
            assert render_text(text, Scope()) == text


@given(scalars, scalars)
def test_equality_is_symmetric_and_consistent(left: Any, right: Any) -> None:
    contexts = {"v": {"a": left, "b": right}}
    scope = Scope(contexts=contexts)
    equal = evaluate(parse_expression("v.a == v.b"), scope)
    assert equal == evaluate(parse_expression("v.b == v.a"), scope)
    assert evaluate(parse_expression("v.a != v.b"), scope) is (not equal)


@given(scalars)
def test_value_equals_itself_unless_nan(item: Any) -> None:
    scope = Scope(contexts={"v": {"a": item}})
    assert evaluate(parse_expression("v.a == v.a"), scope) is True


@given(scalars, scalars)
def test_logical_operators_return_an_operand(left: Any, right: Any) -> None:
    scope = Scope(contexts={"v": {"a": left, "b": right}})
    conjunction = evaluate(parse_expression("v.a && v.b"), scope)
    disjunction = evaluate(parse_expression("v.a || v.b"), scope)
    assert conjunction == (right if is_truthy(left) else left)
    assert disjunction == (left if is_truthy(left) else right)
    assert evaluate(parse_expression("!v.a"), scope) is (not is_truthy(left))


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_ordering_matches_numbers(left: int, right: int) -> None:
    assert value(f"{left} < {right}") is (left < right)
    assert value(f"{left} <= {right}") is (left <= right)
    assert value(f"{left} > {right}") is (left > right)
    assert value(f"{left} >= {right}") is (left >= right)
    assert value(f"'{left}' == {left}") is True


@given(st.lists(safe_text, max_size=5), safe_text)
def test_contains_on_arrays_ignores_case(items: list[str], needle: str) -> None:
    scope = Scope(contexts={"v": {"items": items, "needle": needle}})
    found = evaluate(parse_expression("contains(v.items, v.needle)"), scope)
    assert found is any(item.casefold() == needle.casefold() for item in items)


@given(safe_text, safe_text)
def test_string_functions_ignore_case(text: str, part: str) -> None:
    scope = Scope(contexts={"v": {"t": text, "p": part}})
    assert evaluate(parse_expression("startsWith(v.t, v.p)"), scope) is text.casefold().startswith(
        part.casefold())
    ends = evaluate(parse_expression("endsWith(v.t, v.p)"), scope)
    assert ends is text.casefold().endswith(part.casefold())


@given(st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=10))
def test_tojson_fromjson_round_trip(item: Any) -> None:
    scope = Scope(contexts={"v": {"a": item}})
    assert evaluate(parse_expression("fromJSON(toJSON(v.a))"), scope) == json.loads(json.dumps(item))


def test_nan_is_falsy_and_unequal() -> None:
    assert value("'abc' < 1") is False
    assert is_truthy(math.nan) is False
    assert value("fromJSON('[1]') == fromJSON('[1]')") is False


@pytest.mark.parametrize(("clone_url", "expected"), [
    ("https://github.com/acme/web.git", "https://github.com"),
    ("http://gitea.local:3000/acme/web.git", "http://gitea.local:3000"),
    ("https://ci:secret@gitlab.example.com/acme/web.git", "https://gitlab.example.com"),
    ("git@github.com:acme/web.git", "https://github.com"),
    ("ssh://git@gitlab.com:2222/acme/web.git", "https://gitlab.com"),
    ("/srv/git/web.git", ""),
    ("file:///srv/git/web.git", ""),
])
def test_server_url_from_clone_url(clone_url: str, expected: str) -> None:
    assert server_url(clone_url) == expected
