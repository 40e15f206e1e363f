"""The environment a step runs with, built from scratch.

Nothing of the worker's own environment reaches a step (no database URL, no
MINIJENKIN_* settings, no PG* variables). Event text that the pusher
controls, such as branch names and commit messages, reaches steps only here,
as variables, never spliced into the script.
"""

from __future__ import annotations

import platform
from pathlib import Path

from minijenkin.pipeline.events import GITHUB_EVENT_NAMES, PULL_REQUEST_REF_PREFIXES, ref_parts, server_url
from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.steps import runner_arch

__all__ = ["job_environment", "ref_parts", "step_environment"]


def job_environment(
    job: ClaimedJob, *, workspace: Path, home: Path, tmp: Path, step_path: str, worker_name: str,
) -> dict[str, str]:
    """Variables every step of the job gets, before the pipeline's own `env`."""
    run = job.run
    repo = job.repo
    ref_name, ref_type = ref_parts(run["ref"])
    trigger = run.get("trigger") or {}
    pull_request = trigger.get("pull_request") or {}
    event = run["event"]
    github_event = GITHUB_EVENT_NAMES.get(event, event)
    sender = str(trigger.get("sender") or run.get("author") or "")

    env = {
        "PATH": step_path,
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/bash",
        "CI": "true",
        # Names GitHub Actions scripts expect.
        "GITHUB_SHA": run["commit"],
        "GITHUB_REF": run["ref"],
        "GITHUB_REF_NAME": ref_name,
        "GITHUB_REF_TYPE": ref_type,
        "GITHUB_EVENT_NAME": github_event,
        "GITHUB_REPOSITORY": repo["name"],
        "GITHUB_RUN_ID": str(run["id"]),
        "GITHUB_RUN_NUMBER": str(run["id"]),
        "GITHUB_RUN_ATTEMPT": str(job.attempt),
        "GITHUB_SERVER_URL": server_url(str(repo.get("url") or "")),
        "GITHUB_JOB": str(job.spec.get("job") or job.key),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTOR": sender,
        "GITHUB_WORKFLOW": str(job.spec.get("workflow") or ""),
        "RUNNER_TEMP": str(tmp),
        "RUNNER_OS": platform.system() or "Linux",
        "RUNNER_ARCH": runner_arch(),
        "RUNNER_NAME": worker_name,
        # The same facts under our own prefix.
        "MINIJENKIN": "true",
        "MINIJENKIN_COMMIT": run["commit"],
        "MINIJENKIN_REF": run["ref"],
        "MINIJENKIN_REF_NAME": ref_name,
        "MINIJENKIN_REF_TYPE": ref_type,
        "MINIJENKIN_EVENT": event,
        "MINIJENKIN_REPOSITORY": repo["name"],
        "MINIJENKIN_RUN_ID": str(run["id"]),
        "MINIJENKIN_JOB_ID": str(job.job_id),
        "MINIJENKIN_JOB_KEY": job.key,
        "MINIJENKIN_JOB_NAME": job.name,
        "MINIJENKIN_ATTEMPT": str(job.attempt),
        "MINIJENKIN_WORKSPACE": str(workspace),
        "MINIJENKIN_WORKER": worker_name,
        "MINIJENKIN_COMMIT_MESSAGE": run.get("message") or "",
        "MINIJENKIN_COMMIT_AUTHOR": run.get("author") or "",
    }
    if ref_type == "branch" and not run["ref"].startswith(PULL_REQUEST_REF_PREFIXES):
        env["MINIJENKIN_BRANCH"] = ref_name
    if ref_type == "tag":
        env["MINIJENKIN_TAG"] = ref_name
    if pull_request:
        env["GITHUB_HEAD_REF"] = str(pull_request.get("head_ref") or "")
        env["GITHUB_BASE_REF"] = str(pull_request.get("base_ref") or "")
        env["MINIJENKIN_PULL_REQUEST"] = str(pull_request.get("number") or "")
        env["MINIJENKIN_PULL_REQUEST_TITLE"] = str(pull_request.get("title") or "")
    return env


def step_environment(base: dict[str, str], *layers: dict[str, str]) -> dict[str, str]:
    """`base` overlaid with each layer (pipeline, job, step env) in order."""
    env = dict(base)
    for layer in layers:
        env.update(layer)
    return env
