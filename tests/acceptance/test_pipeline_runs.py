"""Pipeline semantics end to end: real repository, API, webhook and worker processes.

A GitHub Actions workflow runs unchanged; conditions, continue-on-error,
step timeouts, matrices with fail-fast, trigger filters and manual inputs
behave as in GitHub Actions; and event text never reaches a shell as code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support import forges
from tests.support.api import ApiServer
from tests.support.github import encode, push_payload, signed_headers
from tests.support.gitrepo import GitRepo
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess

SECRET = "pipeline-secret"
REPO = "acme/pipelines"
RUN_TIMEOUT = 90


def register(client: httpx.Client, repo: GitRepo) -> int:
    response = client.post("/api/repos", json={"name": REPO, "url": repo.url, "webhook_secret": SECRET})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def push(client: httpx.Client, repo: GitRepo, after: str, *, ref: str = "refs/heads/main",
         message: str = "Update") -> int:
    body = encode(push_payload(full_name=REPO, clone_url=repo.url, after=after, ref=ref, message=message))
    response = client.post("/hooks/github", content=body, headers=signed_headers(SECRET, body))
    assert response.status_code == 201, response.text
    return int(response.json()["run_id"])


def create_run(db: psycopg.Connection, repo_id: int, *, event: str, commit: str, before: str | None = None,
               trigger: dict[str, Any] | None = None, ref: str = "refs/heads/main") -> int:
    row = db.execute("SELECT mj_run_create_v1(%s, %s, %s, %s, %s, 'message', 'author', %s::jsonb) AS id",
                     (repo_id, event, ref, commit, before, json.dumps(trigger or {}))).fetchone()
    return int(row["id"])


def wait_finished(client: httpx.Client, run_id: int) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = client.get(f"/api/runs/{run_id}").json()
        return run if run["status"] not in ("pending", "queued", "running") else None

    return wait_for(finished, timeout=RUN_TIMEOUT, interval=0.2, message=f"run {run_id} to finish")


def logs(client: httpx.Client, job: dict[str, Any]) -> list[tuple[str, str]]:
    page = client.get(f"/api/jobs/{job['id']}/logs").json()
    return [(line["stream"], line["text"]) for line in page["lines"]]


def jobs_by_key(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["key"]: job for job in run["jobs"]}


GITHUB_WORKFLOW = """\
name: CI
on:
  push:
    branches: [main]
  pull_request:
permissions:
  contents: read
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
env:
  APP: demo
jobs:
  test:
    name: test (${{ matrix.python }})
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      matrix:
        python: ['3.11', '3.12']
        include:
          - python: '3.12'
            coverage: true
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: Show version
        id: version
        run: |
          echo "python ${{ matrix.python }} for $APP on $GITHUB_REF_NAME ($GITHUB_EVENT_NAME)"
          echo "server [$GITHUB_SERVER_URL] [${{ github.server_url }}]"
          echo "run ${{ github.run_number }} token [${{ github.token }}]"
          echo "tag=py${{ matrix.python }}" >> "$GITHUB_OUTPUT"
          echo "STAGE=tested" >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\\necho tool on PATH\\n' > "$RUNNER_TEMP/bin/mytool"
          chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
      - name: Coverage
        if: ${{ matrix.coverage }}
        env:
          TAG: ${{ steps.version.outputs.tag }}
        run: echo "coverage for $TAG after $STAGE"
      - name: In a subdirectory
        working-directory: app
        run: |
          cat version.txt
          mytool
  package:
    needs: test
    runs-on: ubuntu-latest
    if: github.event_name == 'push'
    defaults:
      run:
        working-directory: app
    steps:
      - uses: actions/checkout@v4
      - run: echo "package $(cat version.txt) ${GITHUB_SHA:0:7} after ${{ needs.test.result }}"
