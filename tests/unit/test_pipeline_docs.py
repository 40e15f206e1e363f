"""docs/pipeline.md documents every key, function, context and variable, so it cannot drift."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from minijenkin.pipeline import checks, events
from minijenkin.pipeline.expressions import FUNCTION_NAMES
from minijenkin.pipeline.parser import accepted_keys
from minijenkin.queue.client import ClaimedJob
from minijenkin.worker.environment import job_environment
from minijenkin.worker.steps import CommandFiles

DOC = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()
HEADINGS = set(re.findall(r"^#{3,4} `([^`]+)`$", DOC, flags=re.MULTILINE))


def test_every_accepted_key_has_a_section() -> None:
    missing = [key for key in accepted_keys() if key not in HEADINGS]
    assert missing == []


def test_every_section_is_an_accepted_key_or_context() -> None:
    commands = {"minijenkin validate [FILE]", "minijenkin exec [DIR]"}
    known = set(accepted_keys()) | set(checks.CONTEXTS) | commands
    assert sorted(HEADINGS - known) == []


def test_every_function_and_context_is_documented() -> None:
    assert [name for name in FUNCTION_NAMES if f"`{name}(" not in DOC] == []
    assert [name for name in checks.CONTEXTS if name not in HEADINGS] == []
    assert [key for key in events.GITHUB_KEYS if f"`{key}`" not in DOC] == []
    assert [key for key in events.MINIJENKIN_KEYS if f"`{key}`" not in DOC] == []


def test_every_step_variable_is_documented(tmp_path: Path) -> None:
    job = ClaimedJob(
        job_id=1, run_id=2, attempt=1, lease_token=uuid.uuid4(), kind="script", key="test (1)", name="test",
        spec={"job": "test"}, condition=None, timeout_seconds=60,
        context={"repo": {"id": 1, "name": "acme/web", "url": "file:///x"},
                 "run": {"id": 2, "event": "push", "ref": "refs/tags/v1", "commit": "c" * 40,
                         "trigger": {"pull_request": {"number": 1, "title": "t", "head_ref": "h",
                                                      "base_ref": "b"}}}})
    env = job_environment(job, workspace=tmp_path, home=tmp_path, tmp=tmp_path, step_path="/bin",
                          worker_name="w")
    env.update({"MINIJENKIN_BRANCH": "x"})
    names = sorted(env) + sorted(CommandFiles.create(tmp_path, 1).variables())
    assert [name for name in names if f"`{name}`" not in DOC] == []
