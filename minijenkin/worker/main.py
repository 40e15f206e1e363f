"""The worker process: claims jobs, runs them, heartbeats, listens for wake-ups.

One process runs up to `worker_concurrency` jobs as asyncio tasks over a
fixed set of database connections: a pool of at most two for queue calls,
one for log shipping and one for LISTEN. Connection use therefore grows with
worker processes, not with job slots.

Start-up: a fresh instance id (uuid4) is registered, so a worker restarted
under the same host name never inherits its predecessor's jobs; those are
recovered by the reaper once the old instance's heartbeat expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql as pg_sql

from minijenkin import __version__
from minijenkin.config import Settings
from minijenkin.crypto import Keyring, load_keyring
from minijenkin.db import TRANSIENT_ERRORS, connect_async, create_pool
from minijenkin.queue.batcher import FinishBatcher, Pending
from minijenkin.queue.client import ClaimedJob, FinishItem, QueueClient, RetryPolicy
from minijenkin.worker.attempt_inputs import (
    AttemptInputUnavailableError,
    load_ancestor_statuses,
    load_needs_outputs,
    load_variables,
)
from minijenkin.worker.deploy_lock import DeployLock, needs_deploy_lock
from minijenkin.worker.executor import (
    ABANDONED,
    CANCELLED,
    DEPLOY_LOCK_LOST,
    HANDED_BACK,
    JobExecution,
    Outcome,
)
from minijenkin.worker.isolation import resolve_run_as, supervisor_gone
from minijenkin.worker.schedules import sync_schedules
from minijenkin.worker.secrets import load_job_secrets
from minijenkin.worker.shipper import LogShipper

logger = logging.getLogger(__name__)

JOB_CHANNEL = "mj_jobs_v1"
CANCEL_CHANNEL = "mj_cancel_v1"
RECONNECT_DELAY_MAX_SECONDS = 5.0
# Calls of mj_deploy_acquire_v1 before a deploy job is failed for a database
# error (a lost connection, a deadlock victim), with doubling pauses from 0.2 s.
DEPLOY_LOCK_TRIES = 4

# Why the claim loop ran a claim; logged with every claimed job.
WAKE_START = "start"
WAKE_NOTIFY = "notify"          # a NOTIFY on mj_jobs_v1
WAKE_CATCH_UP = "catch_up"      # the LISTEN connection was (re)established
WAKE_SLOT_FREE = "slot_free"    # a job of this worker ended
WAKE_BACKLOG = "backlog"        # the previous claim filled every free slot
WAKE_POLL = "poll"              # worker_poll_seconds passed without a wake-up


class Worker:
    def __init__(self, settings: Settings, conninfo: str) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.id = uuid.uuid4()
        self.hostname = socket.gethostname()
        self.name = f"{self.hostname}:{os.getpid()}"
        # Ids logged with every message of this worker; callers copy it.
        self.log_extra = {"worker_id": str(self.id), "worker": self.name}
        self.labels = list(settings.worker_labels)
        self.concurrency = settings.worker_concurrency
        self.data_dir = settings.data_dir
        self.run_as = resolve_run_as(settings.worker_run_as)
        self.work_root = Path(self.data_dir) / "work"
        if self.run_as is not None:
            # The data directory (root's home by default) may not let other
            # users through, so the user's workspaces live under the system's
            # temporary folder instead, in a folder they cannot list.
            self.work_root = Path(tempfile.mkdtemp(prefix="minijenkin-work-"))
            self.work_root.chmod(0o711)
        self.log_cap_bytes = settings.log_max_bytes_per_job
        self.pool = create_pool(conninfo, application_name="minijenkin-worker", min_size=1,
                                max_size=2, check_on_checkout=False)
        # A queue call with no response after a lease cannot help: the reaper
        # presumes this worker lost by then. Giving up frees the claim lock
        # and lets the next call try another connection.
        self.client = QueueClient(self.pool, self.id, RetryPolicy(
            settings.retry_backoff_seconds, settings.retry_backoff_max_seconds),
            call_timeout_seconds=settings.worker_lease_seconds)
        self.finisher = FinishBatcher(self.client)
        self.shipper = LogShipper(conninfo)
        # Jobs whose steps run now; their number is bounded by `concurrency`.
        self.executions: dict[int, JobExecution] = {}
        # Jobs whose steps have ended but whose result is still being
        # reported. They no longer take a slot, but their leases are still
        # this worker's, so heartbeats must keep listing them.
        self.reporting: dict[int, JobExecution] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.wake_reason = WAKE_START
        self.stopping = asyncio.Event()
        self.stop_now = asyncio.Event()
        # Claims and heartbeats never overlap: the heartbeat must list every
        # job this worker holds (see mj_worker_heartbeat_v1).
        self.claim_lock = asyncio.Lock()
        # When the last heartbeat that reached the database was sent
        # (time.monotonic()). The database stamped it later, so the lease
        # expires here no later than the reaper can declare it expired.
        self.last_heartbeat = time.monotonic()
        # Set by a cancel notice: heartbeat now rather than at the next tick.
        self.heartbeat_now = asyncio.Event()
        self.keyring: Keyring | None = None

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        self._install_signal_handlers()
        self.work_root.mkdir(parents=True, exist_ok=True)
        await self.pool.open(wait=False)
        await self.shipper.start()
        if not await self._register():
            await self._close()
            return
        logger.info("worker started", extra={
            **self.log_extra, "action": "worker_start", "labels": ",".join(self.labels) or "-",
            "concurrency": self.concurrency, "version": __version__,
            "run_as": self.run_as.name if self.run_as else "-"})
        background = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._fence_loop(), name="fence"),
            asyncio.create_task(self._listen_loop(), name="listen"),
        ]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._close()
        logger.info("worker stopped", extra={**self.log_extra, "action": "worker_stop"})

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        if supervisor_gone(signal.SIGTERM):
            logger.warning("minijenkin up that started this worker has stopped; stopping too",
                           extra={**self.log_extra, "action": "worker_supervisor_gone"})
            self.request_stop()

    def request_stop(self) -> None:
        """First call: stop claiming and let jobs finish. Second call: hand them back now."""
        if self.stopping.is_set():
            logger.info("second stop signal: handing running jobs back now",
                        extra={**self.log_extra, "action": "worker_stop_now"})
            self.stop_now.set()
        else:
            logger.info("stop signal: finishing running jobs", extra={
                **self.log_extra, "action": "worker_stopping", "running": len(self.executions),
                "grace_seconds": self.settings.worker_shutdown_grace_seconds})
        self.stopping.set()
        self.wake.set()

    def _wake(self, reason: str) -> None:
        """Wake the claim loop; the first reason since its last claim is the one logged."""
        if not self.wake.is_set():
            self.wake_reason = reason
        self.wake.set()

    async def _register(self) -> bool:
        delay = 0.2
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                await self.client.register(
                    name=self.name, hostname=self.hostname, pid=os.getpid(), labels=self.labels,
                    concurrency=self.concurrency, version=__version__)
                self.last_heartbeat = sent
                return True
            except TRANSIENT_ERRORS as exc:
                logger.warning("cannot register with the database; retrying", extra={
                    **self.log_extra, "action": "worker_register_retry", "error": str(exc)})
                await self._sleep_unless_stopping(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
        return False

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        if self.tasks:
            grace = self.settings.worker_shutdown_grace_seconds
            waiter = asyncio.ensure_future(asyncio.wait(set(self.tasks), timeout=grace))
            stop_now = asyncio.ensure_future(self.stop_now.wait())
            await asyncio.wait({waiter, stop_now}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stop_now.cancel()
        if self.executions:
            for execution in list(self.executions.values()):
                execution.request_stop(HANDED_BACK)
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.shipper.flush()
        try:
            handed_back = await self.client.stop()
        except TRANSIENT_ERRORS as exc:
            logger.error("could not mark the worker stopped; the reaper will recover its jobs",
                         extra={**self.log_extra, "action": "worker_stop_error", "error": str(exc)})
            return
        if handed_back:
            logger.info("jobs handed back to the queue", extra={
                **self.log_extra, "action": "worker_hand_back",
                "job_ids": ",".join(map(str, handed_back))})

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.shipper.close()
        await self.pool.close()
        if self.run_as is not None and not self.settings.keep_workspaces:
            shutil.rmtree(self.work_root, ignore_errors=True)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    # -- claiming -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        delay = 0.2
        while not self.stopping.is_set():
            reason = self.wake_reason
            self.wake.clear()
            free = self.concurrency - len(self.executions)
            claimed: list[ClaimedJob] = []
            if free > 0:
                try:
                    claimed = await self._claim(free, reason)
                    delay = 0.2
                except TRANSIENT_ERRORS as exc:
                    logger.warning("claim failed; retrying", extra={
                        **self.log_extra, "action": "claim_retry", "error": str(exc)})
                    await self._sleep_unless_stopping(delay)
                    delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
                    continue
            if claimed and len(claimed) == free:
                # Every free slot was filled; more work may be waiting for the next free slot.
                self.wake_reason = WAKE_BACKLOG
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.worker_poll_seconds)
            except TimeoutError:
                self.wake_reason = WAKE_POLL

    async def _claim(self, free: int, reason: str) -> list[ClaimedJob]:
        """Claim up to `free` jobs and start them.

        Successes still waiting in the finish batcher are reported in the
        same transaction, so a cycle of finishing and claiming costs one
        call. When the call fails they go back to the batcher, which reports
        them on its own. Failures are never sent with a claim: they keep
        their slot until reported, and a retry queued by their report
        could otherwise be claimed again by the same call.
        """
        async with self.claim_lock:
            reports = self.finisher.take(lambda item: item.status == "succeeded")
            try:
                claimed = await self._claim_reporting(reports, free)
            except BaseException:
                self.finisher.put_back(reports)
                raise
            for job in claimed:
                self._start(job, reason)
        logger.debug("claim finished", extra={
            **self.log_extra, "action": "claim", "wake": reason, "free": free,
            "claimed": len(claimed), "reported": len(reports)})
        return claimed

    async def _claim_reporting(self, reports: Pending, free: int) -> list[ClaimedJob]:
        if not reports:
            return await self.client.claim(self.labels, free)
        try:
            outcomes, claimed = await self.client.finish_and_claim(
                [item for item, _ in reports], self.labels, free)
        except TRANSIENT_ERRORS:
            raise
        except psycopg.DatabaseError as exc:
            # The database rejected the call (not the connection), so nothing
            # was committed. Reported on their own, the error reaches each
            # job's report, and the claim goes on.
            logger.error("reporting results with the claim failed; reporting them separately",
                         extra={**self.log_extra, "action": "claim_report_error",
                                "error": str(exc),
                                "job_ids": ",".join(str(item.job.job_id) for item, _ in reports)})
            self.finisher.put_back(reports)
            claimed = await self.client.claim(self.labels, free)
            reports.clear()  # given back already: _claim must not give them back again
            return claimed
        self.finisher.settle(reports, outcomes)
        return claimed

    def _start(self, job: ClaimedJob, wake: str) -> None:
        execution = JobExecution(self, job)
        self.executions[job.job_id] = execution
        task = asyncio.create_task(self._execute(execution), name=f"job-{job.job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        logger.info("job claimed", extra={
            **self.log_extra, "action": "job_claim", "job_id": job.job_id, "run_id": job.run_id,
            "attempt": job.attempt, "kind": job.kind, "job": job.key, "wake": wake})

    async def _execute(self, execution: JobExecution) -> None:
        job = execution.job
        lock: DeployLock | None = None
        if needs_deploy_lock(job):
            try:
                lock, started = await self._take_deploy_lock(execution)
            except BaseException:
                self._release(execution)
                raise
            if not started:
                self._release(execution)
                return
        try:
            await self._execute_holding(execution)
        finally:
            if lock is not None:
                await lock.release()

    async def _take_deploy_lock(self, execution: JobExecution) -> tuple[DeployLock | None, bool]:
        """Take the job's deploy lock; return (the lock, whether to run the job).

        A job that cannot take it is parked by the database and released by
        this worker. When the database cannot be reached, the job is failed
        rather than run without its lock.
        """
        job = execution.job
        delay = 0.2
        for attempt in range(1, DEPLOY_LOCK_TRIES + 1):
            try:
                lock, result = await DeployLock.acquire(self.conninfo, job, execution.log_extra)
                break
            except TRANSIENT_ERRORS as exc:
                if attempt < DEPLOY_LOCK_TRIES:
                    logger.warning("taking the deploy lock failed; retrying", extra={
                        **execution.log_extra, "action": "deploy_lock_retry", "attempt": attempt,
                        "backoff_seconds": delay, "error": str(exc)})
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                reason = f"could not take the deploy lock: {exc}"
                logger.error("deploy lock unavailable; failing the job", extra={
                    **execution.log_extra, "action": "deploy_lock_error", "error": str(exc)})
                await self._report(execution, Outcome("failed", None, reason))
                return None, False
        if lock is None:
            # Parked (waiting, awaiting_approval), cancelled meanwhile, or stale.
            logger.info("deploy job not started", extra={
                **execution.log_extra, "action": "deploy_park", "outcome": result.outcome,
                "reason": result.reason})
            return None, False
        logger.info("deploy lock acquired", extra={
            **execution.log_extra, "action": "deploy_lock_acquire"})
        lock.watch(self.settings.worker_heartbeat_seconds,
                   lambda: execution.request_stop(DEPLOY_LOCK_LOST))
        return lock, True

    async def _execute_holding(self, execution: JobExecution) -> None:
        job = execution.job
        try:
            outcome = await self._run_execution(execution)
        except BaseException:
            self._release(execution)
            raise
        # After a success the slot is free as soon as the steps end, so the
        # next claim overlaps with reporting the result. A failure keeps its
        # slot until it is reported: the report may skip or requeue other
        # jobs (fail-fast, retries), and this worker should not pick one of
        # them up in between.
        early = outcome is not None and outcome.status == "succeeded"
        if early:
            self.reporting[job.job_id] = execution
            self._release(execution)
        try:
            if outcome is not None:
                await self._report(execution, outcome)
        finally:
            if self.reporting.get(job.job_id) is execution:
                del self.reporting[job.job_id]
            if not early:
                self._release(execution)

    def _release(self, execution: JobExecution) -> None:
        """Free the slot of this attempt and wake the claim loop.

        Entries are removed only if they are this attempt's: a later
        attempt of the same job may hold the id by then.
        """
        if self.executions.get(execution.job.job_id) is execution:
            del self.executions[execution.job.job_id]
        self._wake(WAKE_SLOT_FREE)

    async def _run_execution(self, execution: JobExecution) -> Outcome | None:
        """Run the attempt and ship its log; return the outcome to report, if any.

        The queue benchmark (bench/queue.py) overrides this to measure the
        queue without running steps.
        """
        job = execution.job
        try:
            await load_job_secrets(self.pool, self._keyring, job, self.log_extra)
            await load_needs_outputs(self.pool, job)
            await load_ancestor_statuses(self.pool, job)
            await load_variables(self.pool, job)
            # Reading the schedules fetches the commit, which a stop must end too.
            await execution.run_unless_stopped(
                sync_schedules(self.pool, self.data_dir, job, self.log_extra))
            outcome = await execution.run()
        except AttemptInputUnavailableError as exc:
            outcome = await self._inputs_failed(execution, exc)
        await self.shipper.flush()
        return outcome

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            self.keyring = load_keyring(self.settings.secret_key, self.data_dir)
        return self.keyring

    async def _inputs_failed(self, execution: JobExecution,
                             exc: AttemptInputUnavailableError) -> Outcome | None:
        if exc.reason is None:
            return None  # the lease moved on: nothing to report
        logger.error("job cannot read its secrets or other inputs", extra={
            **execution.log_extra, "action": "job_inputs_error", "error": exc.reason})
        await execution.system(exc.reason)
        return Outcome("failed", None, exc.reason)

    async def _report(self, execution: JobExecution, outcome: Outcome) -> None:
        job = execution.job
        delay = 0.2
        deadline = time.monotonic() + 2 * self.settings.worker_lease_seconds
        while True:
            try:
                result = await self.finisher.finish(FinishItem(
                    job=job, status=outcome.status, exit_code=outcome.exit_code,
                    reason=outcome.reason))
                break
            except TRANSIENT_ERRORS as exc:
                if time.monotonic() > deadline:
                    logger.error("could not report the job's result; the reaper will retry it",
                                 extra={**execution.log_extra, "action": "job_report_error",
                                        "error": str(exc)})
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
        extra = {**execution.log_extra, "status": outcome.status, "exit_code": outcome.exit_code}
        if result == "stale":
            logger.warning("result ignored: the attempt's lease is no longer valid",
                           extra={**extra, "action": "job_result_stale"})
        elif result == "retrying":
            logger.info("job failed; a retry is queued", extra={**extra, "action": "job_retry"})
        else:
            logger.info("job finished", extra={**extra, "action": "job_finish"})

    # -- heartbeat and notifications ----------------------------------------

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.heartbeat_now.wait(),
                                       timeout=self.settings.worker_heartbeat_seconds)
            self.heartbeat_now.clear()
            try:
                async with self.claim_lock:
                    held = {job_id: execution.job.lease_token
                            for job_id, execution in (*self.executions.items(),
                                                      *self.reporting.items())}
                    sent = time.monotonic()
                    actions = await self.client.heartbeat(held)
                self.last_heartbeat = sent
                failures = 0
            except psycopg.errors.NoDataFound:
                logger.warning("worker row missing; registering again",
                               extra={**self.log_extra, "action": "worker_reregister"})
                await self._register()
                continue
            except Exception as exc:
                # Any failure, not only a transient one, is a missed
                # heartbeat: this loop must go on, so that the worker comes
                # back once the database responds again.
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.warning("heartbeat failed", extra={
                        **self.log_extra, "action": "heartbeat_retry", "failures": failures,
                        "error": f"{type(exc).__name__}: {exc}"})
                continue
            for job_id, action in actions:
                execution = self.executions.get(job_id)
                if execution is None:
                    continue
                execution.request_stop(CANCELLED if action == "cancel" else ABANDONED)

    async def _fence_loop(self) -> None:
        """Stop every running job once the lease has run out without a heartbeat.

        Presumed dead by then, this worker would run its jobs beside the
        attempts the reaper hands to other workers. The check waits for no
        database call, because a call on a connection whose network path
        dropped silently may not return for many minutes.
        """
        lease = self.settings.worker_lease_seconds
        while True:
            remaining = self.last_heartbeat + lease - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            running = [execution for execution in self.executions.values()
                       if execution.stop_reason is None]
            if running:
                logger.error("no heartbeat for longer than the lease; stopping all jobs",
                             extra={**self.log_extra, "action": "worker_self_fence",
                                    "jobs": len(running),
                                    "silent_seconds": round(time.monotonic() - self.last_heartbeat, 1)})
                for execution in running:
                    execution.request_stop(ABANDONED)
            await asyncio.sleep(self.settings.worker_heartbeat_seconds)

    async def _listen_loop(self) -> None:
        delay = 0.2
        while True:
            conn: psycopg.AsyncConnection | None = None
            try:
                conn = await connect_async(self.conninfo,
                                           application_name="minijenkin-worker-listen")
                for channel in (JOB_CHANNEL, CANCEL_CHANNEL):
                    await conn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
                delay = 0.2
                logger.info("listening for notifications", extra={
                    **self.log_extra, "action": "listen_start"})
                # Notifications sent while we were not listening are lost:
                # claim once now to catch up.
                self._wake(WAKE_CATCH_UP)
                await self._consume_notifications(conn)
            except asyncio.CancelledError:
                raise
            except (*TRANSIENT_ERRORS, TimeoutError) as exc:
                logger.warning("LISTEN connection lost; reconnecting", extra={
                    **self.log_extra, "action": "listen_reconnect", "error": str(exc) or "timeout"})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAY_MAX_SECONDS)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def _consume_notifications(self, conn: psycopg.AsyncConnection) -> None:
        check_seconds = self.settings.worker_listen_check_seconds
        while True:
            async for notify in conn.notifies(timeout=check_seconds):
                if notify.channel == JOB_CHANNEL:
                    self._wake(WAKE_NOTIFY)
                elif notify.channel == CANCEL_CHANNEL:
                    self._on_cancel(notify.payload)
            # No notification for a while: a connection that broke without
            # an error (a dropped network path) would go on delivering
            # nothing, so prove that a query still gets through.
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=check_seconds)

    def _on_cancel(self, payload: str) -> None:
        try:
            job_id = int(payload)
        except ValueError:
            return
        # Any database role may send this notice, so it only triggers a
        # heartbeat, which returns whether the job is cancelled in the database.
        if job_id in self.executions:
            self.heartbeat_now.set()


async def run_worker(settings: Settings, conninfo: str) -> None:
    await Worker(settings, conninfo).run()
