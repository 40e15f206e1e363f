"""Forge webhooks turned into forge-neutral events.

Each forge module verifies its own signature scheme and maps its payloads to
`ForgeEvent`; everything after that point is the same for every forge.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

ZERO_SHA = "0" * 40
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

EventKind = Literal["push", "tag", "pull_request"]


@dataclass(frozen=True)
class RepositoryRef:
    """How a payload names its repository."""

    full_name: str
    clone_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ForgeEvent:
    """A push, tag push or pull request, whichever forge sent it."""

    forge: str
    kind: EventKind
    ref: str
    commit: str
    repository: RepositoryRef
    before: str | None = None
    branch: str | None = None
    tag: str | None = None
    message: str | None = None
    author: str | None = None
    sender: str | None = None
    changed_files: tuple[str, ...] | None = None
    pull_request: dict[str, object] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def trigger(self, delivery_id: str | None) -> dict[str, object]:
        """The JSON stored with the run: where it came from and what it is about."""
        trigger: dict[str, object] = {
            "forge": self.forge,
            "delivery_id": delivery_id,
            "sender": self.sender,
            "branch": self.branch,
            "tag": self.tag,
        }
        if self.changed_files is not None:
            trigger["changed_files"] = list(self.changed_files)
        if self.pull_request is not None:
            trigger["pull_request"] = self.pull_request
        trigger.update(self.extra)
        return trigger


@dataclass(frozen=True)
class IgnoredEvent:
    """A valid delivery that starts no run, with the reason shown to the sender."""

    reason: str
    repository: RepositoryRef | None = None
    ping: bool = False
    # The organization or user of a webhook set on the owner rather than on
    # one repository, for deliveries that name no repository.
    owner: str | None = None


class PayloadError(ValueError):
    """The payload lacks a field the event needs, or has the wrong type."""


def verify_hmac_sha256(secret: str, body: bytes, signature: str | None, *, prefix: str = "") -> bool:
    """Check an HMAC-SHA256 hex signature of `body` in constant time."""
    if not signature or not secret:
        return False
    if prefix:
        if not signature.startswith(prefix):
            return False
        signature = signature[len(prefix):]
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("utf-8"))


def sign_hmac_sha256(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of `body`, as forges put in their signature headers."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def tokens_match(given: str | None, expected: str) -> bool:
    """Compare a plain shared token (such as X-Gitlab-Token) in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def first_header(headers: Mapping[str, str], *names: str) -> str | None:
    """Return the value of the first of `names` that is present and not blank."""
    for name in names:
        value = headers.get(name)
        if value and value.strip():
            return value.strip()
    return None


def is_form(content_type: str | None) -> bool:
    """Return whether a Content-Type header names a URL-encoded form."""
    return (content_type or "").split(";", 1)[0].strip().lower() == FORM_MEDIA_TYPE


def form_payloads(body: bytes) -> list[str]:
    """Return the values of a form body's `payload` field; raise PayloadError for an invalid form."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"invalid form body: {exc}") from exc
    return fields.get("payload", [])


def decode_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parse a JSON body, or a form body whose `payload` field contains the JSON.

    Raises PayloadError with what is wrong.
    """
    if is_form(content_type):
        values = form_payloads(body)
        if not values:
            raise PayloadError("invalid form body: it has no 'payload' field")
        text: str | bytes = values[0]
    else:
        text = body
    try:
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"invalid JSON body: {exc}") from exc
    if not isinstance(payload, dict):
        raise PayloadError("invalid JSON body: expected an object")
    return payload


def require(payload: Mapping[str, Any], path: str, kind: type | tuple[type, ...] = str) -> Any:
    """Return the value at dotted `path`; raise PayloadError naming a missing or mistyped field."""
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise PayloadError(f"the payload has no field {path!r}")
        value = value[part]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(f"the payload field {path!r} has the wrong type")
    return value


def optional_str(payload: Any, *path: str) -> str | None:
    """Return the string at `path`, or None when any part is missing or not a string."""
    value: Any = payload
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value if isinstance(value, str) else None


def ref_names(ref: str) -> tuple[str | None, str | None]:
    """(branch, tag) named by a full ref; both None for other refs."""
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/"), None
    if ref.startswith("refs/tags/"):
        return None, ref.removeprefix("refs/tags/")
    return None, None


def changed_files(commits: Any, *, complete: bool = True) -> tuple[str, ...] | None:
    """Files added, modified or removed by the listed commits, or None when unknown.

    An empty list (such as a new branch's) or one the forge cut short
    (`complete` false) counts as unknown. The worker uses this list only when
    its mirror lacks the push's `before` commit: the list names the commits
    new to the forge, so after a forced push it can miss files that differ
    from `before`.
    """
    if not complete or not isinstance(commits, list) or not commits:
        return None
    files: dict[str, None] = {}
    for commit in commits:
        if not isinstance(commit, Mapping):
            return None
        for key in ("added", "modified", "removed"):
            entries = commit.get(key)
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, str):
                        files[entry] = None
    return tuple(files)


def commit_id(value: Any, path: str) -> str:
    """Check a 40 (SHA-1) or 64 (SHA-256) hex digit commit id and return it lower-cased."""
    if not isinstance(value, str) or len(value) not in (40, 64) or any(
        char not in "0123456789abcdefABCDEF" for char in value
    ):
        raise PayloadError(f"the payload field {path!r} is not a commit id")
    return value.lower()


Parsed = ForgeEvent | IgnoredEvent | tuple[ForgeEvent, ...]


@dataclass(frozen=True)
class Forge:
    """A forge's webhook protocol: its headers, its credential check and its payload parser.

    Header names are written as the forge documents them; lookups use their
    lower-case form, which is how the HTTP layer hands headers over.
    """

    name: str
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    # The header that carries the signature or token, in order of preference.
    credential_headers: tuple[str, ...]
    verify: Callable[[str, bytes, Mapping[str, str]], bool]
    parse: Callable[[str, Mapping[str, Any]], Parsed]
    # What the credential header carries, for error messages.
    credential_kind: str = "signature"

    def event_name(self, headers: Mapping[str, str]) -> str | None:
        return first_header(headers, *(name.lower() for name in self.event_headers))

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        return first_header(headers, *(name.lower() for name in self.delivery_headers))

    def has_credential(self, headers: Mapping[str, str]) -> bool:
        return first_header(headers, *(name.lower() for name in self.credential_headers)) is not None
