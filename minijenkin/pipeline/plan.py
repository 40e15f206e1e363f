"""Turn a validated pipeline into the job graph a plan job submits."""

from __future__ import annotations

import math
from typing import Any

from minijenkin.pipeline.model import Pipeline
from minijenkin.pipeline.retry import max_attempts


def build_graph(pipeline: Pipeline) -> list[dict[str, Any]]:
    """One entry per job, in the JSON shape mj_plan_submit_v1 stores."""
    graph: list[dict[str, Any]] = []
    for job in pipeline.jobs.values():
        graph.append({
            "key": job.id,
            "name": job.name,
            "needs": list(job.needs),
            "labels": sorted(set(job.runs_on)),
            "timeout_seconds": max(1, math.ceil(job.timeout_minutes * 60)),
            "max_attempts": max_attempts(job.retry),
            "retry": job.retry,
            "spec": {
                "env": {**pipeline.env, **job.env},
                "steps": [
                    {"name": step.display_name, "run": step.run, "env": step.env}
                    for step in job.steps
                ],
            },
        })
    return graph
