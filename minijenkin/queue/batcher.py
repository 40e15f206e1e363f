"""Batching job results so that many finishes share one transaction.

Every transaction that sends NOTIFY (finishing a job does, to wake workers
and viewers) takes a cluster-wide lock while it commits, so commits of
finishing jobs are serialised and each pays a full WAL flush. Reporting
results one by one capped the queue near one finish per flush. The batcher
waits LINGER_SECONDS after the first result arrives (or until BATCH_MAX
results are waiting) and reports them all in one call, unless the worker's
next claim takes them first (take) to report them in its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from minijenkin.queue.client import FinishItem, QueueClient

logger = logging.getLogger(__name__)

LINGER_SECONDS = 0.002
BATCH_MAX = 100

Pending = list[tuple[FinishItem, "asyncio.Future[str]"]]


class FinishBatcher:
    def __init__(self, client: QueueClient, *, linger_seconds: float = LINGER_SECONDS,
                 batch_max: int = BATCH_MAX) -> None:
        self.client = client
        self.linger_seconds = linger_seconds
        self.batch_max = batch_max
        self._pending: Pending = []
        self._full = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    async def finish(self, item: FinishItem) -> str:
        """Report one result; return 'finished', 'retrying' or 'stale'.

        Raises the database error of the batch when the call failed; the
        caller decides whether to retry.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.batch_max:
            self._full.set()
        self._ensure_sender()
        return await future

    def take(self, accept: Callable[[FinishItem], bool] | None = None) -> Pending:
        """Remove and return up to batch_max waiting results, for the caller to report.

        With `accept`, only the results it accepts. The caller passes them
        to settle() when its call succeeded, otherwise to put_back(), so that
        the batcher reports them itself.
        """
        if accept is None:
            batch = self._pending[:self.batch_max]
            del self._pending[:len(batch)]
            return batch
        batch: Pending = []
        left: Pending = []
        for entry in self._pending:
            if len(batch) < self.batch_max and accept(entry[0]):
                batch.append(entry)
            else:
                left.append(entry)
        self._pending = left
        return batch

    @staticmethod
    def settle(batch: Pending, outcomes: dict[int, str]) -> None:
        """Hand each waiting caller its outcome ('stale' when the database returned none)."""
        for item, future in batch:
            if not future.done():
                future.set_result(outcomes.get(item.job.job_id, "stale"))

    def put_back(self, batch: Pending) -> None:
        """Queue taken results again, ahead of newer ones."""
        self._pending[:0] = batch
        if batch:
            self._ensure_sender()

    def _ensure_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_after_linger(), name="finish-batch")

    async def _send_after_linger(self) -> None:
        try:
            await asyncio.wait_for(self._full.wait(), timeout=self.linger_seconds)
        except TimeoutError:
            pass
        while self._pending:
            self._full.clear()
            batch = self.take()
            try:
                outcomes = await self.client.finish_many([item for item, _ in batch])
            except Exception as exc:  # handed to every waiting caller, which logs and retries
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.settle(batch, outcomes)
