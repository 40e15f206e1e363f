"""Forge webhooks turned into forge-neutral events.

Each forge module verifies its own signature scheme and maps its payloads to
`ForgeEvent`; everything after that point is the same for every forge.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Literal

ZERO_SHA = "0" * 40

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
