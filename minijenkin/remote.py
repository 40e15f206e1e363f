"""Reading a remote repository's refs with `git ls-remote`, for polling and manual runs.

Git runs with the same locked-down environment as in workers (no prompts,
no user configuration, only data transports; see minijenkin.worker.git).
"""

from __future__ import annotations

from pathlib import Path

from minijenkin.worker.git import SHA_PATTERN, GitError, run_git

LS_REMOTE_TIMEOUT_SECONDS = 60.0


async def list_heads(url: str, *, home: Path, patterns: tuple[str, ...] = (),
                     limit_seconds: float = LS_REMOTE_TIMEOUT_SECONDS) -> dict[str, str]:
    """Map each branch and tag of `url` (full ref name) to its commit.

    An annotated tag maps to the commit it points to (its peeled `^{}`
    entry), not to the tag object. `patterns` limit the refs asked for, as
    in `git ls-remote <url> <pattern>...`. Raises GitError.
    """
    home.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a local directory, created once)
    output = await run_git("ls-remote", "--heads", "--tags", "--", url, *patterns, home=home,
                           limit_seconds=limit_seconds)
    heads: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in output.decode("utf-8", errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if not SHA_PATTERN.match(sha) or not ref.startswith(("refs/heads/", "refs/tags/")):
            continue
        if ref.endswith("^{}"):
            peeled[ref[:-3]] = sha
        else:
            heads[ref] = sha
    heads.update(peeled)
    return heads


async def resolve_ref(url: str, ref: str, *, home: Path,
                      limit_seconds: float = LS_REMOTE_TIMEOUT_SECONDS) -> tuple[str, str] | None:
    """(full ref, commit) of a branch or tag name or full ref; a branch wins over a tag.

    Returns None when the remote has no such ref. Raises GitError.
    """
    candidates = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    # With patterns, ls-remote lists a tag's peeled entry only when asked for it by name.
    patterns = [*candidates, *(f"{candidate}^{{}}" for candidate in candidates
                               if candidate.startswith("refs/tags/"))]
    heads = await list_heads(url, home=home, patterns=tuple(patterns),
                             limit_seconds=limit_seconds)
    for candidate in candidates:
        if candidate in heads:
            return candidate, heads[candidate]
    return None


__all__ = ["GitError", "list_heads", "resolve_ref"]
