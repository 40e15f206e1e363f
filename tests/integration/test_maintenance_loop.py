"""The maintenance loop runner: a cancelled loop stops, even when its tick lost the cancel."""

from __future__ import annotations

import asyncio

import psycopg

from minijenkin.db import create_pool
from minijenkin.maintenance import Loop, run_loop


def test_cancelled_loop_stops_after_swallowing_tick(database_url: str) -> None:
    # Python 3.11's asyncio.wait_for, which psycopg_pool uses to wait for a
    # connection, returns the result instead of raising CancelledError when
    # the result and the cancel arrive together. This tick does the same.
    started = asyncio.Event()

    async def swallowing_tick(conn: psycopg.AsyncConnection) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return

    async def cancel_loop() -> asyncio.Task[None]:
        pool = create_pool(database_url, application_name="test-maintenance", min_size=1, max_size=1)
        await pool.open()
        try:
            task = asyncio.create_task(run_loop(pool, Loop("swallowing", 60.0, swallowing_tick)))
            await asyncio.wait_for(started.wait(), timeout=10)
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=5)
                raise AssertionError("the loop went on after its cancel")
            return task
        finally:
            await pool.close()

    task = asyncio.run(cancel_loop())

    assert task.cancelled() is True
