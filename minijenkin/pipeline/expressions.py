"""`${{ }}` expressions: a tokenizer, parser and evaluator of our own.

Nothing here calls `eval` or imports code: an expression is parsed into a
small tree of literals, context references, operators and a fixed set of
functions, and that tree is walked. The semantics follow GitHub Actions'
expression documentation:

- literals: `null`, `true`, `false`, numbers (`711`, `-9.2`, `0xff`,
  `2.99e-2`) and single-quoted strings (`'it''s'`);
- context references: `github.ref`, `matrix['python-version']`; a missing
  property evaluates to null;
- operators, from the loosest binding to the tightest: `||`, `&&`,
  `==` `!=`, `<` `<=` `>` `>=`, `!`, then `.` and `[ ]`;
- `==` and the ordering operators compare strings ignoring case and convert
  mismatched types to numbers (null 0, true 1, false 0, a numeric string its
  value, anything else NaN, which compares false);
- `&&` and `||` return one of their operands, as in JavaScript;
- false, 0, '', null and NaN are falsy; everything else is truthy.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_EXPRESSION_CHARS = 10_000
MAX_DEPTH = 64

STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")
# name: (minimum arguments, maximum arguments or None for any number)
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "format": (1, None),
    "join": (1, 2),
    "tojson": (1, 1),
    "fromjson": (1, 1),
    **{name: (0, 0) for name in STATUS_FUNCTIONS},
}
FUNCTION_NAMES = ("contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON",
                  *STATUS_FUNCTIONS)
_DISPLAY_NAME = {name.lower(): name for name in FUNCTION_NAMES}
_BOOLEAN_FUNCTIONS = frozenset({"contains", "startswith", "endswith", *STATUS_FUNCTIONS})


class ExpressionError(ValueError):
    """An expression is invalid or cannot be evaluated; `offset` is where, in the source text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# -- syntax tree ------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any
    offset: int


@dataclass(frozen=True)
class ContextName:
    name: str
    offset: int


@dataclass(frozen=True)
class Property:
    target: Node
    name: str
    offset: int


@dataclass(frozen=True)
class Index:
    target: Node
    index: Node
    offset: int


@dataclass(frozen=True)
class Not:
    operand: Node
    offset: int


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Node
    right: Node
    offset: int


@dataclass(frozen=True)
class Call:
    name: str  # lower-case
    arguments: tuple[Node, ...]
    offset: int


Node = Literal | ContextName | Property | Index | Not | Binary | Call


# -- tokens -----------------------------------------------------------------------

_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",")


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, operator, end
    text: str
    value: Any
    offset: int


def _tokenize(text: str, base: int) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char.isspace():
            position += 1
            continue
        offset = base + position
        if char == "'":
            end = position + 1
            pieces: list[str] = []
            while True:
                quote = text.find("'", end)
                if quote < 0:
                    raise ExpressionError("unterminated string: a closing ' is missing", offset)
                pieces.append(text[end:quote])
                if text.startswith("''", quote):
                    pieces.append("'")
                    end = quote + 2
                    continue
                end = quote + 1
                break
            tokens.append(_Token("string", text[position:end], "".join(pieces), offset))
            position = end
            continue
        number = _NUMBER.match(text, position)
        if number and (char.isdigit() or char in "-."):
            literal = number.group(0)
            following = text[number.end():number.end() + 1]
            if following and (following.isalnum() or following == "_"):
                raise ExpressionError(f"invalid number {literal + following!r}", offset)
            tokens.append(_Token("number", literal, _parse_number(literal), offset))
            position = number.end()
            continue
        identifier = _IDENTIFIER.match(text, position)
        if identifier:
            tokens.append(_Token("name", identifier.group(0), identifier.group(0), offset))
            position = identifier.end()
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, position)), None)
        if operator is None:
            if char == "*":
                raise ExpressionError("object filters ('.*') are not supported", offset)
            if char == '"':
                raise ExpressionError("strings use single quotes: 'text'", offset)
            if char in "=&|":
                raise ExpressionError(f"unexpected {char!r}; did you mean {char * 2!r}?", offset)
            raise ExpressionError(f"unexpected character {char!r}", offset)
        tokens.append(_Token("operator", operator, operator, offset))
        position += len(operator)
    tokens.append(_Token("end", "", None, base + len(text)))
    return tokens


