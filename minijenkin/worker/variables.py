"""The repository's variables (`${{ vars.NAME }}`), read by the plan job.

The planner evaluates plan-time expressions with every variable and copies
the values each job reads into its spec, so the other jobs of the run make
no call of their own and keep the values the run started with.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.secrets import fetch_for_attempt


async def load_variables(pool: AsyncConnectionPool, job: ClaimedJob) -> None:
    """Set job.context["vars"] of a plan job; raise SecretsUnavailableError as loading secrets does."""
    if job.kind != "plan":
        return
    rows = await fetch_for_attempt(pool, job, "job_variables", "the repository's variables")
    job.context["vars"] = {row["name"]: row["value"] for row in rows}
