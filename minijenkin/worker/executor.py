"""Running one claimed job attempt: the plan job, or a job's steps.

Each step's script runs in its shell (`bash --noprofile --norc -eo pipefail
<script>` unless the step sets `shell`, see minijenkin.pipeline.shells) in its own
process group (a new session), so cancel and timeout can signal everything
the step started: SIGTERM first, SIGKILL after the grace period. At the end
of the job every process group it created is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from minijenkin.db import TRANSIENT_ERRORS
from minijenkin.logs.lines import LineSplitter
from minijenkin.logs.masking import SecretMasker
from minijenkin.logs.store import STREAM_CODES
from minijenkin.pipeline import shells, sources
from minijenkin.pipeline.events import Event
from minijenkin.pipeline.expressions import ExpressionError
from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.environment import job_environment, step_environment
from minijenkin.worker.git import GitError, Mirror, pipeline_files
from minijenkin.worker.isolation import PROCESS_TAG_VARIABLE, give_tree, kill_tagged_processes
from minijenkin.worker.outputs import evaluate_outputs
from minijenkin.worker.process_exit import wait_exited
from minijenkin.worker.shipper import utc_timestamp
from minijenkin.worker.steps import CommandFiles, JobRun, PreparedStep, StepError

if TYPE_CHECKING:
    from minijenkin.worker.main import Worker

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
# After a step's shell exits, how long to keep reading output still held
# open by processes it left running in the background: until the output has
# been silent for DRAIN_SECONDS, and for at most DRAIN_MAX_SECONDS while a
# background process keeps writing.
DRAIN_SECONDS = 1.0
DRAIN_MAX_SECONDS = 10.0
LOG_CAP_BYTES_DEFAULT = 100 * 1024 * 1024
STORE_OUTPUTS_ATTEMPTS = 3

STDOUT = STREAM_CODES["stdout"]
STDERR = STREAM_CODES["stderr"]
SYSTEM = STREAM_CODES["system"]

# Why an execution was stopped from outside; the first reason wins.
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
ABANDONED = "abandoned"      # the lease is no longer ours: stop silently
HANDED_BACK = "handed_back"  # the worker is shutting down: stop silently
# The connection holding the job's deploy lock broke, so the lock is gone.
DEPLOY_LOCK_LOST = "deploy_lock_lost"


@dataclass(frozen=True)
class Outcome:
    status: str
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StepEnd:
    """The end of a step: stop the job now (with `outcome`), or go on, maybe after a `failure`."""

    stop: bool = False
    outcome: Outcome | None = None
    failure: Outcome | None = None


class JobExecution:
    """One attempt of one job on this worker."""

    def __init__(self, worker: Worker, job: ClaimedJob) -> None:
        self.worker = worker
        self.job = job
        self.settings = worker.settings
        # Ids logged with every message of this attempt; callers copy it.
        self.log_extra: dict[str, Any] = {
            "job_id": job.job_id, "run_id": job.run_id, "attempt": job.attempt,
            "worker_id": worker.log_extra["worker_id"]}
        self.seq = 0
        self.log_bytes = 0
        self.log_truncated = False
        self._masker = SecretMasker([])
        self._masked_secrets: object = None
        self.stop_reason: str | None = None
        # Set with stop_reason, for waits that a stop must end.
        self._stop_requested = asyncio.Event()
        self.process_groups: set[int] = set()
        # Marks the environment of every process this job's steps start; see
        # kill_tagged_processes.
        self.process_tag = uuid.uuid4().hex
        self._current: asyncio.subprocess.Process | None = None
        self._killer: asyncio.Task[None] | None = None
        self.directory: Path | None = None
        self.started = time.monotonic()
        # Set when the running step exceeded its own `timeout-minutes`.
        self.step_timed_out = False
        # Per stream code: since when its reader has waited for output, or
        # None while it is handling output.
        self._read_wait_since: dict[int, float | None] = {}


    # -- control from outside -------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop the job for `reason` (cancelled, timed_out, abandoned, handed_back)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._stop_requested.set()
            logger.info("stopping job", extra={**self.log_extra, "action": "job_stop",
                                               "reason": reason})
        if self._current is not None and self._killer is None:
            self._killer = asyncio.create_task(self._terminate(self._current, whole_job=True))

    async def run_unless_stopped(self, operation: Awaitable[None],
                                 deadline: float | None = None) -> bool:
        """Await `operation` unless the job is stopped or passes `deadline` (time.monotonic()) first.

        Returns True when the operation ended (its exception is raised), and
        False when it was cancelled because of a stop or the deadline, which
        stops the job as timed out. For work outside a step's process, such
        as git fetching a repository from a server that does not respond.
        """
        task = asyncio.ensure_future(operation)
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait({task, stopped}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            stopped.cancel()
        if task.done():
            task.result()
            return True
        if self.stop_reason is None:
            self.request_stop(TIMED_OUT)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception as exc:  # the stop, not this late failure, decides the outcome
            logger.debug("operation failed while the job was stopping", extra={
                **self.log_extra, "action": "job_stop_error", "error": f"{type(exc).__name__}: {exc}"})
        return False

    async def _terminate(self, process: asyncio.subprocess.Process, *, whole_job: bool) -> None:
        """Stop a step: SIGTERM to its process group, SIGKILL after the grace period.

        With `whole_job`, every process of the job dies as well, such as a
        daemon started with setsid that keeps the step's output open.
        """
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(wait_exited(process),
                                   timeout=self.settings.worker_kill_grace_seconds)
        except TimeoutError:
            pass
        _signal_group(process.pid, signal.SIGKILL)
        if whole_job:
            await self._kill_leftovers()

    # -- logging --------------------------------------------------------------

    @property
    def masker(self) -> SecretMasker:
        """The masker for the secrets in the job's context, rebuilt when they are replaced
        (secrets may be loaded after this execution was created)."""
        secrets = self.job.context.get("secrets")
        if secrets is not self._masked_secrets:
            self._masker = SecretMasker.from_context(self.job.context)
            self._masked_secrets = secrets
        return self._masker

    async def emit(self, stream: int, text: str, ts: str | None = None) -> None:
        await self.emit_many(stream, [text], ts)

    async def emit_many(self, stream: int, texts: list[str], ts: str | None = None) -> None:
        """Mask, number and cap lines of one stream, then hand them to the shipper at once."""
        timestamp = ts or utc_timestamp()
        masker = self.masker
        lines: list[tuple[int, int, str, str]] = []
        for original in texts:
            if self.log_truncated:
                break
            text = masker.mask(original) if masker else original
            # The cap is in bytes as stored (UTF-8), plus one for the line end.
            size = (len(text) if text.isascii() else len(text.encode("utf-8"))) + 1
            code = stream
            if self.log_bytes + size > self.worker.log_cap_bytes and stream != SYSTEM:
                self.log_truncated = True
                text = (f"log truncated: this job's output exceeded {self.worker.log_cap_bytes} "
                        "bytes; the job keeps running, further output is discarded")
                code = SYSTEM
            self.log_bytes += size
            self.seq += 1
            lines.append((self.seq, code, timestamp, text))
        await self.worker.shipper.append_many(
            job_id=self.job.job_id, attempt=self.job.attempt, lease_token=self.job.lease_token,
            lines=lines)

    async def system(self, text: str) -> None:
        # System lines bypass the cap check inside emit only when not truncated;
        # they are short and explain what happened.
        if self.log_truncated:
            self.log_truncated = False
            await self.emit(SYSTEM, text)
            self.log_truncated = True
        else:
            await self.emit(SYSTEM, text)

    # -- running --------------------------------------------------------------

    async def run(self) -> Outcome | None:
        """Run the attempt. Returns its outcome, or None when there is nothing to report."""
        self.directory = Path(tempfile.mkdtemp(
            prefix=f"job-{self.job.job_id}-{self.job.attempt}-", dir=self.worker.work_root))
        # Under run_as, the steps' user must pass through to src, home and
        # tmp, but may not list the folder.
        self.directory.chmod(0o711 if self.worker.run_as else 0o700)
        try:
            if self.job.kind == "plan":
                outcome = await self._run_plan()
            else:
                outcome = await self._run_script()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("job failed inside the worker", extra={
                **self.log_extra, "action": "job_error"})
            await self.system(f"internal worker error: {type(exc).__name__}: {exc}")
            outcome = Outcome("failed", None, f"worker error: {type(exc).__name__}: {exc}")
        finally:
            await self._kill_leftovers()
            if not self.settings.keep_workspaces and self.directory is not None:
                await asyncio.to_thread(shutil.rmtree, self.directory, True)

        if self.stop_reason == ABANDONED:
            logger.warning("attempt abandoned: its lease is no longer this worker's, so its "
                           "result is discarded", extra={
                               **self.log_extra, "action": "job_abandon",
                               "status": outcome.status if outcome else None})
            return None
        if self.stop_reason == HANDED_BACK:
            return None
        if outcome is not None and outcome.reason:
            # The reason is stored with the job and shown by the API, the
            # dashboard and notifications, so it is masked like the log.
            outcome = replace(outcome, reason=self.masker.mask(outcome.reason))
        return outcome

    async def _kill_leftovers(self) -> None:
        """Kill what the steps left running: their process groups, then daemons that left them."""
        if not self.process_groups:
            return
        for group in self.process_groups:
            _signal_group(group, signal.SIGKILL)
        # A sweep reads every process's environment: about 20 ms for 170
        # processes on a busy 2-core machine, too long to block the event loop.
        killed = await asyncio.to_thread(kill_tagged_processes, self.process_tag)
        if killed:
            logger.info("killed processes the job left running", extra={
                **self.log_extra, "action": "job_leftovers_killed", "processes": killed})

    def _mirror(self) -> Mirror:
        return Mirror(self.worker.data_dir, self.job.repo["id"], self.job.repo["url"])

    async def _fetch_stopped(self) -> Outcome:
        """Log that the job stopped while git fetched or checked out, and return the outcome."""
        assert self.stop_reason is not None
        await self.system(f"stopped while fetching the repository: "
                          f"{self.stop_reason.replace('_', ' ')}")
        return self._stopped_outcome()

    async def _run_plan(self) -> Outcome | None:
        """Read and validate the pipeline files, then submit the job graph of those the event matches.

        Returns None once the graph is submitted: submitting also finishes
        the plan job, so there is nothing left to report.
        """
        commit = self.job.run["commit"]
        await self.system(f"Planning run {self.job.run_id} at {commit[:12]} "
                          f"({self.job.run['ref']}) on {self.worker.name}")
        mirror = self._mirror()
        try:
            fetched = await self.run_unless_stopped(mirror.ensure_commit(commit))
        except GitError as exc:
            await self.system(str(exc))
            return Outcome("failed", None, f"cannot fetch the repository: {exc}")
        if not fetched:
            return await self._fetch_stopped()
        files = await pipeline_files(mirror, commit)
        if not files:
            message = sources.missing_message(commit)
            await self.system(message)
            return Outcome("failed", None, message)

        results = await asyncio.to_thread(sources.parse_sources, files)
        event = Event.from_context(self.job.run, self.job.repo)
        changed = None
        if sources.needs_changed_files(results, event):
            changed = await mirror.changed_files(event.before, commit,
                                                 merge_base=event.kind == "pull_request",
                                                 listed=event.changed_files)
            if changed is None:
                await self.system("the changed files are unknown, so path filters match")
        plan = sources.plan_run(results, event, changed, self.job.context.get("vars"))
        for note in plan.notes:
            await self.system(note)
        if plan.errors:
            for error in plan.errors:
                await self.system(str(error))
            reason = str(plan.errors[0])
            if len(plan.errors) > 1:
                reason += f" (and {len(plan.errors) - 1} more problems)"
            return Outcome("failed", None, reason)

        graph = plan.graph
        for entry in graph:
            needs = f" (needs {', '.join(entry['needs'])})" if entry["needs"] else ""
            await self.system(f"job {entry['key']}{needs}")
        await self.worker.shipper.flush()
        if self.stop_reason is not None:
            return self._stopped_outcome()
        result = await self.worker.client.submit_plan(self.job, graph)
        if result == "stale":
            logger.warning("plan ignored: the lease is no longer valid", extra={
                **self.log_extra, "action": "plan_stale"})
            self.stop_reason = ABANDONED
        return None

    def _stopped_outcome(self) -> Outcome:
        if self.stop_reason == TIMED_OUT:
            return Outcome("timed_out", None, f"timed out after {self.job.timeout_seconds} s")
        if self.stop_reason == DEPLOY_LOCK_LOST:
            return Outcome("failed", None, "deploy lock lost: its database connection broke")
        return Outcome("cancelled", None, "cancelled")

    async def _run_script(self) -> Outcome:
        assert self.directory is not None
        await self.system(f"Running job {self.job.name} (attempt {self.job.attempt}) "
                          f"on {self.worker.name}")
        workspace = self.directory / "src"
        home = self.directory / "home"
        tmp = self.directory / "tmp"
        steps_dir = self.directory / "steps"
        for folder in (home, tmp, steps_dir):
            folder.mkdir()

        unknown_secrets: list[str] = []
        state = JobRun(self.job, workspace=workspace, temp=tmp, worker_name=self.worker.name,
                       on_unknown_secret=unknown_secrets.append)
        if self.job.condition is not None:
            try:
                holds = state.condition_holds()
            except ExpressionError as exc:
                message = f"the job's condition cannot be evaluated: {exc.message}"
                logger.warning("job condition failed", extra={
                    **self.log_extra, "action": "job_condition_error", "error": exc.message})
                await self.system(message)
                return Outcome("failed", None, message)
            if not holds:
                message = state.condition_skip_reason()
                logger.info("job skipped by its condition", extra={
                    **self.log_extra, "action": "job_condition_false"})
                await self.system(f"Job {message}")
                return Outcome("skipped", None, message)

        deadline = None
        if self.job.timeout_seconds:
            deadline = self.started + self.job.timeout_seconds
        mirror = self._mirror()

        async def check_out() -> None:
            await mirror.ensure_commit(self.job.run["commit"])
            await mirror.checkout(self.job.run["commit"], workspace,
                                  hardlinks=self.worker.run_as is None)

        try:
            checked_out = await self.run_unless_stopped(check_out(), deadline)
        except GitError as exc:
            await self.system(str(exc))
            return Outcome("failed", None, f"checkout failed: {exc}")
        if not checked_out:
            return await self._fetch_stopped()
        run_as = self.worker.run_as
        if run_as is not None:
            for folder in (workspace, home, tmp):
                await asyncio.to_thread(give_tree, folder, run_as)
                folder.chmod(0o700)

        base_env = job_environment(
            self.job, workspace=workspace, home=home, tmp=tmp,
            step_path=self.settings.worker_step_path, worker_name=self.worker.name,
        )
        try:
            state.evaluate_job_env()
        except StepError as exc:
            logger.warning("job environment cannot be evaluated", extra={
                **self.log_extra, "action": "job_env_error", "error": self.masker.mask(str(exc))})
            await self.system(str(exc))
            return Outcome("failed", None, str(exc))
        first_failure: Outcome | None = None
        steps = self.job.spec.get("steps") or []
        for index, step in enumerate(steps):
            if self.stop_reason is not None:
                return self._stopped_outcome()
            try:
                prepared = state.prepare(index, step)
            except StepError as exc:
                logger.warning("step fields cannot be evaluated", extra={
                    **self.log_extra, "action": "step_expression_error", "step": index + 1,
                    "error": self.masker.mask(str(exc))})
                await self.system(f"step {index + 1} failed: {exc}")
                state.record(step.get("id"), "failure")
                first_failure = first_failure or Outcome("failed", None, f"step {index + 1} failed: {exc}")
                continue
            for name in unknown_secrets:
                await self.system(f"secrets.{name} is not set; it reads as an empty string")
            unknown_secrets.clear()
            if not prepared.run_it:
                await self.system(f"⏭ {prepared.name} (skipped: {prepared.skip_reason})")
                state.record(prepared.id, "skipped")
                continue
            await self.system(f"▶ {prepared.name}")
            if prepared.script is None:
                await self.system(f"{prepared.uses}: the workspace already holds commit "
                                  f"{self.job.run['commit'][:12]}")
                state.record(prepared.id, "success")
                continue
            end = await self._run_prepared(prepared, state, base_env, steps_dir, deadline)
            if end.stop and end.outcome is not None:
                return end.outcome
            first_failure = first_failure or end.failure
        await self._store_outputs(state)
        if first_failure is not None:
            return first_failure
        await self.system("Job succeeded")
        return Outcome("succeeded", 0, None)

    async def _store_outputs(self, state: JobRun) -> None:
        """Evaluate the job's `outputs` and store them for the jobs that need this one."""
        templates = self.job.spec.get("outputs") or {}
        if not templates:
            return
        values, problems = evaluate_outputs(templates, state.step_scope(state.current_env()), self.masker)
        for problem in problems:
            await self.system(problem)
        delay = 0.2
        for attempt in range(1, STORE_OUTPUTS_ATTEMPTS + 1):
            try:
                stored = await self.worker.client.store_outputs(self.job, values)
                break
            except TRANSIENT_ERRORS as exc:
                logger.warning("job outputs could not be stored", extra={
                    **self.log_extra, "action": "job_outputs_error", "error": str(exc),
                    "attempt": attempt})
                if attempt == STORE_OUTPUTS_ATTEMPTS:
                    await self.system(f"the job's outputs could not be stored: {exc}")
                    return
                await asyncio.sleep(delay)
                delay *= 2
            except psycopg.Error as exc:
                # Not worth a retry (a value PostgreSQL rejects): the job's
                # result still counts, without its outputs.
                logger.error("job outputs rejected by the database", extra={
                    **self.log_extra, "action": "job_outputs_error", "error": str(exc)})
                await self.system(f"the job's outputs could not be stored: {exc}")
                return
        if not stored:
            logger.info("job outputs not stored: the lease moved on", extra={
                **self.log_extra, "action": "job_outputs_stale"})

    async def _run_prepared(self, prepared: PreparedStep, state: JobRun, base_env: dict[str, str],
                            steps_dir: Path, deadline: float | None) -> StepEnd:
        """Run one step and record its result."""
        files = CommandFiles.create(steps_dir / "commands", prepared.index + 1)
        if self.worker.run_as is not None:
            # The files become the user's, but their folder stays the
            # worker's, so a step cannot replace them with links.
            for path in files.variables().values():
                os.chown(path, self.worker.run_as.uid, self.worker.run_as.gid, follow_symlinks=False)
        env = step_environment(base_env, prepared.env, files.variables())
        env["PATH"] = state.path_variable(prepared.env.get("PATH", base_env["PATH"]))
        env[PROCESS_TAG_VARIABLE] = self.process_tag
        script = steps_dir / f"{prepared.index + 1}{shells.script_suffix(prepared.shell)}"
        script.write_text(shells.script_text(prepared.shell, prepared.script or ""), encoding="utf-8")
        command = _shell_command(prepared.shell, script, env["PATH"])
        step_deadline = None
        if prepared.timeout_seconds is not None:
            step_deadline = time.monotonic() + prepared.timeout_seconds
        self.step_timed_out = False
        # Masked here, before the messages below quote it with repr(),
        # because repr() escapes backslashes and quotes, and the masker cannot
        # find a secret in the escaped text.
        name = self.masker.mask(prepared.name)
        problem = _unstartable_environment(env)
        exit_code: int | None = None
        if problem is None:
            exit_code = await self._run_step(script, command, prepared.cwd, env, deadline, step_deadline)
        if problem is not None:
            # The step's process never started, so the step fails as a script
            # does and the job goes on to its `if: always()` steps.
            message = f"step {name!r} could not start: {problem}"
            state.record(prepared.id, "failure", continue_on_error=prepared.continue_on_error)
            if prepared.continue_on_error:
                await self.system(f"{message}; the job goes on (continue-on-error)")
                return StepEnd()
            await self.system(message)
            return StepEnd(failure=Outcome("failed", None, message))
        assert exit_code is not None
        if self.stop_reason is not None:
            await self.system(f"step {name!r} stopped: {self.stop_reason.replace('_', ' ')}")
            return StepEnd(outcome=self._stopped_outcome(), stop=True)

        outputs, problems = state.apply_command_files(files)
        for problem in problems:
            await self.system(problem)
        if exit_code == 0:
            state.record(prepared.id, "success", outputs=outputs)
            return StepEnd()
        if self.step_timed_out:
            message = f"step {name!r} timed out after {prepared.timeout_seconds / 60:g} minutes"
        else:
            message = f"step {name!r} failed with exit code {exit_code}"
        state.record(prepared.id, "failure", continue_on_error=prepared.continue_on_error,
                     outputs=outputs)
        if prepared.continue_on_error:
            await self.system(f"{message}; the job goes on (continue-on-error)")
            return StepEnd()
        await self.system(message)
        return StepEnd(failure=Outcome("failed", exit_code, message))

    async def _run_step(self, script: Path, command: list[str], cwd: Path, env: dict[str, str],
                        deadline: float | None, step_deadline: float | None = None) -> int:
        run_as = self.worker.run_as
        uid, gid = (run_as.uid, run_as.gid) if run_as is not None else (-1, -1)
        # The step's environment reaches the shell through a file in the
        # worker's own folder of scripts, never the guard's environment.
        env_file = script.with_suffix(".env")
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(b"\0".join(f"{name}={value}".encode("utf-8", "surrogateescape")
                                    for name, value in env.items()))
        # The guard leads the step's process group and runs the shell as its
        # child; process.pid is therefore the group the worker signals.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(_STEP_GUARD), str(os.getpid()), str(uid), str(gid),
            str(env_file), "--", *command,
            cwd=cwd, env=_GUARD_ENVIRONMENT, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.process_groups.add(process.pid)
        self._current = process
        self._killer = None
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.create_task(self._pump(process.stdout, STDOUT)),
            asyncio.create_task(self._pump(process.stderr, STDERR)),
        ]
        # Not process.wait(), which also waits for every holder of the pipes.
        exited = asyncio.ensure_future(wait_exited(process))
        if self.stop_reason is not None:
            self.request_stop(self.stop_reason)
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            step_timeout = None if step_deadline is None else max(0.0, step_deadline - time.monotonic())
            step_first = step_timeout is not None and (timeout is None or step_timeout < timeout)
            try:
                await asyncio.wait_for(asyncio.shield(exited),
                                       timeout=step_timeout if step_first else timeout)
            except TimeoutError:
                if step_first:
                    # Only this step's `timeout-minutes` passed: stop it, the job goes on.
                    self.step_timed_out = True
                    self._killer = asyncio.create_task(self._terminate(process, whole_job=False))
                else:
                    self.request_stop(TIMED_OUT)
                await exited
            if self._killer is not None:
                await self._killer
            pending = await self._drain_readers(readers)
            for reader in pending:
                reader.cancel()
            for reader in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            if pending:
                # The readers are gone, but a background process may still
                # have the pipes open, so our ends would stay open as long as
                # it runs. asyncio has no public call to close them. The shell
                # has exited, so closing the transport only closes the pipes.
                transport = getattr(process, "_transport", None)
                if transport is not None:
                    transport.close()
        except asyncio.CancelledError:
            _signal_group(process.pid, signal.SIGKILL)
            exited.cancel()
            for reader in readers:
                reader.cancel()
            raise
        finally:
            self._current = None
        code = process.returncode if process.returncode is not None else -1
        return 128 - code if code < 0 else code

    async def _drain_readers(self, readers: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """Wait for the pipe readers; return those still reading when the output stops.

        A reader is given up once every one left has waited DRAIN_SECONDS
        for output (a background process keeps its pipe open but is silent).
        Readers still handling output are never cut short, because on a busy
        worker (or while the database is away) storing what a step printed
        may take longer than DRAIN_SECONDS. Readers that keep receiving
        output are cut after DRAIN_MAX_SECONDS, or after DRAIN_SECONDS once
        the job is being stopped, so that a background process that keeps
        writing cannot hold the step.
        """
        pending = set(readers)
        started = time.monotonic()
        while pending:
            _done, pending = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
            now = time.monotonic()
            waits = [since for since in self._read_wait_since.values() if since is not None]
            handling = len(waits) < len(pending)
            busy = handling or any(now - since < DRAIN_SECONDS for since in waits)
            if pending and not busy:
                break
            if pending and not handling and (self.stop_reason is not None
                                             or now - started >= DRAIN_MAX_SECONDS):
                await self.system(
                    f"stopped reading the step's output {now - started:.0f} s after its shell "
                    "exited: a process it started in the background still writes to it")
                break
        return pending

    async def _pump(self, stream: asyncio.StreamReader, code: int) -> None:
        splitter = LineSplitter(masker=self.masker)
        while True:
            self._read_wait_since[code] = time.monotonic()
            chunk = await stream.read(READ_CHUNK_BYTES)
            self._read_wait_since[code] = None
            if not chunk:
                break
            await self.emit_many(code, splitter.feed(chunk), utc_timestamp())
        await self.emit_many(code, splitter.finish())


# Runs each step's shell and kills every process of the step when the worker
# dies (kill -9, the OOM killer), so that a job whose worker is presumed lost
# does not run on beside its next attempt. NOTE: a process started in the
# background by an earlier step of the job survives a worker that dies
# between two steps, because no guard runs then.
_STEP_GUARD = Path(__file__).with_name("step_guard.py")
# The guard's whole environment: nothing a step can set (LD_PRELOAD through
# $GITHUB_ENV, say) reaches a process that may run as root.
_GUARD_ENVIRONMENT = {"PATH": os.defpath, "LANG": "C.UTF-8"}


# Linux limits each NAME=value string that exec passes to 32 pages
# (MAX_ARG_STRLEN, 128 KiB with 4 KiB pages), and the arguments and the
# environment together to ARG_MAX, a share of the stack limit.
_MAX_ARG_STRLEN = 32 * os.sysconf("SC_PAGE_SIZE")
_ARG_MAX = os.sysconf("SC_ARG_MAX")
# Room for the shell's own arguments and the pointers to every string.
_ARGUMENTS_RESERVE = 64 * 1024


def _unstartable_environment(env: dict[str, str]) -> str | None:
    """Explain why no process can receive `env` (a NUL byte, or its size), or return None.

    Checked before the step starts, because exec's own error would reach
    the worker only as the exit status of the step guard.
    """
    for name, value in env.items():
        if "\0" in name or "\0" in value:
            return f"environment variable {name.replace(chr(0), '?')!r} contains a NUL byte"
    sizes = {name: len(name.encode()) + 1 + len(value.encode()) + 1 for name, value in env.items()}
    largest = max(sizes, key=sizes.__getitem__, default=None)
    if largest is not None and (sizes[largest] > _MAX_ARG_STRLEN
                                or sum(sizes.values()) + _ARGUMENTS_RESERVE > _ARG_MAX):
        return (f"its environment is larger than the system allows (the largest variable, "
                f"{largest}, has {sizes[largest] - 1} bytes); pass large values through a file in "
                "$RUNNER_TEMP instead")
    return None


def _shell_command(shell_template: str, script: Path, path: str) -> list[str]:
    """Return the command line that runs `script` in its shell.

    The `python` keyword runs `python`, as on GitHub's runners; on a worker
    where only `python3` is on the step's PATH, that runs instead.
    """
    command = shells.command_line(shell_template, str(script))
    if (command[0] == "python" and shutil.which("python", path=path) is None
            and shutil.which("python3", path=path) is not None):
        command[0] = "python3"
    return command


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
