"""A worker's cycle in one call: report finished attempts, then claim new jobs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import psycopg

from minijenkin.config import Settings, load_settings
from minijenkin.db import create_pool
from minijenkin.errors import DatabaseUnavailableError
from minijenkin.queue.batcher import FinishBatcher
from minijenkin.queue.client import ClaimedJob, FinishItem, QueueClient, RetryPolicy
from minijenkin.worker.main import Worker
from tests.support.factories import (
    claim,
    create_repo,
    create_run,
    job_entry,
    register_worker,
    run_status,
    start_run_with_graph,
    statuses,
    submit_plan,
)

CYCLE = ("SELECT * FROM mj_job_finish_and_claim_v1(%s, '{}', %s, %s, %s, %s, %s, %s, 0.01, 0.05) "
         "ORDER BY outcome IS NULL, job_id")


def _cycle(db: psycopg.Connection, worker_id: uuid.UUID, limit: int,
           reports: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
    return db.execute(CYCLE, (
        worker_id, limit, [job["job_id"] for job, _ in reports],
        [job["lease_token"] for job, _ in reports], [status for _, status in reports],
        [0 if status == "succeeded" else 1 for _, status in reports],
        [None] * len(reports))).fetchall()


def test_cycle_claims_jobs_its_report_queued(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [
        job_entry("build"), job_entry("test", ["build"])])
    [build] = claim(db, worker_id)

    rows = _cycle(db, worker_id, 10, [(build, "succeeded")])

    assert [(row["job_id"], row["outcome"]) for row in rows] == [
        (build["job_id"], "finished"), (rows[1]["job_id"], None)]
    assert rows[1]["key"] == "test"
    assert rows[1]["needs"] == {"build": "succeeded"}
    assert rows[1]["run_context"]["run"]["id"] == run_id
    assert statuses(db, run_id) == {"plan": "succeeded", "build": "succeeded", "test": "running"}


def test_cycle_with_stale_report_still_claims(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [job_entry("lint"), job_entry("docs")])
    [lint, docs] = claim(db, worker_id, limit=2)
    stale = {**lint, "lease_token": uuid.uuid4()}
    other_run = create_run(db, repo_id)

    rows = _cycle(db, worker_id, 5, [(stale, "succeeded"), (docs, "failed")])

    assert [(row["job_id"], row["outcome"]) for row in rows[:2]] == [
        (lint["job_id"], "stale"), (docs["job_id"], "finished")]
    assert [(row["run_id"], row["kind"], row["outcome"]) for row in rows[2:]] == [
        (other_run, "plan", None)]
    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "running", "docs": "failed"}


def test_cycle_without_reports_is_a_claim(db: psycopg.Connection) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = create_run(db, repo_id)

    rows = _cycle(db, worker_id, 1, [])

    assert [(row["run_id"], row["kind"], row["outcome"], row["attempt"]) for row in rows] == [
        (run_id, "plan", None, 1)]
    assert run_status(db, run_id) == "running"


async def _with_client(database_url: str, worker_id: uuid.UUID, body: Any) -> Any:
    pool = create_pool(database_url, application_name="test", max_size=1)
    await pool.open()
    try:
        return await body(QueueClient(pool, worker_id, RetryPolicy(0.01, 0.05)))
    finally:
        await pool.close()


def test_client_cycle_returns_outcomes_and_jobs(db: psycopg.Connection,
                                                 database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    start_run_with_graph(db, repo_id, worker_id, [job_entry("build"), job_entry("test", ["build"])])
    [build] = claim(db, worker_id)

    async def body(client: QueueClient) -> tuple[dict[int, str], list[ClaimedJob]]:
        item = FinishItem(job=ClaimedJob(**build), status="succeeded", exit_code=0, reason=None)
        return await client.finish_and_claim([item], [], 10)

    outcomes, jobs = asyncio.run(_with_client(database_url, worker_id, body))

    assert outcomes == {build["job_id"]: "finished"}
    assert [job.key for job in jobs] == ["test"]
    assert jobs[0].context["needs"] == {"build": "succeeded"}
    assert jobs[0].repo["name"] == "acme/web"


def test_client_reports_reason_with_nul(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [job_entry("lint"), job_entry("docs")])
    lint, docs = claim(db, worker_id)

    async def body(client: QueueClient) -> dict[int, str]:
        return await client.finish_many([
            FinishItem(job=ClaimedJob(**lint), status="failed", exit_code=1, reason="step 'a\0b' failed"),
            FinishItem(job=ClaimedJob(**docs), status="succeeded", exit_code=0, reason=None)])

    outcomes = asyncio.run(_with_client(database_url, worker_id, body))

    assert outcomes == {lint["job_id"]: "finished", docs["job_id"]: "finished"}
    reason = db.execute("SELECT reason FROM jobs WHERE id = %s", (lint["job_id"],)).fetchone()["reason"]
    assert reason == "step 'a\ufffdb' failed"
    assert statuses(db, run_id) == {"plan": "succeeded", "lint": "failed", "docs": "succeeded"}


def test_batcher_settles_results_a_claim_took(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [job_entry("lint")])
    [lint] = claim(db, worker_id)

    async def body(client: QueueClient) -> tuple[str, int, list[str]]:
        # A linger longer than the test: only the cycle can report the result.
        batcher = FinishBatcher(client, linger_seconds=60)
        report = asyncio.create_task(batcher.finish(FinishItem(
            job=ClaimedJob(**lint), status="succeeded", exit_code=0, reason=None)))
        await asyncio.sleep(0)
        results = batcher.take()
        outcomes, jobs = await client.finish_and_claim([item for item, _ in results], [], 10)
        batcher.settle(results, outcomes)
        return await report, len(results), [job.key for job in jobs]

    outcome, result_count, claimed = asyncio.run(_with_client(database_url, worker_id, body))

    assert outcome == "finished"
    assert result_count == 1
    assert claimed == []
    assert run_status(db, run_id) == "succeeded"


def test_batcher_reports_results_put_back(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    plan_run = create_run(db, repo_id)
    [plan] = claim(db, worker_id)
    assert submit_plan(db, plan, [job_entry("lint")]) == "finished"
    [lint] = claim(db, worker_id)

    async def body(client: QueueClient) -> tuple[str, int]:
        batcher = FinishBatcher(client, linger_seconds=0.01)
        report = asyncio.create_task(batcher.finish(FinishItem(
            job=ClaimedJob(**lint), status="failed", exit_code=2, reason="step failed")))
        await asyncio.sleep(0)
        results = batcher.take()
        # The claim's call failed: the batcher reports the results itself.
        batcher.put_back(results)
        return await asyncio.wait_for(report, timeout=30), len(results)

    outcome, result_count = asyncio.run(_with_client(database_url, worker_id, body))

    assert outcome == "finished"
    assert result_count == 1
    assert statuses(db, plan_run) == {"plan": "succeeded", "lint": "failed"}
    assert run_status(db, plan_run) == "failed"


class _HoldingWorker(Worker):
    """A real worker whose claimed jobs are recorded instead of run."""

    def __init__(self, settings: Settings, conninfo: str) -> None:
        super().__init__(settings, conninfo)
        self.started: list[ClaimedJob] = []

    def _start(self, job: ClaimedJob, wake: str) -> None:
        self.started.append(job)


def _run_worker(settings: Settings, database_url: str, body: Any) -> Any:
    async def main() -> Any:
        worker = _HoldingWorker(settings, database_url)
        await worker.pool.open()
        try:
            assert await worker._register()
            return await body(worker)
        finally:
            await worker.pool.close()

    return asyncio.run(main())


def _result(worker: Worker, job: ClaimedJob, status: str,
            exit_code: int | None = 0) -> asyncio.Task[str]:
    """Hand a result to the worker's batcher, as a job's report does."""
    return asyncio.create_task(worker.finisher.finish(FinishItem(
        job=job, status=status, exit_code=exit_code, reason=None)))


def _build_running_and_plan_queued(db: psycopg.Connection) -> tuple[int, dict[str, Any], int]:
    """Return a run whose job "build" is claimed (and the job), and a second run whose plan is queued."""
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    first = start_run_with_graph(db, repo_id, worker_id, [job_entry("build")])
    [build] = claim(db, worker_id)
    second = create_run(db, repo_id)
    return first, build, second


def test_worker_reports_success_with_its_claim(db: psycopg.Connection, database_url: str,
                                               settings: Settings) -> None:
    first, build, second = _build_running_and_plan_queued(db)

    async def body(worker: _HoldingWorker) -> tuple[list[ClaimedJob], str]:
        report = _result(worker, ClaimedJob(**build), "succeeded")
        await asyncio.sleep(0)
        claimed = await worker._claim(1, "test")
        return claimed, await asyncio.wait_for(report, timeout=30)

    claimed, outcome = _run_worker(settings, database_url, body)

    assert outcome == "finished"
    assert [(job.run_id, job.kind) for job in claimed] == [(second, "plan")]
    # One transaction wrote both rows.
    xmins = db.execute("SELECT id, xmin::text AS xmin FROM jobs WHERE id IN (%s, %s)",
                       (build["job_id"], claimed[0].job_id)).fetchall()
    assert len({row["xmin"] for row in xmins}) == 1
    assert run_status(db, first) == "succeeded"


def test_worker_reports_failure_before_claiming(db: psycopg.Connection, database_url: str,
                                                data_dir: Path) -> None:
    # No backoff: a retry is queued for now(), which a claim in the same
    # transaction would take again while the failed attempt still occupies its slot.
    settings = load_settings(data_dir=data_dir, retry_backoff_seconds=0.0,
                             retry_backoff_max_seconds=0.0)
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    run_id = start_run_with_graph(db, repo_id, worker_id, [job_entry("flaky", retry={"max": 1})])
    [flaky] = claim(db, worker_id)

    async def body(worker: _HoldingWorker) -> tuple[list[ClaimedJob], str, list[ClaimedJob]]:
        report = _result(worker, ClaimedJob(**flaky), "failed", exit_code=1)
        await asyncio.sleep(0)
        during = await worker._claim(1, "test")
        outcome = await asyncio.wait_for(report, timeout=30)
        after = await worker._claim(1, "test")
        return during, outcome, after

    during, outcome, after = _run_worker(settings, database_url, body)

    assert during == []
    assert outcome == "retrying"
    assert [(job.job_id, job.attempt) for job in after] == [(flaky["job_id"], 2)]
    assert statuses(db, run_id)["flaky"] == "running"


def test_worker_claims_after_a_rejected_result(db: psycopg.Connection, database_url: str,
                                               settings: Settings) -> None:
    first, build, second = _build_running_and_plan_queued(db)

    async def body(worker: _HoldingWorker) -> tuple[list[ClaimedJob], BaseException | str]:
        # An exit code beyond the integer range: the database rejects the call.
        report = _result(worker, ClaimedJob(**build), "succeeded", exit_code=2**40)
        await asyncio.sleep(0)
        claimed = await worker._claim(1, "test")
        [result] = await asyncio.wait_for(asyncio.gather(report, return_exceptions=True),
                                          timeout=30)
        return claimed, result

    claimed, result = _run_worker(settings, database_url, body)

    assert [(job.run_id, job.kind) for job in claimed] == [(second, "plan")]
    assert isinstance(result, psycopg.errors.NumericValueOutOfRange)
    assert statuses(db, first)["build"] == "running"


def test_store_outputs_times_out(db: psycopg.Connection, database_url: str) -> None:
    repo_id = create_repo(db)
    worker_id = register_worker(db)
    start_run_with_graph(db, repo_id, worker_id, [job_entry("build")])
    [build] = claim(db, worker_id)

    async def body(client: QueueClient) -> str:
        client.call_timeout_seconds = 0.5
        try:
            await asyncio.wait_for(client.store_outputs(ClaimedJob(**build), {"version": "1.0"}), 10)
        except DatabaseUnavailableError as exc:
            return str(exc)
        except TimeoutError:
            return "no timeout within 10 s"
        return "stored"

    with psycopg.connect(database_url) as holder:
        # Another transaction has locked the job's row, so the UPDATE waits.
        holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (build["job_id"],))
        outcome = asyncio.run(_with_client(database_url, worker_id, body))
        holder.rollback()

    assert outcome == "timed out: no response from the database within 0.5 s"