def _parse_number(literal: str) -> float | int:
    negative = literal.startswith("-")
    digits = literal[1:] if negative else literal
    if digits[:2].lower() == "0x":
        value: float | int = int(digits, 16)
    elif re.fullmatch(r"\d+", digits):
        value = int(digits)
    else:
        value = float(digits)
    return -value if negative else value


# -- parser -----------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, base: int) -> None:
        self.tokens = _tokenize(text, base)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, *operators: str) -> _Token | None:
        token = self.current
        if token.kind == "operator" and token.text in operators:
            self.index += 1
            return token
        return None

    def expect(self, operator: str, context: str) -> _Token:
        token = self.accept(operator)
        if token is None:
            raise ExpressionError(f"expected {operator!r} {context}, found {self._describe()}",
                                  self.current.offset)
        return token

    def _describe(self) -> str:
        token = self.current
        return "the end of the expression" if token.kind == "end" else repr(token.text)

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise ExpressionError("the expression is empty", self.current.offset)
        node = self.parse_or()
        if self.current.kind != "end":
            raise ExpressionError(f"unexpected {self._describe()} after a complete expression",
                                  self.current.offset)
        return node

    def _nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"the expression is nested deeper than {MAX_DEPTH} levels",
                                  self.current.offset)

    def parse_or(self) -> Node:
        self._nested()
        node = self.parse_and()
        while token := self.accept("||"):
            node = Binary("||", node, self.parse_and(), token.offset)
        self.depth -= 1
        return node

    def parse_and(self) -> Node:
        node = self.parse_equality()
        while token := self.accept("&&"):
            node = Binary("&&", node, self.parse_equality(), token.offset)
        return node

    def parse_equality(self) -> Node:
        node = self.parse_comparison()
        while token := self.accept("==", "!="):
            node = Binary(token.text, node, self.parse_comparison(), token.offset)
        return node

    def parse_comparison(self) -> Node:
        node = self.parse_unary()
        while token := self.accept("<", "<=", ">", ">="):
            node = Binary(token.text, node, self.parse_unary(), token.offset)
        return node

    def parse_unary(self) -> Node:
        if token := self.accept("!"):
            self._nested()
            operand = self.parse_unary()
            self.depth -= 1
            return Not(operand, token.offset)
        return self.parse_postfix()

    def parse_postfix(self) -> Node:
        node = self.parse_primary()
        while True:
            if token := self.accept("."):
                name = self.current
                if name.kind != "name":
                    raise ExpressionError(f"expected a property name after '.', found {self._describe()}",
                                          name.offset)
                self.advance()
                node = Property(node, name.text, token.offset)
            elif token := self.accept("["):
                index = self.parse_or()
                self.expect("]", "to close '['")
                if isinstance(index, Literal) and isinstance(index.value, str):
                    node = Property(node, index.value, token.offset)
                else:
                    node = Index(node, index, token.offset)
            else:
                return node

    def parse_primary(self) -> Node:
        token = self.current
        if token.kind in ("number", "string"):
            self.advance()
            return Literal(token.value, token.offset)
        if token.kind == "name":
            self.advance()
            lowered = token.text.lower()
            if self.accept("("):
                return self._call(token)
            if lowered in ("true", "false"):
                return Literal(lowered == "true", token.offset)
            if lowered == "null":
                return Literal(None, token.offset)
            return ContextName(token.text, token.offset)
        if self.accept("("):
            node = self.parse_or()
            self.expect(")", "to close '('")
            return node
        raise ExpressionError(f"expected a value, found {self._describe()}", token.offset)

    def _call(self, name: _Token) -> Call:
        lowered = name.text.lower()
        if lowered not in FUNCTIONS:
            close = difflib.get_close_matches(name.text, FUNCTION_NAMES, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}()?" if close else f"; available: {', '.join(FUNCTION_NAMES)}"
            raise ExpressionError(f"unknown function {name.text}(){hint}", name.offset)
        arguments: list[Node] = []
        if not self.accept(")"):
            while True:
                arguments.append(self.parse_or())
                if self.accept(")"):
                    break
                self.expect(",", "between function arguments")
        minimum, maximum = FUNCTIONS[lowered]
        if len(arguments) < minimum or (maximum is not None and len(arguments) > maximum):
            expected = (f"{minimum}" if minimum == maximum
                        else f"at least {minimum}" if maximum is None
                        else f"{minimum} or {maximum}")
            raise ExpressionError(
                f"{_DISPLAY_NAME[lowered]}() takes {expected} argument{'s' if expected != '1' else ''}, "
                f"got {len(arguments)}", name.offset)
        return Call(lowered, tuple(arguments), name.offset)


