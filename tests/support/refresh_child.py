"""A process that ticks the real metrics_refresh maintenance loop, for the leader test.

Usage: python -m tests.support.refresh_child DATABASE_URL START_AT SECONDS

Waits until the Unix time START_AT, then ticks for SECONDS and prints one
JSON object: the ticks it skipped and the refreshes it did (database clock
at start and end), taken from the loop's own log records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from minijenkin.config import load_settings
from minijenkin.db import create_pool
from minijenkin.maintenance import make_loops, run_tick_if_leader


class RefreshRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.refreshes: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == "metrics_refresh":
            self.refreshes.append({"started_at": record.started_at,  # type: ignore[attr-defined]
                                   "finished_at": record.finished_at})  # type: ignore[attr-defined]


async def main(conninfo: str, start_at: float, seconds: float) -> dict[str, object]:
    records = RefreshRecords()
    logging.getLogger("minijenkin").addHandler(records)
    logging.getLogger("minijenkin").setLevel(logging.INFO)
    settings = load_settings(database_url=conninfo, metrics_refresh_seconds=0)
    loop = next(loop for loop in make_loops(settings) if loop.name == "metrics_refresh")
    pool = create_pool(conninfo, application_name="refresh-child", min_size=1, max_size=1)
    await pool.open(wait=True)
    skipped = 0
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not await run_tick_if_leader(pool, loop):
                skipped += 1
                await asyncio.sleep(0.01)
    finally:
        await pool.close()
    return {"skipped": skipped, "refreshes": records.refreshes}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
    print(json.dumps(result))
