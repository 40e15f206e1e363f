"""Running one claimed job attempt: the plan job, or a job's steps.

Each step runs as `bash --noprofile --norc -eo pipefail <script>` in its own
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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minijenkin.errors import PipelineError
from minijenkin.logs.lines import LineSplitter
from minijenkin.logs.masking import SecretMasker
from minijenkin.logs.store import STREAM_CODES
from minijenkin.pipeline import PIPELINE_FILE
from minijenkin.pipeline.parser import PipelineValidationError, parse_pipeline
from minijenkin.pipeline.plan import build_graph
from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.environment import job_environment, step_environment
from minijenkin.worker.git import GitError, Mirror
from minijenkin.worker.shipper import utc_timestamp

if TYPE_CHECKING:
    from minijenkin.worker.main import Worker

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
# After a step's shell exits, how long to keep reading output still held
# open by processes it left running in the background.
DRAIN_SECONDS = 1.0
LOG_CAP_BYTES_DEFAULT = 100 * 1024 * 1024

STDOUT = STREAM_CODES["stdout"]
STDERR = STREAM_CODES["stderr"]
SYSTEM = STREAM_CODES["system"]

# Why an execution was stopped from outside; the first reason wins.
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
ABANDONED = "abandoned"      # the lease is no longer ours: stop silently
HANDED_BACK = "handed_back"  # the worker is shutting down: stop silently


@dataclass(frozen=True)
class Outcome:
    status: str
    exit_code: int | None = None
    reason: str | None = None


class JobExecution:
    """One attempt of one job on this worker."""

    def __init__(self, worker: Worker, job: ClaimedJob) -> None:
        self.worker = worker
        self.job = job
        self.settings = worker.settings
        self.seq = 0
        self.log_bytes = 0
        self.log_truncated = False
        self._masker = SecretMasker([])
        self._masked_secrets: object = None
        self.stop_reason: str | None = None
        self.process_groups: set[int] = set()
        self._current: asyncio.subprocess.Process | None = None
        self._killer: asyncio.Task[None] | None = None
        self.directory: Path | None = None
        self.started = time.monotonic()
        # Per stream code: since when its reader has waited for output, or
        # None while it is handling output.
        self._read_wait_since: dict[int, float | None] = {}

    @property
    def log_extra(self) -> dict[str, Any]:
        return {"job_id": self.job.job_id, "run_id": self.job.run_id, "attempt": self.job.attempt,
                "worker_id": str(self.worker.id)}

    # -- control from outside -------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop the job for `reason` (cancelled, timed_out, abandoned, handed_back)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            logger.info("stopping job", extra={**self.log_extra, "action": "job_stop",
                                               "reason": reason})
        if self._current is not None and self._killer is None:
            self._killer = asyncio.create_task(self._terminate(self._current))

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=self.settings.worker_kill_grace_seconds)
        except TimeoutError:
            pass
        _signal_group(process.pid, signal.SIGKILL)

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
            size = len(text) + 1
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
        self.directory.chmod(0o700)
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
            self._kill_leftovers()
            if not self.settings.keep_workspaces and self.directory is not None:
                await asyncio.to_thread(shutil.rmtree, self.directory, True)

        if self.stop_reason in (ABANDONED, HANDED_BACK):
            return None
        return outcome

    def _kill_leftovers(self) -> None:
        for group in self.process_groups:
            _signal_group(group, signal.SIGKILL)

    async def _mirror(self) -> Mirror:
        mirror = Mirror(self.worker.data_dir, self.job.repo["id"], self.job.repo["url"])
        await mirror.ensure_commit(self.job.run["commit"])
        return mirror

    async def _run_plan(self) -> Outcome | None:
        """Read and validate the pipeline file, then submit the job graph.

        Returns None once the graph is submitted: submitting also finishes
        the plan job, so there is nothing left to report.
        """
        commit = self.job.run["commit"]
        await self.system(f"Planning run {self.job.run_id} at {commit[:12]} "
                          f"({self.job.run['ref']}) on {self.worker.name}")
        try:
            mirror = await self._mirror()
        except GitError as exc:
            await self.system(str(exc))
            return Outcome("failed", None, f"cannot fetch the repository: {exc}")
        content = await mirror.read_file(commit, PIPELINE_FILE)
        if content is None:
            message = f"{PIPELINE_FILE}: the pipeline file does not exist at commit {commit[:12]}"
            await self.system(message)
            return Outcome("failed", None, message)
        try:
            pipeline = parse_pipeline(content, file=PIPELINE_FILE)
            graph = build_graph(pipeline)
        except PipelineError as exc:
            errors = exc.errors if isinstance(exc, PipelineValidationError) else [exc]
            for error in errors:
                await self.system(str(error))
            reason = str(errors[0])
            if len(errors) > 1:
                reason += f" (and {len(errors) - 1} more problems)"
            return Outcome("failed", None, reason)

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

        deadline = None
        if self.job.timeout_seconds:
            deadline = self.started + self.job.timeout_seconds
        try:
            mirror = await self._mirror()
            await mirror.checkout(self.job.run["commit"], workspace)
        except GitError as exc:
            await self.system(str(exc))
            return Outcome("failed", None, f"checkout failed: {exc}")

        base_env = job_environment(
            self.job, workspace=workspace, home=home, tmp=tmp,
            step_path=self.settings.worker_step_path, worker_name=self.worker.name,
        )
        spec_env = {str(k): str(v) for k, v in (self.job.spec.get("env") or {}).items()}
        steps = self.job.spec.get("steps") or []
        for index, step in enumerate(steps):
            if self.stop_reason is not None:
                return self._stopped_outcome()
            name = step.get("name") or f"step {index + 1}"
            await self.system(f"▶ {name}")
            env = step_environment(base_env, spec_env, {str(k): str(v)
                                                        for k, v in (step.get("env") or {}).items()})
            script = steps_dir / f"{index + 1}.sh"
            script.write_text(step["run"], encoding="utf-8")
            exit_code = await self._run_step(script, workspace, env, deadline)
            if self.stop_reason is not None:
                await self.system(f"step {name!r} stopped: {self.stop_reason.replace('_', ' ')}")
                return self._stopped_outcome()
            if exit_code != 0:
                await self.system(f"step {name!r} failed with exit code {exit_code}")
                return Outcome("failed", exit_code, f"step {name!r} failed with exit code {exit_code}")
        await self.system("Job succeeded")
        return Outcome("succeeded", 0, None)

    async def _run_step(self, script: Path, cwd: Path, env: dict[str, str],
                        deadline: float | None) -> int:
        process = await asyncio.create_subprocess_exec(
            "bash", "--noprofile", "--norc", "-eo", "pipefail", str(script),
            cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
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
        if self.stop_reason is not None:
            self.request_stop(self.stop_reason)
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout=timeout)
            except TimeoutError:
                self.request_stop(TIMED_OUT)
                await process.wait()
            if self._killer is not None:
                await self._killer
            pending = await self._drain_readers(readers)
            for reader in pending:
                reader.cancel()
            for reader in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        except asyncio.CancelledError:
            _signal_group(process.pid, signal.SIGKILL)
            for reader in readers:
                reader.cancel()
            raise
        finally:
            self._current = None
        code = process.returncode if process.returncode is not None else -1
        return 128 - code if code < 0 else code

    async def _drain_readers(self, readers: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """Wait for the pipe readers; return them once every one left has waited
        DRAIN_SECONDS for output (a background process keeps its pipe open).

        Readers still handling output are never cut short: on a busy worker,
        storing what a step printed may take longer than DRAIN_SECONDS.
        """
        pending = set(readers)
        while pending:
            _done, pending = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
            now = time.monotonic()
            waits = [since for since in self._read_wait_since.values() if since is not None]
            busy = len(waits) < len(pending) or any(now - since < DRAIN_SECONDS for since in waits)
            if pending and not busy:
                break
        return pending

    async def _pump(self, stream: asyncio.StreamReader, code: int) -> None:
        splitter = LineSplitter()
        while True:
            self._read_wait_since[code] = time.monotonic()
            chunk = await stream.read(READ_CHUNK_BYTES)
            self._read_wait_since[code] = None
            if not chunk:
                break
            await self.emit_many(code, splitter.feed(chunk), utc_timestamp())
        await self.emit_many(code, splitter.finish())


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)
