"""SQL statements run on connections of their own, in threads, for lock-order tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

BLOCKED_TIMEOUT_SECONDS = 10


class BackgroundCall:
    """One statement on its own connection in a thread, with its backend pid and outcome.

    `result` is the statement's rows, or the class name of the error it raised.
    """

    def __init__(self, database_url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.pid = 0
        self.result: list[tuple[Any, ...]] | str | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(database_url, sql, params))
        self._thread.start()
        assert self._connected.wait(5), "the background connection did not open"

    def _run(self, database_url: str, sql: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            self.pid = conn.info.backend_pid
            self._connected.set()
            try:
                self.result = conn.execute(sql, params).fetchall()
            except psycopg.Error as exc:
                self.result = type(exc).__name__

    def wait_until_blocked(self, db: psycopg.Connection) -> None:
        """Wait until the statement waits for a lock; fail the test after 10 s."""
        deadline = time.monotonic() + BLOCKED_TIMEOUT_SECONDS
        while db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                         (self.pid,)).fetchone()["wait_event_type"] != "Lock":
            assert time.monotonic() < deadline, f"backend {self.pid} never waited for a lock"
            time.sleep(0.02)

    def join(self, timeout: float = 15) -> bool:
        """Wait for the statement to end; return whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
