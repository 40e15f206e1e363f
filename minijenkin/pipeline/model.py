"""The validated pipeline, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT_MINUTES = 360


@dataclass(frozen=True)
class Step:
    run: str
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    line: int | None = None

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        first_line = self.run.strip().splitlines()[0] if self.run.strip() else ""
        return f"Run {first_line[:60]}"


@dataclass(frozen=True)
class JobDefinition:
    id: str
    name: str
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ()
    runs_on: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
    # Normalised retry policy (see minijenkin.pipeline.retry).
    retry: dict[str, Any] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True)
class Pipeline:
    file: str
    jobs: dict[str, JobDefinition]
    name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