"""


def test_github_workflow_runs_unchanged(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".github/workflows/ci.yml": GITHUB_WORKFLOW, "app/version.txt": "1.2.3\n",
                              ".github/workflows/release.yml": "on: release\njobs:\n  r:\n    runs-on: "
                                                               "ubuntu-latest\n    steps:\n      - uses: "
                                                               "actions/setup-node@v4\n"},
                             "Add the CI workflow")
    worker = start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        job_logs = {key: logs(client, job) for key, job in jobs.items()}

    assert run["status"] == "succeeded", (worker.output(), job_logs)
    assert {key: job["status"] for key, job in jobs.items()} == {
        "plan": "succeeded", "test (3.11)": "succeeded", "test (3.12, true)": "succeeded",
        "package": "succeeded"}
    assert {key: job["name"] for key, job in jobs.items()} == {
        "plan": "plan", "test (3.11)": "test (3.11)", "test (3.12, true)": "test (3.12)",
        "package": "package"}
    assert jobs["package"]["needs"] == ["test (3.11)", "test (3.12, true)"]
    assert (".github/workflows/release.yml: not run: it declares only events Mini-Jenkin never "
            "starts runs for: release" in [text for _stream, text in job_logs["plan"]])

    assert job_logs["test (3.12, true)"][1:] == [
        ("system", "▶ Run actions/checkout@v4"),
        ("system", f"actions/checkout@v4: the workspace already holds commit {commit[:12]}"),
        ("system", "▶ Show version"),
        ("stdout", "python 3.12 for demo on main (push)"),
        ("stdout", "server [] []"),
        ("stdout", f"run {run['id']} token []"),
        ("system", "▶ Coverage"),
        ("stdout", "coverage for py3.12 after tested"),
        ("system", "▶ In a subdirectory"),
        ("stdout", "1.2.3"),
        ("stdout", "tool on PATH"),
        ("system", "Job succeeded"),
    ]
    assert ("system", "⏭ Coverage (skipped: its condition is false)") in job_logs["test (3.11)"]
    assert job_logs["package"][-2:] == [
        ("stdout", f"package 1.2.3 {commit[:7]} after success"),
        ("system", "Job succeeded"),
    ]


def test_injection_through_branch_and_message_runs_nothing(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    branch_marker = tmp_path / "pwned-branch"
    message_marker = tmp_path / "pwned-message"
    branch = f"$(touch {branch_marker})"
    message = f"Fix `touch {message_marker}` and $(touch {message_marker})"
    pipeline = """\
jobs:
  echo:
    name: Build ${{ github.ref_name }}
    env:
      BRANCH: ${{ github.ref_name }}
      MESSAGE: ${{ github.event.head_commit.message }}
    steps:
      - name: Show ${{ github.ref_name }}
        run: |
          printf 'branch=%s\\n' "$BRANCH"
          printf 'ref=%s\\n' "$GITHUB_REF_NAME"
          printf 'message=%s\\n' "$MINIJENKIN_COMMIT_MESSAGE"
          printf 'env=%s\\n' "$MESSAGE"
"""
    safe = git_repo.commit({".minijenkin.yml": pipeline}, message)
    spliced = git_repo.commit({".minijenkin.yml": "jobs:\n  echo:\n    steps:\n      - run: echo "
                                                  "${{ github.ref_name }}\n"}, message)
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        safe_run = wait_finished(client, push(client, git_repo, safe, ref=f"refs/heads/{branch}",
                                              message=message))
        echo = jobs_by_key(safe_run)["echo"]
        echo_logs = logs(client, echo)
        spliced_run = wait_finished(client, push(client, git_repo, spliced, ref=f"refs/heads/{branch}",
                                                 message=message))

    assert safe_run["status"] == "succeeded"
    assert echo["name"] == f"Build {branch}"
    assert echo_logs[1:] == [
        ("system", f"▶ Show {branch}"),
        ("stdout", f"branch={branch}"),
        ("stdout", f"ref={branch}"),
        ("stdout", f"message={message}"),
        ("stdout", f"env={message}"),
        ("system", "Job succeeded"),
    ]
    assert spliced_run["status"] == "failed"
    assert spliced_run["reason"] == (
        ".minijenkin.yml:4:23: jobs.echo.steps[0].run: '${{ github.ref_name }}' in a script would splice in "
        "a branch or tag name, which whoever pushes chooses, and such text can run commands; use the "
        "environment variable \"$GITHUB_REF_NAME\" in the script instead")
    assert not branch_marker.exists()
    assert not message_marker.exists()


CONDITIONS = """\
jobs:
  build:
    steps:
      - run: exit 3
        continue-on-error: true
      - run: echo after-continue
      - id: slow
        name: Slow
        run: sleep 30
        timeout-minutes: 0.02
        continue-on-error: true
      - run: echo "slow was ${{ steps.slow.outcome }}, job is ${{ job.status }}"
      - run: echo "secret=[${{ secrets.MISSING }}]"
      - if: github.ref == 'refs/heads/other'
        run: echo other-branch-step
      - name: Break
        run: exit 1
      - run: echo never
      - if: github.ref == 'refs/heads/main'
        run: echo main-after-failure
      - if: failure()
        run: echo "cleanup after ${{ job.status }}"
      - if: always()
        run: echo always
  after-failure:
    needs: build
    if: failure()
    steps:
      - run: echo "build ${{ needs.build.result }}"
  other-branch-only:
    if: github.ref == 'refs/heads/other'
    steps:
      - run: echo never
  default-dependent:
    needs: build
    steps:
      - run: echo never
  deploy-on-main:
    needs: [after-flaky, build]
    if: github.ref == 'refs/heads/main'
    steps:
      - run: echo never
  after-flaky-other-branch:
    needs: after-flaky
    if: github.ref == 'refs/heads/other'
    steps:
      - run: echo never
  flaky:
    continue-on-error: true
    steps:
      - run: exit 4
  after-flaky:
    needs: flaky
    steps:
      - run: echo "flaky tolerated"
  after-flaky-if:
    needs: flaky
    if: needs.flaky.result == 'success'
    steps:
      - run: echo "flaky counts as success"
