"""`minijenkin show`, `cancel`, `rerun` and `approve`: inspect, stop, repeat or approve runs."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from minijenkin import deploys, runs
from minijenkin.api.convert import run_detail
from minijenkin.cli.common import output_console, run_with_connection
from minijenkin.text import quantity

CANCEL_REASON = "cancelled from the command line"

_JOB_OUTCOMES = {
    "cancelled": "job {id} cancelled",
    "cancel_requested": "job {id} is running; its worker was told to stop it",
    "already_finished": "job {id} had already finished; nothing to cancel",
}


def cancel(
    run_id: Annotated[int | None, typer.Argument(
        min=1, help="Run whose unfinished jobs to cancel.", show_default=False)] = None,
    job: Annotated[int | None, typer.Option(
        "--job", min=1, help="Cancel only this job (its dependents are skipped).")] = None,
) -> None:
    """Cancel a run, or one job with --job; running steps are stopped by their worker."""
    if (run_id is None) == (job is None):
        raise typer.BadParameter("give either a RUN_ID or --job JOB_ID")
    if job is not None:
        job_id = job
        outcome = run_with_connection(
            lambda conn: runs.cancel_job(conn, job_id, reason=CANCEL_REASON))
        print(_JOB_OUTCOMES.get(outcome, f"job {{id}}: {outcome}").format(id=job_id))
        return
    assert run_id is not None
    target = run_id
    affected = run_with_connection(lambda conn: runs.cancel_run(conn, target, reason=CANCEL_REASON))
    print(f"run {target}: {quantity(affected, 'unfinished job')} cancelled or being stopped")


def rerun(
    run_id: Annotated[int, typer.Argument(min=1, help="Id of a finished run.", show_default=False)],
    failed_only: Annotated[bool, typer.Option(
        "--failed-only", help="Re-run only the jobs that did not succeed, and the jobs that "
                              "need them.")] = False,
) -> None:
    """Queue new attempts for the jobs of a finished run."""
    reset = run_with_connection(
        lambda conn: runs.rerun_run(conn, run_id, failed_only=failed_only))
    print(f"run {run_id}: {quantity(reset, 'job')} queued again")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _waiting_reason(labels: list[str]) -> str:
    # A job without labels lacks a capable worker only when no worker is live at all.
    if not labels:
        return "waiting for a worker: no worker is live"
    return f"waiting for a worker with the labels {', '.join(labels)}"


def show(
    run_id: Annotated[int, typer.Argument(min=1, help="Run id, as printed by `minijenkin "
                                          "trigger` and shown by the dashboard.",
                                          show_default=False)],
) -> None:
    """Print a run's status and its jobs with their ids (for `minijenkin logs JOB_ID`)."""
    run = run_detail(run_with_connection(lambda conn: runs.get_run(conn, run_id)))
    subject = (run.message or "").splitlines()[0] if run.message else ""
    print(f"run {run.id} of {run.repo_name}: {run.status} ({_seconds(run.duration_seconds)})")
    print(f"  {run.event} {run.ref} at {run.commit[:12]} {subject}".rstrip())
    if run.reason:
        print(f"  reason: {run.reason}")
    table = Table("job id", "name", "status", "attempt", "exit code", "duration", "reason")
    for job in run.jobs:
        reason = job.reason or ""
        if job.status == "queued" and not job.has_capable_worker:
            reason = _waiting_reason(job.labels)
        table.add_row(str(job.id), job.name, job.status, str(job.attempt),
                      "-" if job.exit_code is None else str(job.exit_code),
                      _seconds(job.duration_seconds), reason)
    output_console().print(table)


def approve(
    job_id: Annotated[int, typer.Argument(
        min=1, help="A deploy job in status awaiting_approval.", show_default=False)],
    reject: Annotated[bool, typer.Option(
        "--reject", help="Reject the deploy: the job and the jobs that need it are "
                         "skipped.")] = False,
) -> None:
    """Approve a deploy that awaits approval, or reject it with --reject.

    An approved deploy then waits for its environment's lock. The decision
    is recorded under the local user name.
    """
    by = f"cli:{getpass.getuser()}"
    outcome = run_with_connection(
        lambda conn: deploys.decide(conn, job_id, approve=not reject, by=by))
    print(f"job {job_id}: deploy {outcome} by {by}")
