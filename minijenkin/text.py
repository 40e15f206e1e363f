"""Wording helpers for messages that count things."""

from __future__ import annotations


def noun(count: int, singular: str, plural: str | None = None) -> str:
    """Return the singular for a count of 1, else the plural (`singular` + "s" by default)."""
    if count == 1:
        return singular
    return plural if plural is not None else f"{singular}s"


def quantity(count: int, singular: str, plural: str | None = None) -> str:
    """Return the count with its noun, e.g. "1 job" or "2 jobs"."""
    return f"{count} {noun(count, singular, plural)}"
