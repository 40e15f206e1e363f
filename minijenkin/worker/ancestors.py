"""The statuses of a job's indirect ancestors, for failure() in its `if:`.

On GitHub, failure() in a job's condition is true when any ancestor job
failed, not only a job listed in `needs`: a "notify on failure" job at the
end of a chain runs when the chain's first job fails. The claim returns the
statuses of the direct needs only, so the planner lists the other
ancestors' keys in the spec of jobs whose condition calls failure(), and
the worker reads their statuses before it evaluates the condition.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.secrets import fetch_for_attempt


async def load_ancestor_statuses(pool: AsyncConnectionPool, job: ClaimedJob) -> None:
    """Set job.context["ancestors"] to the statuses of the spec's `ancestors`, by job key.

    A failure of a job that continues on error counts as a success, as for
    direct needs. Raises SecretsUnavailableError as loading secrets does.
    """
    keys = job.spec.get("ancestors")
    if job.kind == "plan" or not keys:
        return
    rows = await fetch_for_attempt(pool, job, "job_ancestor_statuses", "the statuses of its ancestor jobs",
                                   {"keys": list(keys)})
    job.context["ancestors"] = {
        row["key"]: "succeeded" if row["continue_on_error"] and row["status"] in ("failed", "timed_out")
        else row["status"]
        for row in rows}
