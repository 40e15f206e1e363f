"""`minijenkin cancel` and `minijenkin rerun`: stop or repeat runs and jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from minijenkin import runs
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
    run_id: Annotated[int, typer.Argument(min=1, help="Id of a finished run.", show_default=False)],
    failed_only: Annotated[bool, typer.Option(
        "--failed-only", help="Re-run only the jobs that did not succeed, and the jobs that "
                              "need them.")] = False,
) -> None:
    """Queue new attempts for the jobs of a finished run."""
    reset = run_with_connection(
        lambda conn: runs.rerun_run(conn, run_id, failed_only=failed_only))
    print(f"run {run_id}: {reset} jobs queued again")