"""


def test_conditions_and_step_features(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": CONDITIONS}, "Conditions")
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        build_logs = logs(client, jobs["build"])
        after_logs = logs(client, jobs["after-failure"])

    assert run["status"] == "failed"
    assert run["reason"] == "job build failed"
    assert {key: job["status"] for key, job in jobs.items()} == {
        "plan": "succeeded", "build": "failed", "after-failure": "succeeded",
        "other-branch-only": "skipped", "default-dependent": "skipped", "flaky": "failed",
        "after-flaky": "succeeded", "after-flaky-if": "succeeded", "deploy-on-main": "skipped",
        "after-flaky-other-branch": "skipped"}
    assert jobs["flaky"]["exit_code"] == 4
    assert jobs["build"]["exit_code"] == 1
    assert jobs["build"]["reason"] == "step 'Break' failed with exit code 1"
    assert jobs["other-branch-only"]["reason"] == (
        "skipped: the condition \"github.ref == 'refs/heads/other'\" is false")
    assert jobs["default-dependent"]["reason"] == "skipped: needed job build failed"
    assert jobs["deploy-on-main"]["reason"] == "skipped: needed job build failed"
    assert jobs["after-flaky-other-branch"]["reason"] == (
        "skipped: the condition \"github.ref == 'refs/heads/other'\" is false")
    assert build_logs[1:] == [
        ("system", "▶ Run exit 3"),
        ("system", "step 'Run exit 3' failed with exit code 3; the job goes on (continue-on-error)"),
        ("system", "▶ Run echo after-continue"),
        ("stdout", "after-continue"),
        ("system", "▶ Slow"),
        ("system", "step 'Slow' timed out after 0.02 minutes; the job goes on (continue-on-error)"),
        ("system", "▶ Run echo \"slow was failure, job is"),
        ("stdout", "slow was failure, job is success"),
        ("system", "secrets.MISSING is not set; it reads as an empty string"),
        ("system", "▶ Run echo \"secret=[]\""),
        ("stdout", "secret=[]"),
        ("system", "⏭ Run echo other-branch-step (skipped: its condition is false)"),
        ("system", "▶ Break"),
        ("system", "step 'Break' failed with exit code 1"),
        ("system", "⏭ Run echo never (skipped: an earlier step failed)"),
        ("system", "⏭ Run echo main-after-failure (skipped: an earlier step failed)"),
        ("system", "▶ Run echo \"cleanup after failure\""),
        ("stdout", "cleanup after failure"),
        ("system", "▶ Run echo always"),
        ("stdout", "always"),
    ]
    assert after_logs[1:] == [("system", "▶ Run echo \"build failure\""),
                              ("stdout", "build failure"), ("system", "Job succeeded")]


def test_matrix_fail_fast_skips_waiting_combinations(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = """\
jobs:
  test:
    strategy:
      matrix:
        n: [1, 2, 3]
    steps:
      - run: test ${{ matrix.n }} != 1
  report:
    needs: test
    if: always()
    steps:
      - run: echo "tests ${{ needs.test.result }}"