def parse_expression(text: str, *, offset: int = 0) -> Node:
    """Parse one expression (without `${{ }}`); raise ExpressionError with the offset of the problem.

    `offset` is added to every offset, so errors point into a larger text.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters", offset)
    return _Parser(text, offset).parse()


# -- templates: text with ${{ }} ---------------------------------------------------


@dataclass(frozen=True)
class Embedded:
    """One `${{ expression }}` inside a template; `start` is the offset of `${{`."""

    node: Node
    source: str
    start: int


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Embedded, ...]

    @property
    def expressions(self) -> tuple[Embedded, ...]:
        return tuple(part for part in self.parts if isinstance(part, Embedded))

    @property
    def is_plain(self) -> bool:
        return not self.expressions


def _closing_braces(text: str, start: int) -> int:
    """Offset of the `}}` that ends an expression starting at `start`, skipping quoted strings."""
    position = start
    in_string = False
    while position < len(text):
        char = text[position]
        if char == "'":
            in_string = not in_string
        elif not in_string and text.startswith("}}", position):
            return position
        position += 1
    return -1


def parse_template(text: str) -> Template:
    """Split `text` into literal parts and `${{ }}` expressions; raise ExpressionError."""
    parts: list[str | Embedded] = []
    position = 0
    while True:
        start = text.find("${{", position)
        if start < 0:
            if position < len(text):
                parts.append(text[position:])
            break
        if start > position:
            parts.append(text[position:start])
        end = _closing_braces(text, start + 3)
        if end < 0:
            raise ExpressionError("'${{' is not closed by '}}'", start)
        source = text[start + 3:end]
        if not source.strip():
            raise ExpressionError("the expression inside '${{ }}' is empty", start)
        parts.append(Embedded(parse_expression(source, offset=start + 3), source.strip(), start))
        position = end + 2
    return Template(text, tuple(parts))


def parse_condition(text: str) -> Node:
    """Parse an `if:` value: a bare expression, or one wrapped whole in `${{ }}`."""
    stripped = text.strip()
    lead = len(text) - len(text.lstrip())
    if stripped.startswith("${{") and stripped.endswith("}}"):
        end = _closing_braces(stripped, 3)
        if end == len(stripped) - 2:
            return parse_expression(stripped[3:end], offset=lead + 3)
    if "${{" in stripped:
        raise ExpressionError(
            "mixing text and '${{ }}' in a condition makes it a non-empty string, which is always "
            "true; write the whole condition inside one '${{ }}', or without it",
            lead + stripped.find("${{"))
    return parse_expression(text)


# -- analysis ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A context path an expression reads, e.g. ('github', 'event', 'head_commit', 'message').

    The path stops at the first computed index (`matrix[some.value]`) and
    then ends with None.
    """

    path: tuple[str | None, ...]
    offset: int


