"""`minijenkin validate` and `minijenkin exec` as a user runs them: real processes, real git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.gitrepo import GitRepo
from tests.support.workers import scrubbed_environment

EXEC_TIMEOUT_SECONDS = 240

PIPELINE = """\
on:
  push:
    branches: [main]
jobs:
  test:
    strategy:
      matrix:
        python: ['3.11', '3.12']
    steps:
      - run: echo "python ${{ matrix.python }}"
  show:
    needs: test
    steps:
      - name: Read the working tree
        run: |
          cat notes.txt
          cat draft.txt
          echo "on $GITHUB_REF_NAME" >&2
"""


def minijenkin(*args: str, cwd: Path, data_dir: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = scrubbed_environment()
    if data_dir is not None:
        env["MINIJENKIN_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "minijenkin", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_validate_prints_graph(tmp_path: Path) -> None:
    (tmp_path / ".minijenkin.yml").write_text(PIPELINE)

    shown = minijenkin("validate", "--ref", "refs/heads/main", cwd=tmp_path)
    as_json = minijenkin("validate", "--ref", "refs/heads/main", "--json", cwd=tmp_path)
    other_branch = minijenkin("validate", "--ref", "refs/heads/dev", cwd=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        ".minijenkin.yml: runs for on.push (branch main)",
        "valid; 3 jobs for push refs/heads/main:",
        "test (3.11)",
        "  timeout: 360 min",
        '  - Run echo "python ${{ matrix.python }}"',
        "test (3.12)",
        "  timeout: 360 min",
        '  - Run echo "python ${{ matrix.python }}"',
        "show",
        "  needs: test (3.11), test (3.12)",
        "  timeout: 360 min",
        "  - Read the working tree",
    ]
    graph = json.loads(as_json.stdout)
    assert [entry["key"] for entry in graph] == ["test (3.11)", "test (3.12)", "show"]
    assert graph[0]["spec"]["matrix"] == {"python": "3.11"}
    assert other_branch.returncode == 0
    assert other_branch.stdout.splitlines() == [
        ".minijenkin.yml: not run: branch 'dev' does not match on.push.branches",
        "valid; no job runs for push refs/heads/dev",
    ]


def test_validate_reports_every_error(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(
        "on: [push, release]\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/cache@v4\n      - run: echo ${{ github.head_ref }}\n"
        "        timeout-minutes: -1\n")

    result = minijenkin("validate", cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        ".github/workflows/ci.yml:6:15: jobs.build.steps[0]: the action 'actions/cache@v4' cannot run here: "
        "Mini-Jenkin runs 'run:' steps only, and treats actions/checkout as already done; replace this step "
        "with a 'run:' step that does the same",
        ".github/workflows/ci.yml:7:23: jobs.build.steps[1].run: '${{ github.head_ref }}' in a script would "
        "splice in a branch or tag name, which whoever pushes chooses, and such text can run commands; use "
        "the environment variable \"$GITHUB_HEAD_REF\" in the script instead",
        ".github/workflows/ci.yml:8:26: jobs.build.steps[1]: 'timeout-minutes' must be a number above 0 and "
        "at most 10080",
        "3 problems found",
    ]


def test_validate_same_stem_workflows(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for name in ("ci.yml", "ci.yaml"):
        (workflows / name).write_text("on: push\njobs:\n  test:\n    steps:\n      - run: make test\n")

    result = minijenkin("validate", "--ref", "refs/heads/main", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    graph = json.loads(result.stdout)
    assert [entry["key"] for entry in graph] == ["ci.yaml/test", "ci.yml/test"]
    assert [entry["spec"]["file"] for entry in graph] == [
        ".github/workflows/ci.yaml", ".github/workflows/ci.yml"]


def test_validate_missing_file(tmp_path: Path) -> None:
    result = minijenkin("validate", cwd=tmp_path)
    assert result.returncode == 1
    # The console wraps long messages; compare the words.
    assert " ".join(result.stderr.split()) == (
        f"error: no .minijenkin.yml and no .github/workflows/*.yml in {tmp_path}; name the file to check")


def test_validate_reusable_workflow(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "release.yml").write_text(
        "on:\n  workflow_call:\n    inputs:\n      version:\n        type: string\n"
        "jobs:\n  publish:\n    steps:\n      - run: ./publish.sh\n        env:\n"
        "          VERSION: ${{ inputs.version }}\n")

    result = minijenkin("validate", "--ref", "refs/heads/main", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        ".github/workflows/release.yml: not run: it declares only events Mini-Jenkin never starts runs "
        "for: workflow_call",
        "valid; no job runs for push refs/heads/main",
    ]


def test_exec_runs_working_tree_with_uncommitted_changes(git_repo: GitRepo, tmp_path: Path) -> None:
    git_repo.commit({".minijenkin.yml": PIPELINE, "notes.txt": "committed\n"}, "Add the pipeline")
    (git_repo.path / "notes.txt").write_text("edited, not committed\n")
    (git_repo.path / "draft.txt").write_text("untracked file\n")
    (git_repo.path / ".gitignore").write_text("ignored.txt\n")
    (git_repo.path / "ignored.txt").write_text("must not be copied\n")
    head = git_repo.head()
    data_dir = tmp_path / "exec-data"

    result = minijenkin("exec", str(git_repo.path), "--jobs", "1", cwd=tmp_path, data_dir=data_dir,
                        timeout=EXEC_TIMEOUT_SECONDS)
    lines = result.stdout.splitlines()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "show         | ▶ Read the working tree" in lines
    assert "show         | edited, not committed" in lines
    assert "show         | untracked file" in lines
    assert "show         | on main" in lines
    assert "test (3.11)  | python 3.11" in lines
    assert "test (3.12)  | python 3.12" in lines
    assert lines[-1] == "run 1 succeeded"
    # The user's repository is untouched: same head, same status.
    assert git_repo.head() == head
    # GitRepo.git strips the output, so the first line loses its leading space.
    assert git_repo.git("status", "--porcelain") == "M notes.txt\n?? .gitignore\n?? draft.txt"
    snapshot = next((data_dir / "exec" / "snapshots").iterdir())
    tree = subprocess.run(["git", "ls-tree", "--name-only", "main"], cwd=snapshot, capture_output=True,
                          text=True, check=True).stdout.split()
    assert tree == [".gitignore", ".minijenkin.yml", "draft.txt", "notes.txt"]

    (git_repo.path / "notes.txt").write_text("exit 1\n")
    failing = git_repo.path / ".minijenkin.yml"
    failing.write_text("jobs:\n  broken:\n    steps:\n      - run: bash notes.txt\n")
    second = minijenkin("exec", str(git_repo.path), cwd=tmp_path, data_dir=data_dir,
                        timeout=EXEC_TIMEOUT_SECONDS)
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stdout.splitlines()[-1] == "run 2 failed: job broken failed"