"""
    commit = git_repo.commit({".minijenkin.yml": pipeline}, "Matrix")
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="1")

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        report_logs = logs(client, jobs["report"])

    assert run["status"] == "failed"
    assert {key: (job["status"], job["reason"]) for key, job in jobs.items()} == {
        "plan": ("succeeded", None),
        "test (1)": ("failed", "step 'Run test 1 != 1' failed with exit code 1"),
        "test (2)": ("skipped", "fail-fast: test (1) failed"),
        "test (3)": ("skipped", "fail-fast: test (1) failed"),
        "report": ("succeeded", None),
    }
    assert ("stdout", "tests failure") in report_logs


def test_trigger_filters_with_changed_files_from_git(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    pipeline = "on:\n  push:\n    branches: [main]\n    paths: ['src/**']\njobs:\n  build:\n    steps:\n" \
               "      - run: echo built\n"
    first = git_repo.commit({".minijenkin.yml": pipeline, "src/app.py": "1\n"}, "Start")
    docs_only = git_repo.commit({"docs/guide.md": "text\n"}, "Docs")
    source = git_repo.commit({"src/app.py": "2\n"}, "Code")
    start_worker()

    with api_server.client() as client:
        repo_id = register(client, git_repo)
        other_branch = wait_finished(client, push(client, git_repo, source, ref="refs/heads/dev"))
        docs_run = wait_finished(client, create_run(db, repo_id, event="push", commit=docs_only, before=first,
                                                    trigger={"branch": "main"}))
        source_run = wait_finished(client, create_run(db, repo_id, event="push", commit=source,
                                                      before=docs_only, trigger={"branch": "main"}))
        docs_plan = logs(client, docs_run["jobs"][0])

    assert (other_branch["status"], other_branch["reason"]) == ("skipped", "no workflow matches this event")
    assert (docs_run["status"], docs_run["reason"]) == ("skipped", "no workflow matches this event")
    assert (".minijenkin.yml: not run: no changed file matches on.push.paths"
            in [text for _stream, text in docs_plan])
    assert source_run["status"] == "succeeded"
    assert [job["key"] for job in source_run["jobs"]] == ["plan", "build"]


def test_trigger_paths_prefer_git_to_listed_commits(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A forced push lists only its new commits; git's diff from `before` decides when it can."""
    pipeline = "on:\n  push:\n    paths: ['src/**']\njobs:\n  build:\n    steps:\n" \
               "      - run: echo built\n"
    first = git_repo.commit({".minijenkin.yml": pipeline, "docs/guide.md": "1\n"}, "Start")
    git_repo.commit({"src/app.py": "1\n"}, "Code")
    rewritten = git_repo.commit({"docs/guide.md": "2\n"}, "Docs")
    listed = {"branch": "main", "changed_files": ["docs/guide.md"]}
    start_worker()

    with api_server.client() as client:
        repo_id = register(client, git_repo)
        from_git = wait_finished(client, create_run(db, repo_id, event="push", commit=rewritten,
                                                    before=first, trigger=listed))
        unknown_before = wait_finished(client, create_run(db, repo_id, event="push", commit=rewritten,
                                                          before="f" * 40, trigger=listed))

    assert from_git["status"] == "succeeded"
    assert [job["key"] for job in from_git["jobs"]] == ["plan", "build"]
    assert (unknown_before["status"], unknown_before["reason"]) == (
        "skipped", "no workflow matches this event")