def references(node: Node) -> list[Reference]:
    """Every context path `node` reads, in source order."""
    found: list[Reference] = []

    def path_of(item: Node) -> tuple[tuple[str | None, ...], int] | None:
        if isinstance(item, ContextName):
            return (item.name,), item.offset
        if isinstance(item, Property):
            inner = path_of(item.target)
            if inner is None:
                return None
            if inner[0][-1] is None:
                return inner
            return (*inner[0], item.name), inner[1]
        if isinstance(item, Index):
            inner = path_of(item.target)
            if inner is None:
                return None
            if inner[0][-1] is None:
                return inner
            return (*inner[0], None), inner[1]
        return None

    def visit(item: Node) -> None:
        if isinstance(item, ContextName | Property | Index):
            path = path_of(item)
            if path is not None:
                found.append(Reference(*path))
            # Indexes inside the chain are references of their own.
            current: Node = item
            while isinstance(current, Property | Index):
                if isinstance(current, Index):
                    visit(current.index)
                current = current.target
            if not isinstance(current, ContextName):
                visit(current)
        elif isinstance(item, Not):
            visit(item.operand)
        elif isinstance(item, Binary):
            visit(item.left)
            visit(item.right)
        elif isinstance(item, Call):
            for argument in item.arguments:
                visit(argument)

    visit(node)
    found.sort(key=lambda reference: reference.offset)
    return found


def calls(node: Node) -> list[Call]:
    """Every function call in `node`."""
    found: list[Call] = []

    def visit(item: Node) -> None:
        if isinstance(item, Call):
            found.append(item)
            for argument in item.arguments:
                visit(argument)
        elif isinstance(item, Property):
            visit(item.target)
        elif isinstance(item, Index):
            visit(item.target)
            visit(item.index)
        elif isinstance(item, Not):
            visit(item.operand)
        elif isinstance(item, Binary):
            visit(item.left)
            visit(item.right)

    visit(node)
    return found


def uses_status_function(node: Node) -> bool:
    """Whether `node` calls success(), failure(), always() or cancelled()."""
    return any(call.name in STATUS_FUNCTIONS for call in calls(node))


def yields_boolean(node: Node) -> bool:
    """Whether `node` always evaluates to true or false (never to a value it read)."""
    if isinstance(node, Literal):
        return isinstance(node.value, bool)
    if isinstance(node, Not):
        return True
    if isinstance(node, Binary):
        if node.operator in ("&&", "||"):
            return yields_boolean(node.left) and yields_boolean(node.right)
        return True
    if isinstance(node, Call):
        return node.name in _BOOLEAN_FUNCTIONS
    return False


# -- values ------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def is_truthy(value: Any) -> bool:
    kind = _kind(value)
    if kind == "null":
        return False
    if kind == "boolean":
        return bool(value)
    if kind == "number":
        return not (value == 0 or math.isnan(value))
    if kind == "string":
        return value != ""
    return True


def to_number(value: Any) -> float:
    kind = _kind(value)
    if kind == "null":
        return 0.0
    if kind in ("boolean", "number"):
        return float(value)
    if kind == "string":
        # GitHub's runner (ExpressionUtility.ParseNumber) follows JavaScript's
        # Number(): a sign, leading zeros, '1.' and '.5' are numbers too.
        text = value.strip()
        if text == "":
            return 0.0
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
            return float(text)
        if re.fullmatch(r"-?0[xX][0-9a-fA-F]+", text):
            return float(_parse_number(text))
        if re.fullmatch(r"0o[0-7]+", text):
            return float(int(text[2:], 8))
        if text in ("Infinity", "-Infinity"):
            return float(text.replace("Infinity", "inf"))
        return math.nan
    return math.nan


