"""Manual runs: a person or a script requests a run of a ref, with inputs.

`POST /api/runs` and `minijenkin trigger` both land here. The ref is
resolved to its current commit with `git ls-remote` unless the caller names
the commit. The inputs go to `trigger["inputs"]`, where the plan job reads
them against the pipeline's `workflow_dispatch` inputs (types, defaults).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg

from minijenkin import repos, runs
from minijenkin.errors import InvalidInputError, RemoteError
from minijenkin.forges import ref_names
from minijenkin.remote import GitError, resolve_ref

logger = logging.getLogger(__name__)

INPUTS_MAX = 50
INPUT_VALUE_MAX = 65536
# The input names POST /api/runs accepts (RunCreate in minijenkin/api/schemas.py).
_INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
REF_MAX = 255
# A full commit id: SHA-1 (40 hex digits) or SHA-256 (64), as `git rev-parse` prints it.
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{40}([0-9a-fA-F]{24})?")


def git_home(data_dir: Path) -> Path:
    """HOME for git commands the API and CLI run (no user configuration is read)."""
    return data_dir / "git" / "home"


def parse_input_options(options: list[str]) -> dict[str, str]:
    """Turn `--input name=value` options into a mapping; a later name wins."""
    inputs: dict[str, str] = {}
    for option in options:
        name, separator, value = option.partition("=")
        if not separator or not name.strip():
            raise InvalidInputError(f"invalid --input {option!r}: use name=value", field="inputs")
        inputs[name.strip()] = value
    if len(inputs) > INPUTS_MAX:
        raise InvalidInputError(f"at most {INPUTS_MAX} inputs are allowed", field="inputs")
    return inputs


def validate_inputs(inputs: Mapping[str, Any]) -> None:
    """Raise InvalidInputError unless every input has a valid name and a value the run can store."""
    for name, value in inputs.items():
        if not _INPUT_NAME.fullmatch(name):
            raise InvalidInputError(
                f"invalid input name {name!r}: use letters, digits, '_' and '-', "
                "starting with a letter or '_', at most 100 characters", field="inputs")
        if isinstance(value, str) and len(value) > INPUT_VALUE_MAX:
            raise InvalidInputError(
                f"input {name!r} is longer than {INPUT_VALUE_MAX} characters", field="inputs")
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInputError(f"input {name!r} must not contain NUL characters",
                                    field="inputs")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"input {name!r} must be a finite number, not {value}",
                                    field="inputs")


def validate_ref(ref: str) -> None:
    """Raise InvalidInputError unless `ref` can name a branch or tag (it reaches git as an argument)."""
    if not 1 <= len(ref) <= REF_MAX or ref.startswith("-") or any(
        char.isspace() or ord(char) < 32 or ord(char) == 127 for char in ref
    ):
        raise InvalidInputError(
            f"invalid ref {ref!r}: give a branch or tag name such as 'main' or 'v1.2.0', or a "
            "full ref such as 'refs/tags/v1.2.0'", field="ref")


def validate_commit(commit: str) -> None:
    """Raise InvalidInputError unless `commit` is a full SHA-1 or SHA-256 commit id."""
    # NOTE: a short id is rejected, not resolved, because resolving one needs a clone.
    if not _COMMIT_ID.fullmatch(commit):
        excerpt = commit if len(commit) <= 80 else f"{commit[:80]}..."
        raise InvalidInputError(
            f"invalid commit {excerpt!r}: give the full commit id, 40 or 64 hex digits "
            "(`git rev-parse HEAD` prints it)", field="commit")


async def create_manual_run(
    conn: psycopg.AsyncConnection,
    *,
    repo_name: str,
    ref: str,
    commit: str | None,
    inputs: dict[str, Any],
    actor: str,
    source: str,
    data_dir: Path,
) -> dict[str, Any]:
    """Create a `manual` run of `ref`; return the run with its jobs.

    Raises NotFoundError (repository), InvalidInputError (an invalid
    repository name, ref, commit id or input, or the remote has no such ref)
    or RemoteError (the remote cannot be read).
    """
    if "\x00" in repo_name:
        raise InvalidInputError(
            f"invalid repository name {repo_name!r}: it must not contain NUL characters",
            field="repo")
    validate_ref(ref)
    if commit is not None:
        validate_commit(commit)
    validate_inputs(inputs)
    repo = await repos.get_repo_by_name(conn, repo_name)
    if commit is not None:
        full_ref = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        commit_sha = commit.lower()
    else:
        # NOTE: the caller's database connection stays checked out while git
        # runs (up to the ls-remote timeout), so many slow remotes at once
        # can exhaust the API's pool.
        try:
            resolved = await resolve_ref(repo["url"], ref, home=git_home(data_dir))
        except GitError as exc:
            logger.warning("cannot read the repository's refs", extra={
                "action": "manual_run_remote_error", "repo_id": repo["id"], "error": str(exc)})
            raise RemoteError(f"cannot read the refs of {repo['url']}: {exc}") from exc
        if resolved is None:
            raise InvalidInputError(
                f"repository {repo_name!r} has no branch or tag {ref!r}", field="ref")
        full_ref, commit_sha = resolved

    branch, tag = ref_names(full_ref)
    trigger: dict[str, Any] = {
        "source": source, "actor": actor, "inputs": dict(inputs), "branch": branch, "tag": tag,
    }
    run_id = await runs.create_run(
        conn, repo_id=repo["id"], event="manual", ref=full_ref, commit_sha=commit_sha,
        message=f"manual run by {actor}", author=actor, trigger=trigger,
    )
    logger.info("manual run created", extra={
        "action": "manual_run", "run_id": run_id, "repo_id": repo["id"], "ref": full_ref,
        "actor": actor, "source": source})
    return await runs.get_run(conn, run_id)
