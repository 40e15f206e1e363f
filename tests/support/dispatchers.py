"""Dispatcher processes for tests: real `python -m minijenkin dispatcher` children."""

from __future__ import annotations

from tests.support.workers import MinijenkinProcess

# Short timings so that retry and lease tests finish quickly.
FAST_NOTIFY_ENV = {
    "MINIJENKIN_NOTIFY_POLL_SECONDS": "0.2",
    "MINIJENKIN_NOTIFY_TIMEOUT_SECONDS": "2",
    "MINIJENKIN_NOTIFY_BACKOFF_SECONDS": "0.2",
    "MINIJENKIN_NOTIFY_BACKOFF_MAX_SECONDS": "1",
    "MINIJENKIN_NOTIFY_DEAD_LETTER_SECONDS": "600",
}


class DispatcherProcess(MinijenkinProcess):
    command = "dispatcher"
    fast_env = FAST_NOTIFY_ENV
