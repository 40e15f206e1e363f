"""How the files of a repository combine into one run: job keys across files."""

from __future__ import annotations

from minijenkin.pipeline import sources
from minijenkin.pipeline.events import Event

PUSH = Event(kind="push", ref="refs/heads/main", commit="c" * 40, branch="main")
TEST_JOB = b"on: push\njobs:\n  test:\n    steps: [{run: make test}]\n"


def workflow(name: str, text: bytes) -> sources.SourceFile:
    return sources.SourceFile(f".github/workflows/{name}", text)


def plan(*files: sources.SourceFile) -> sources.Plan:
    return sources.plan_run(sources.parse_sources(list(files)), PUSH, None)


def test_same_stem_keys_use_full_names() -> None:
    result = plan(workflow("ci.yaml", TEST_JOB), workflow("ci.yml", TEST_JOB), workflow("lint.yml", TEST_JOB))

    assert result.errors == []
    assert [entry["key"] for entry in result.graph] == ["ci.yaml/test", "ci.yml/test", "lint/test"]
    assert [entry["name"] for entry in result.graph] == ["ci.yaml / test", "ci.yml / test", "lint / test"]


def test_same_stem_needs_use_full_names() -> None:
    chained = (b"on: push\njobs:\n  test:\n    steps: [{run: x}]\n"
               b"  deploy:\n    needs: test\n    steps: [{run: y}]\n")

    result = plan(workflow("ci.yaml", chained), workflow("ci.yml", TEST_JOB))

    assert result.errors == []
    assert [entry["key"] for entry in result.graph] == ["ci.yaml/test", "ci.yaml/deploy", "ci.yml/test"]
    assert result.graph[1]["needs"] == ["ci.yaml/test"]
    assert result.graph[1]["spec"]["needs"] == {"test": ["ci.yaml/test"]}


def test_prefix_ignores_which_files_match() -> None:
    pull_only = b"on: pull_request\njobs:\n  test:\n    steps: [{run: x}]\n"

    result = plan(workflow("ci.yaml", pull_only), workflow("ci.yml", TEST_JOB),
                  workflow("lint.yml", TEST_JOB))

    assert result.errors == []
    assert [entry["key"] for entry in result.graph] == ["ci.yml/test", "lint/test"]


def test_key_prefixes_of_files() -> None:
    assert sources.key_prefixes([".github/workflows/ci.yaml", ".github/workflows/ci.yml",
                                 ".github/workflows/docs.yml"]) == {
        ".github/workflows/ci.yaml": "ci.yaml",
        ".github/workflows/ci.yml": "ci.yml",
        ".github/workflows/docs.yml": "docs",
    }


def test_truncated_keys_collide_in_one_file() -> None:
    long_id = "a" * 200
    text = (f"on: push\njobs:\n  {long_id}1:\n    steps: [{{run: x}}]\n"
            f"  {long_id}2:\n    steps: [{{run: y}}]\n").encode()

    result = plan(sources.SourceFile(".minijenkin.yml", text))

    assert result.graph == []
    assert [str(error) for error in result.errors] == [
        f".minijenkin.yml: two jobs have the key '{long_id}' (keys are truncated to 200 characters); "
        "shorten the job ids",
    ]