def format_number(value: float | int) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return str(value)


def to_text(value: Any) -> str:
    """The string a value becomes when interpolated into text."""
    kind = _kind(value)
    if kind == "null":
        return ""
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "number":
        return format_number(value)
    if kind == "string":
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def loose_equals(left: Any, right: Any) -> bool:
    left_kind, right_kind = _kind(left), _kind(right)
    if left_kind == right_kind:
        if left_kind == "string":
            return bool(left.casefold() == right.casefold())
        if left_kind in ("array", "object"):
            return left is right
        return bool(left == right)
    if "array" in (left_kind, right_kind) or "object" in (left_kind, right_kind):
        return False
    return to_number(left) == to_number(right)


def _compare(operator: str, left: Any, right: Any) -> bool:
    if _kind(left) == "string" and _kind(right) == "string":
        a, b = left.casefold(), right.casefold()
    else:
        a, b = to_number(left), to_number(right)  # type: ignore[assignment]
        if math.isnan(a) or math.isnan(b):  # type: ignore[arg-type]
            return False
    if operator == "<":
        return bool(a < b)
    if operator == "<=":
        return bool(a <= b)
    if operator == ">":
        return bool(a > b)
    return bool(a >= b)


def _lookup(target: Any, name: str) -> Any:
    if isinstance(target, Mapping):
        if name in target:
            return target[name]
        lowered = name.lower()
        for key, value in target.items():
            if isinstance(key, str) and key.lower() == lowered:
                return value
        return None
    if isinstance(target, list | tuple):
        number = to_number(name)
        if not math.isnan(number) and number.is_integer() and 0 <= number < len(target):
            return target[int(number)]
    return None


def _format(template: str, arguments: list[Any], offset: int) -> str:
    output: list[str] = []
    position = 0
    while position < len(template):
        char = template[position]
        if template.startswith("{{", position):
            output.append("{")
            position += 2
        elif template.startswith("}}", position):
            output.append("}")
            position += 2
        elif char == "{":
            end = template.find("}", position)
            index_text = template[position + 1:end] if end > 0 else ""
            if not index_text.isdigit():
                raise ExpressionError(f"format(): invalid placeholder in {template!r}; use {{0}}, {{1}}, ...",
                                      offset)
            index = int(index_text)
            if index >= len(arguments):
                raise ExpressionError(f"format(): placeholder {{{index}}} has no argument", offset)
            output.append(to_text(arguments[index]))
            position = end + 1
        elif char == "}":
            raise ExpressionError(f"format(): unmatched '}}' in {template!r}; write '}}}}'", offset)
        else:
            output.append(char)
            position += 1
    return "".join(output)


# -- evaluation --------------------------------------------------------------------


@dataclass
class Scope:
    """The contexts an expression reads, by name, and the job or step status."""

    contexts: Mapping[str, Any] = field(default_factory=dict)
    # Values of success(), failure() and cancelled(); always() is always true.
    succeeded: bool = True
    failed: bool = False
    was_cancelled: bool = False
    # Called with the path of each context value read, e.g. to log unknown secrets.
    on_read: Callable[[tuple[str, ...], Any], None] | None = None


