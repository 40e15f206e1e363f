"""`minijenkin cancel`, `rerun` and `approve`: stop, repeat or approve runs and jobs."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from minijenkin import deploys, runs
from minijenkin.cli.common import run_with_connection

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
    print(f"run {target}: {affected} unfinished jobs cancelled or being stopped")


def rerun(
    run_id: Annotated[int, typer.Argument(min=1, help="A finished run.", show_default=False)],
    failed_only: Annotated[bool, typer.Option(
        "--failed-only", help="Re-run only the jobs that did not succeed, and the jobs that "
                              "need them.")] = False,
) -> None:
    """Queue new attempts for the jobs of a finished run."""
    reset = run_with_connection(
        lambda conn: runs.rerun_run(conn, run_id, failed_only=failed_only))
    print(f"run {run_id}: {reset} jobs queued again")


def approve(
    job_id: Annotated[int, typer.Argument(
        min=1, help="A deploy job in status awaiting_approval.", show_default=False)],
    reject: Annotated[bool, typer.Option(
        "--reject", help="Reject the deploy: the job and the jobs that need it are "
                         "skipped.")] = False,
) -> None:
    """Approve a deploy that awaits approval (it then waits for its environment's lock),
    or reject it with --reject. The decision is recorded under the local user name."""
    by = f"cli:{getpass.getuser()}"
    outcome = run_with_connection(
        lambda conn: deploys.decide(conn, job_id, approve=not reject, by=by))
    print(f"job {job_id}: deploy {outcome} by {by}")