def test_merge_request_run_has_no_branch(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    """A GitLab merge request run, like a GitHub pull request run, has no pushed branch."""
    pipeline = """\
jobs:
  show:
    steps:
      - run: |
          printf 'branch=%s\\n' "${MINIJENKIN_BRANCH-unset}"
          printf 'ref_name=%s\\n' "$GITHUB_REF_NAME"
          printf 'number=%s\\n' "$MINIJENKIN_PULL_REQUEST"
"""
    head = git_repo.commit({".minijenkin.yml": pipeline}, "Show the event")
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        body = forges.encode(forges.gitlab_merge_request(path=REPO, url=git_repo.url, action="open",
                                                         iid=7, head_sha=head))
        gitlab = client.post("/hooks/gitlab", content=body,
                             headers=forges.gitlab_headers(SECRET, event="Merge Request Hook"))
        body = forges.encode(forges.github_pull_request(
            full_name=REPO, clone_url=git_repo.url, action="opened", number=8, head_sha=head,
            base_sha=head))
        github = client.post("/hooks/github", content=body,
                             headers=forges.github_headers(SECRET, body, event="pull_request"))
        assert gitlab.status_code == 201, gitlab.text
        assert github.status_code == 201, github.text
        gitlab_run = wait_finished(client, gitlab.json()["run_id"])
        github_run = wait_finished(client, github.json()["run_id"])
        gitlab_lines = [text for stream, text in logs(client, jobs_by_key(gitlab_run)["show"])
                        if stream == "stdout"]
        github_lines = [text for stream, text in logs(client, jobs_by_key(github_run)["show"])
                        if stream == "stdout"]

    assert gitlab_run["status"] == "succeeded"
    assert gitlab_lines == ["branch=unset", "ref_name=merge-requests/7/head", "number=7"]
    assert github_run["status"] == "succeeded"
    assert github_lines == ["branch=unset", "ref_name=pull/8/head", "number=8"]


def test_checkout_submodules_fetches_them(
    api_server: ApiServer, git_repo: GitRepo, tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    library = GitRepo(tmp_path / "library")
    library.commit({"lib.txt": "from the submodule\n"}, "Library")
    # git rejects file:// submodules unless protocol.file.allow permits them.
    # A step can set it, because each job has its own HOME.
    pipeline = """\
jobs:
  build:
    steps:
      - run: git config --global protocol.file.allow always
      - uses: actions/checkout@v4
        with:
          submodules: recursive
      - run: cat vendored/lib.txt
"""
    git_repo.git("-c", "protocol.file.allow=always", "submodule", "--quiet", "add", library.url,
                 "vendored")
    commit = git_repo.commit({".minijenkin.yml": pipeline}, "With a submodule")
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        build_logs = logs(client, jobs_by_key(run)["build"])

    assert run["status"] == "succeeded", build_logs
    assert ("stdout", "from the submodule") in build_logs


MANUAL = """\
on:
  workflow_dispatch:
    inputs:
      target:
        type: choice
        options: [staging, production]
        default: staging
      dry-run:
        type: boolean
jobs:
  deploy:
    name: deploy to ${{ inputs.target }}
    if: ${{ !inputs.dry-run }}
    steps:
      - run: echo "deploying to ${{ inputs.target }}"
"""


def test_manual_run_inputs(
    api_server: ApiServer, db: psycopg.Connection, git_repo: GitRepo,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": MANUAL}, "Manual")
    start_worker()

    with api_server.client() as client:
        repo_id = register(client, git_repo)
        deploy = wait_finished(client, create_run(db, repo_id, event="manual", commit=commit,
                                                  trigger={"inputs": {"target": "production"}}))
        dry = wait_finished(client, create_run(db, repo_id, event="manual", commit=commit,
                                               trigger={"inputs": {"dry-run": "true"}}))
        invalid = wait_finished(client, create_run(db, repo_id, event="manual", commit=commit,
                                                   trigger={"inputs": {"target": "qa"}}))
        pushed = wait_finished(client, push(client, git_repo, commit))
        deploy_logs = logs(client, jobs_by_key(deploy)["deploy"])

    assert deploy["status"] == "succeeded"
    assert jobs_by_key(deploy)["deploy"]["name"] == "deploy to production"
    assert ("stdout", "deploying to production") in deploy_logs
    assert dry["status"] == "succeeded"
    assert {job["key"]: job["status"] for job in dry["jobs"]} == {"plan": "succeeded", "deploy": "skipped"}
    assert jobs_by_key(dry)["deploy"]["name"] == "deploy to staging"
    assert (invalid["status"], invalid["reason"]) == (
        "failed", ".minijenkin.yml:4:7: inputs.target: 'qa' is not one of the options: staging, production")
    assert (pushed["status"], pushed["reason"]) == ("skipped", "no workflow matches this event")


def test_unsupported_action_fails_with_its_name_and_line(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    workflow = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" \
               "      - uses: actions/checkout@v4\n      - uses: actions/setup-node@v4\n" \
               "        with:\n          node-version: 20\n      - run: npm test\n"
    commit = git_repo.commit({".github/workflows/node.yaml": workflow}, "Node")
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))

    assert run["status"] == "failed"
    assert run["reason"] == (
        ".github/workflows/node.yaml:7:15: jobs.build.steps[1]: the action 'actions/setup-node@v4' "
        "cannot run here: Mini-Jenkin runs 'run:' steps only, and treats actions/checkout as already "
        "done; replace this step with a 'run:' step that does the same")
    assert [job["key"] for job in run["jobs"]] == ["plan"]


COMMAND_FILES = """\
on: push
jobs:
  outputs:
    steps:
      - id: cache
        run: |
          echo "cache-hit=true" >> "$GITHUB_OUTPUT"
          { echo "release-notes<<EOF"; echo "fixed=bug"; echo "EOF"; } >> "$GITHUB_OUTPUT"
          { echo "NOTES-X<<EOF"; echo "PATH=/nowhere"; echo "EOF"; } >> "$GITHUB_ENV"
      - if: steps.cache.outputs.cache-hit == 'true'
        env:
          NOTES: ${{ steps.cache.outputs.release-notes }}
          STRAY: ${{ steps.cache.outputs.fixed }}
        run: echo "hit notes=[$NOTES] stray=[$STRAY]"
      - working-directory: ${{ github.workspace }}/app
        run: cat version.txt
  unstartable:
    steps:
      - id: nul
        run: |
          printf 'BROKEN=a\\0b\\nKEPT=yes\\n' >> "$GITHUB_ENV"
          printf 'value=a\\0b\\n' >> "$GITHUB_OUTPUT"
      - name: Needs NUL
        env:
          NUL: ${{ steps.nul.outputs.value }}
        run: echo never
      - name: Cleanup
        if: always()
        run: echo "cleanup ran, KEPT=$KEPT BROKEN=${BROKEN-unset}"
  oversized:
    steps:
      - run: |
          printf 'big=%01100000d\\n' 0 >> "$GITHUB_OUTPUT"
          echo "after=1" >> "$GITHUB_OUTPUT"
      - name: Huge variable
        env:
          HUGE: \"""" + "x" * 140_000 + """\"
        run: echo never
      - if: always()
        run: echo "cleanup ran"
"""


def test_command_files_read_as_on_github(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": COMMAND_FILES, "app/version.txt": "1.2.3\n"}, "Files")
    start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        output_logs = logs(client, jobs["outputs"])
        unstartable_logs = logs(client, jobs["unstartable"])
        oversized_logs = logs(client, jobs["oversized"])

    assert jobs["outputs"]["status"] == "succeeded", output_logs
    assert ("stdout", "hit notes=[fixed=bug] stray=[]") in output_logs
    assert ("stdout", "1.2.3") in output_logs
    assert not [text for stream, text in output_logs if text.startswith("$GITHUB_")]

    assert ("system", "$GITHUB_ENV: BROKEN: contains a NUL byte, which an environment variable cannot "
            "hold; it is not set") in unstartable_logs
    nul_message = "step 'Needs NUL' could not start: environment variable 'NUL' contains a NUL byte"
    assert (jobs["unstartable"]["status"], jobs["unstartable"]["reason"]) == ("failed", nul_message)
    assert ("system", nul_message) in unstartable_logs
    assert ("stdout", "cleanup ran, KEPT=yes BROKEN=unset") in unstartable_logs

    assert ("system", "$GITHUB_OUTPUT: the file is larger than 1048576 bytes; only its first bytes are "
            "read, so later values are lost") in oversized_logs
    assert jobs["oversized"]["status"] == "failed"
    assert jobs["oversized"]["reason"].startswith(
        "step 'Huge variable' could not start: its environment is larger than the system allows "
        "(the largest variable, HUGE, has 140005 bytes)")
    assert ("stdout", "cleanup ran") in oversized_logs


SHELLS_WORKFLOW = """\
on: push
jobs:
  shells:
    runs-on: ubuntu-latest
    steps:
      - name: Default shell
        run: |
          seq 1 100000 | head -n 1
          false | true
          echo "no pipefail"
      - name: Bash keyword
        shell: bash
        continue-on-error: true
        run: |
          false | true
          echo "not reached"
      - name: Python keyword
        shell: python
        run: |
          import os
          print("python", os.environ["GITHUB_EVENT_NAME"])
      - name: Template
        shell: bash --noprofile --norc {0}
        run: |
          false
          echo "no errexit"
  posix:
    runs-on: ubuntu-latest
    defaults:
      run:
        shell: sh
    steps:
      - name: Which shell
        run: if [ -n "$BASH_VERSION" ]; then echo bash; else echo "posix sh"; fi
"""


def test_step_shells_run_as_on_github(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".github/workflows/shells.yml": SHELLS_WORKFLOW}, "Shells")
    worker = start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        shell_logs = logs(client, jobs["shells"])
        posix_logs = logs(client, jobs["posix"])

    assert run["status"] == "succeeded", (worker.output(), shell_logs, posix_logs)
    assert shell_logs[1:] == [
        ("system", "▶ Default shell"),
        ("stdout", "1"),
        ("stdout", "no pipefail"),
        ("system", "▶ Bash keyword"),
        ("system", "step 'Bash keyword' failed with exit code 1; the job goes on (continue-on-error)"),
        ("system", "▶ Python keyword"),
        ("stdout", "python push"),
        ("system", "▶ Template"),
        ("stdout", "no errexit"),
        ("system", "Job succeeded"),
    ]
    assert posix_logs[1:] == [
        ("system", "▶ Which shell"),
        ("stdout", "posix sh"),
        ("system", "Job succeeded"),
    ]


OUTPUTS_WORKFLOW = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 1
      matrix:
        flavour: [small, large]
    outputs:
      version: ${{ steps.version.outputs.version }}
      flavour: ${{ matrix.flavour }}
      token: ${{ steps.version.outputs.token }}
    steps:
      - id: version
        env:
          TOKEN: ${{ secrets.OUTPUT_TOKEN }}
        run: |
          echo "version=2.0-${{ matrix.flavour }}" >> "$GITHUB_OUTPUT"
          echo "token=$TOKEN" >> "$GITHUB_OUTPUT"
      - name: Shard
        run: echo "shard ${{ strategy.job-index }} of ${{ strategy.job-total }}"
  release:
    needs: build
    if: needs.build.outputs.version != ''
    runs-on: ubuntu-latest
    steps:
      - name: Release
        env:
          VERSION: ${{ needs.build.outputs.version }}
          FLAVOUR: ${{ needs.build.outputs.flavour }}
          TOKEN: ${{ needs.build.outputs.token }}
          MISSING: ${{ needs.build.outputs.missing }}
        run: echo "release $VERSION ($FLAVOUR) token=[$TOKEN] missing=[$MISSING]"
"""


def test_job_outputs_reach_needing_jobs(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".github/workflows/outputs.yml": OUTPUTS_WORKFLOW}, "Outputs")
    worker = start_worker()

    with api_server.client() as client:
        repo_id = register(client, git_repo)
        response = client.put(f"/api/repos/{repo_id}/secrets/OUTPUT_TOKEN", json={"value": "tok-4821"})
        assert response.status_code in (200, 201), response.text
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        build_logs = logs(client, jobs["build (large)"])
        release_logs = logs(client, jobs["release"])

    assert run["status"] == "succeeded", (worker.output(), build_logs, release_logs)
    assert ("system", "output 'token' is left unset because its value contains a secret") in build_logs
    assert ("stdout", "shard 1 of 2") in build_logs
    # max-parallel 1 runs the combinations in order, so "large" finishes last and its values win.
    assert release_logs[1:] == [
        ("system", "▶ Release"),
        ("stdout", "release 2.0-large (large) token=[] missing=[]"),
        ("system", "Job succeeded"),
    ]


ANCESTORS_PIPELINE = """\
jobs:
  build:
    steps:
      - run: exit 3
  package:
    needs: build
    steps:
      - run: echo packaged
  notify:
    needs: package
    if: failure()
    steps:
      - run: echo "the chain failed"
  publish:
    needs: package
    if: ${{ !cancelled() && !failure() }}
    steps:
      - run: echo published
"""


def test_failure_sees_every_ancestor(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    commit = git_repo.commit({".minijenkin.yml": ANCESTORS_PIPELINE}, "Chain")
    worker = start_worker()

    with api_server.client() as client:
        register(client, git_repo)
        run = wait_finished(client, push(client, git_repo, commit))
        jobs = jobs_by_key(run)
        notify_logs = logs(client, jobs["notify"])

    assert {key: job["status"] for key, job in jobs.items()} == {
        "plan": "succeeded", "build": "failed", "package": "skipped", "notify": "succeeded",
        "publish": "skipped"}, worker.output()
    assert jobs["publish"]["reason"] == "skipped: the condition '${{ !cancelled() && !failure() }}' is false"
    assert ("stdout", "the chain failed") in notify_logs


def _group_pipeline(command: str, *, cancel_in_progress: bool) -> str:
    return f"""\
concurrency:
  group: ci-${{{{ github.ref }}}}
  cancel-in-progress: {str(cancel_in_progress).lower()}
jobs:
  build:
    steps:
      - run: {command}
"""


def _build_status(client: httpx.Client, run_id: int) -> str | None:
    """Return the status of the run's job `build`, None until the plan has created it."""
    job = jobs_by_key(client.get(f"/api/runs/{run_id}").json()).get("build")
    return job["status"] if job else None


def _push_during_first_build(client: httpx.Client, git_repo: GitRepo, first_commit: str,
                             second_commit: str) -> tuple[int, int]:
    """Push the first commit, wait until its job `build` runs, push the second; return both run ids."""
    register(client, git_repo)
    first = push(client, git_repo, first_commit)
    wait_for(lambda: _build_status(client, first) == "running", timeout=RUN_TIMEOUT,
             message="the first run's job to start")
    return first, push(client, git_repo, second_commit)


def _pending_run(client: httpx.Client, run_id: int) -> dict[str, Any] | None:
    run = client.get(f"/api/runs/{run_id}").json()
    return run if run["status"] == "pending" else None


def test_concurrency_group_runs_one_at_a_time(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    first_commit = git_repo.commit(
        {".minijenkin.yml": _group_pipeline("sleep 3", cancel_in_progress=False)}, "Slow build")
    second_commit = git_repo.commit(
        {".minijenkin.yml": _group_pipeline("echo quick", cancel_in_progress=False)}, "Quick build")
    # Two slots: without the group, the second run would start at once.
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="2")

    with api_server.client() as client:
        first, second = _push_during_first_build(client, git_repo, first_commit, second_commit)
        waiting = wait_for(lambda: _pending_run(client, second), timeout=RUN_TIMEOUT,
                           message="the second run to wait for its group")
        first_run = wait_finished(client, first)
        second_run = wait_finished(client, second)

    assert (waiting["reason"], waiting["concurrency_group"]) == (
        f'waiting for run {first} of concurrency group "ci-refs/heads/main"', "ci-refs/heads/main")
    assert jobs_by_key(waiting)["build"]["status"] == "pending"
    assert (first_run["status"], second_run["status"]) == ("succeeded", "succeeded")
    assert jobs_by_key(second_run)["build"]["started_at"] >= jobs_by_key(first_run)["build"]["finished_at"]


def test_cancel_in_progress_cancels_older_run(
    api_server: ApiServer, git_repo: GitRepo, start_worker: Callable[..., WorkerProcess],
) -> None:
    slow = git_repo.commit({".minijenkin.yml": _group_pipeline("sleep 60", cancel_in_progress=True)},
                           "Slow build")
    quick = git_repo.commit({".minijenkin.yml": _group_pipeline("echo quick", cancel_in_progress=True)},
                            "Quick build")
    start_worker(MINIJENKIN_WORKER_CONCURRENCY="2")

    with api_server.client() as client:
        older, newer = _push_during_first_build(client, git_repo, slow, quick)
        # Well before the 60 s sleep could end on its own.
        older_run = wait_finished(client, older)
        newer_run = wait_finished(client, newer)

    cancelled = jobs_by_key(older_run)["build"]
    assert (older_run["status"], older_run["reason"]) == ("cancelled", "job build cancelled")
    assert (cancelled["status"], cancelled["reason"]) == (
        "cancelled", f"cancelled in progress by run {newer}")
    assert newer_run["status"] == "succeeded"
    assert jobs_by_key(newer_run)["build"]["started_at"] >= cancelled["finished_at"]