def evaluate(node: Node, scope: Scope) -> Any:
    """Evaluate a parsed expression; raise ExpressionError for a runtime problem (e.g. bad JSON)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, ContextName):
        value = _lookup(scope.contexts, node.name)
        if scope.on_read is not None:
            scope.on_read((node.name,), value)
        return value
    if isinstance(node, Property):
        value = _lookup(evaluate(node.target, scope), node.name)
        if scope.on_read is not None:
            path = _static_path(node)
            if path is not None:
                scope.on_read(path, value)
        return value
    if isinstance(node, Index):
        target = evaluate(node.target, scope)
        return _lookup(target, to_text(evaluate(node.index, scope)))
    if isinstance(node, Not):
        return not is_truthy(evaluate(node.operand, scope))
    if isinstance(node, Binary):
        if node.operator == "&&":
            left = evaluate(node.left, scope)
            return evaluate(node.right, scope) if is_truthy(left) else left
        if node.operator == "||":
            left = evaluate(node.left, scope)
            return left if is_truthy(left) else evaluate(node.right, scope)
        left, right = evaluate(node.left, scope), evaluate(node.right, scope)
        if node.operator == "==":
            return loose_equals(left, right)
        if node.operator == "!=":
            return not loose_equals(left, right)
        return _compare(node.operator, left, right)
    return _call(node, scope)


def _static_path(node: Node) -> tuple[str, ...] | None:
    if isinstance(node, ContextName):
        return (node.name,)
    if isinstance(node, Property):
        inner = _static_path(node.target)
        return None if inner is None else (*inner, node.name)
    return None


def _call(node: Call, scope: Scope) -> Any:
    name = node.name
    if name == "success":
        return scope.succeeded and not scope.was_cancelled
    if name == "failure":
        return scope.failed
    if name == "always":
        return True
    if name == "cancelled":
        return scope.was_cancelled
    arguments = [evaluate(argument, scope) for argument in node.arguments]
    if name == "contains":
        haystack, needle = arguments
        if _kind(haystack) == "array":
            return any(loose_equals(item, needle) for item in haystack)
        return to_text(needle).casefold() in to_text(haystack).casefold()
    if name == "startswith":
        return to_text(arguments[0]).casefold().startswith(to_text(arguments[1]).casefold())
    if name == "endswith":
        return to_text(arguments[0]).casefold().endswith(to_text(arguments[1]).casefold())
    if name == "format":
        return _format(to_text(arguments[0]), arguments[1:], node.offset)
    if name == "join":
        separator = to_text(arguments[1]) if len(arguments) > 1 else ","
        if _kind(arguments[0]) == "array":
            return separator.join(to_text(item) for item in arguments[0])
        return to_text(arguments[0])
    if name == "tojson":
        # GitHub's runner (actions/runner, Expressions2/Sdk/Functions/ToJson.cs) writes
        # strings with Newtonsoft's default escaping, which keeps non-ASCII characters,
        # and numbers as they are interpolated, so 2.0 becomes 2.
        return json.dumps(_whole_floats_as_int(arguments[0]), indent=2, ensure_ascii=False, default=str)
    # fromjson
    try:
        return json.loads(to_text(arguments[0]))
    except ValueError as exc:
        raise ExpressionError(f"fromJSON(): the argument is not valid JSON: {exc}", node.offset) from exc


def _whole_floats_as_int(value: Any) -> Any:
    """Copy `value` with whole floats as ints, which json.dumps then writes as format_number does."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_floats_as_int(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_whole_floats_as_int(item) for item in value]
    return value


def render(template: Template, scope: Scope) -> str:
    """The template's text with every `${{ }}` replaced by its value as a string."""
    output: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            output.append(part)
        else:
            output.append(to_text(evaluate(part.node, scope)))
    return "".join(output)


def render_text(text: str, scope: Scope) -> str:
    """Parse and render `text` in one call."""
    return render(parse_template(text), scope)


def evaluate_condition(text: str, scope: Scope) -> bool:
    """Evaluate an `if:` value; without a status function, `success() && (...)` is implied."""
    node = parse_condition(text)
    if not uses_status_function(node):
        node = Binary("&&", Call("success", (), 0), node, 0)
    return is_truthy(evaluate(node, scope))


def evaluate_value(text: str, scope: Scope) -> Any:
    """The value of a field that may be one whole `${{ }}` (keeping its type) or a template."""
    template = parse_template(text)
    if len(template.parts) == 1 and isinstance(template.parts[0], Embedded):
        return evaluate(template.parts[0].node, scope)
    return render(template, scope)
