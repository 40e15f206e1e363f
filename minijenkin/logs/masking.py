"""Masking secret values in log lines before they leave the worker.

A job receives its secrets as `{name: value}` in its claim context. Every
occurrence of a value in the job's output is replaced with MASK. Output is
split into lines before masking, so each line of a multi-line value (a PEM
key) is masked on its own too. The string values inside a JSON secret (a
service-account file) are also masked one by one, because a step may print
just one field.

A step often prints a secret in another encoding: inside a JSON string,
URL-encoded in a query string, or base64-encoded (an HTTP Basic
`Authorization` header, a Kubernetes manifest). Those forms of each value
are masked too, as GitHub's runner masks them (actions/runner,
src/Runner.Common/Util/ValueEncoders.cs).

Values shorter than SECRET_MIN_LENGTH cannot be masked safely: masking "a"
would garble every line while hiding nothing. `validate_secret_value`
rejects them when a secret is stored; `SecretMasker` skips fragments of
that length (a lone `}` line of a JSON file, say).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import quote, quote_plus

from minijenkin.errors import InvalidInputError

MASK = "***"
SECRET_MIN_LENGTH = 4


def validate_secret_value(name: str, value: str) -> None:
    """Raise InvalidInputError when `value` is too short to be masked in logs.

    Leading and trailing whitespace does not count, because the masker
    matches a value's lines without it. Secret stores call this before they
    save a value.
    """
    length = len(value.strip())
    if length < SECRET_MIN_LENGTH:
        whitespace_note = " without leading and trailing whitespace" if length != len(value) else ""
        raise InvalidInputError(
            f"secret {name!r} is {length} characters long{whitespace_note}; values shorter than "
            f"{SECRET_MIN_LENGTH} characters cannot be masked in logs safely, so store a longer value",
            field="value")


def _json_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _base64_forms(value: str) -> set[str]:
    """Return the base64 forms of `value`: alone, and inside longer encoded data.

    Within a longer text (`user:secret` in a Basic credential) the encoding
    of the value depends on its byte offset modulo 3. For each offset, the
    characters that also carry bits of the bytes around the value are left
    out, so the middle part matches wherever the value sits.
    """
    raw = value.encode("utf-8")
    forms = {base64.b64encode(raw).decode("ascii")}
    for offset, skipped in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii").rstrip("=")
        partial = 1 if (offset + len(raw)) % 3 else 0
        forms.add(encoded[skipped:len(encoded) - partial])
    return forms


def _encoded_forms(value: str) -> set[str]:
    """Return `value` as a JSON string's content, URL-encoded, and in base64."""
    return {json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe=""), quote_plus(value, safe=""),
            *_base64_forms(value)}


def secret_fragments(value: str) -> set[str]:
    """Strings to mask for one secret: the value, each of its lines, its JSON string values, encoded forms."""
    fragments = {value, *_encoded_forms(value.strip())}
    # Stored log lines contain no LF or CR, so a value with one (a PEM key,
    # or a token saved with a trailing newline or CR LF) can only be
    # matched line by line.
    fragments.update(line.strip() for line in value.splitlines())
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        for text in _json_strings(parsed):
            fragments.add(text)
            # The escaped form is what a step prints when it echoes the file.
            fragments.add(json.dumps(text)[1:-1])
            # A JSON string may hold a multi-line value too (a private key).
            fragments.update(line.strip() for line in text.splitlines())
    return {fragment for fragment in fragments if len(fragment) >= SECRET_MIN_LENGTH}


class SecretMasker:
    """Replaces every fragment of the given secrets with MASK."""

    def __init__(self, values: Iterable[str]) -> None:
        fragments: set[str] = set()
        for value in values:
            fragments.update(secret_fragments(value))
        # Longest first, so a value wins over a shorter fragment it contains.
        ordered = sorted(fragments, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        encoded = sorted((fragment.encode("utf-8") for fragment in fragments), key=len,
                         reverse=True)
        self._byte_pattern = (re.compile(b"|".join(map(re.escape, encoded)))
                              if encoded else None)
        # UTF-8 length of the longest fragment. A line splitter keeps at
        # least one byte fewer than this after each cut of a long line, so
        # that no fragment is cut in two before it is masked.
        self.max_fragment_bytes = len(encoded[0]) if encoded else 0

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> SecretMasker:
        """Build a masker from a claim context's `secrets` mapping (name to value)."""
        secrets = context.get("secrets") or {}
        if not isinstance(secrets, Mapping):
            return cls([])
        return cls(str(value) for value in secrets.values() if value is not None)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def mask_bytes(self, data: bytes) -> bytes:
        """Replace every fragment's UTF-8 form in raw output that is not yet decoded."""
        if self._byte_pattern is None:
            return data
        return self._byte_pattern.sub(MASK.encode("ascii"), data)
