"""Every key the parser accepts, in one file, and what each one turns into in the job graph."""

from __future__ import annotations

from typing import Any

from minijenkin.pipeline.events import Event
from minijenkin.pipeline.loader import load_yaml
from minijenkin.pipeline.parser import accepted_keys, parse_pipeline
from minijenkin.pipeline.plan import build_graph

EVERY_KEY = """\
name: Everything
run-name: Build ${{ github.ref_name }}
on:
  push:
    branches: [main]
    tags: ['v*']
    paths: ['src/**']
  pull_request:
    branches: [main]
    paths: ['src/**']
    types: [opened]
  schedule:
    - cron: '0 3 * * *'
      timezone: Europe/Paris
  workflow_dispatch:
    inputs:
      level:
        description: How much
        required: false
        default: 2
        type: choice
        options: ['1', '2']
env:
  APP: shop
defaults:
  run:
    shell: bash
    working-directory: src
concurrency:
  group: ci-${{ github.ref }}
  cancel-in-progress: true
  queue: latest
permissions:
  contents: read
jobs:
  build:
    name: Build ${{ matrix.os }}
    runs-on: [ubuntu-latest, '${{ matrix.os }}']
    timeout-minutes: 30
    retry: {max: 2, on: [script]}
    continue-on-error: ${{ matrix.os == 'arm' }}
    env:
      MODE: release
    strategy:
      fail-fast: false
      max-parallel: 1
      matrix:
        os: [linux, arm]
        include:
          - os: linux
            extra: true
        exclude:
          - os: windows
    defaults:
      run:
        shell: bash
        working-directory: app
    permissions: read-all
    outputs:
      binary: ${{ steps.compile.outcome }}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: Compile
        id: compile
        if: github.event_name == 'push'
        run: make build
        env:
          CC: gcc
        working-directory: app/src
        shell: bash
        continue-on-error: true
        timeout-minutes: 5
  deploy:
    needs: build
    if: always()
    environment:
      name: production
      url: https://shop.example.com
    concurrency:
      group: deploy
      cancel-in-progress: false
      queue: all
    steps:
      - run: ./deploy.sh
"""

# The -ignore filters exclude their positive twins, so they get a file of their own.
IGNORE_KEYS = """\
on:
  push:
    branches-ignore: ['wip/**']
    tags-ignore: ['*-rc*']
    paths-ignore: ['docs/**']
  pull_request:
    branches-ignore: [legacy]
    paths-ignore: ['docs/**']
jobs:
  a:
    steps:
      - run: make
"""

EVENT = Event(kind="push", ref="refs/heads/main", commit="c" * 40, branch="main")


def key_paths(node: Any, prefix: str = "") -> set[str]:
    """Every key path of a loaded document, with ids and list items generalised as accepted_keys() does."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if prefix == "jobs":
                name = "jobs.<job_id>"
            elif prefix == "on.workflow_dispatch.inputs":
                name = "on.workflow_dispatch.inputs.<name>"
            elif prefix in ("env", "permissions", "jobs.<job_id>.env", "jobs.<job_id>.permissions",
                            "jobs.<job_id>.steps[*].env", "jobs.<job_id>.steps[*].with"):
                continue
            elif prefix == "jobs.<job_id>.strategy.matrix" and key not in ("include", "exclude"):
                continue
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            if prefix not in ("jobs", "on.workflow_dispatch.inputs"):
                paths.add(name)
            if not name.endswith((".include", ".exclude")):
                paths |= key_paths(value, name)
    elif isinstance(node, list):
        for item in node:
            item_prefix = f"{prefix}[*]" if prefix.endswith(".steps") else prefix
            paths |= key_paths(item, item_prefix)
    return paths


def test_files_use_every_accepted_key() -> None:
    used = key_paths(load_yaml(EVERY_KEY, file="ci.yml"))
    used |= key_paths(load_yaml(IGNORE_KEYS, file="ci.yml"))
    assert sorted(set(accepted_keys()) - used) == []


def test_ignore_filters_parse() -> None:
    triggers = parse_pipeline(IGNORE_KEYS, file="ci.yml").triggers
    assert triggers.push.branches_ignore == ("wip/**",)
    assert triggers.push.tags_ignore == ("*-rc*",)
    assert triggers.push.paths_ignore == ("docs/**",)
    assert triggers.pull_request.branches_ignore == ("legacy",)
    assert triggers.pull_request.paths_ignore == ("docs/**",)


def test_every_key_reaches_the_graph() -> None:
    pipeline = parse_pipeline(EVERY_KEY, file="ci.yml")
    graph = {entry["key"]: entry for entry in build_graph(pipeline, EVENT, {"level": "2"})}

    assert pipeline.name == "Everything"
    assert list(graph) == ["build (linux, true)", "build (arm)", "deploy"]
    linux, arm, deploy = graph.values()
    assert (linux["name"], arm["name"]) == ("Build linux", "Build arm")
    assert (linux["labels"], arm["labels"]) == (["linux"], ["arm"])
    assert (linux["continue_on_error"], arm["continue_on_error"]) == (False, True)
    assert linux["timeout_seconds"] == 1800
    assert linux["retry"] == {"max": 2, "script": True, "timeout": False, "infra": False}
    assert linux["max_attempts"] == 1
    assert arm["needs"] == ["build (linux, true)"]
    assert arm["condition"] == "success()"
    assert linux["spec"]["strategy"] == {
        "job": "build", "fail_fast": False, "max_parallel": 1,
        "context": {"fail-fast": False, "job-index": 0, "job-total": 2, "max-parallel": 1}}
    assert linux["spec"]["matrix"] == {"os": "linux", "extra": True}
    assert linux["spec"]["env"] == {"APP": "shop", "MODE": "release"}
    assert linux["spec"]["working_directory"] == "app"
    assert linux["spec"]["inputs"] == {"level": "2"}
    assert linux["spec"]["workflow_concurrency"] == {"group": "ci-refs/heads/main",
                                                     "cancel_in_progress": True, "queue": "latest"}
    assert linux["spec"]["steps"] == [
        {"name": "Run actions/checkout@v4", "env": {}, "uses": "actions/checkout@v4", "line": 62},
        {"name": "Compile", "env": {"CC": "gcc"}, "run": "make build", "id": "compile",
         "if": "github.event_name == 'push'", "working_directory": "app/src", "timeout_minutes": 5.0,
         "line": 65, "continue_on_error": True},
    ]
    assert linux["spec"]["outputs"] == {"binary": "${{ steps.compile.outcome }}"}
    assert "needs_outputs" not in linux["spec"]
    assert deploy["needs"] == ["build (linux, true)", "build (arm)"]
    assert deploy["condition"] == "always()"
    assert deploy["environment"] == "production"
    assert deploy["spec"]["environment"] == {"name": "production", "url": "https://shop.example.com"}
    assert deploy["concurrency"] == {"group": "deploy", "cancel_in_progress": False, "queue": "all"}
    assert deploy["spec"]["needs"] == {"build": ["build (linux, true)", "build (arm)"]}
    assert deploy["spec"]["tolerated_needs"] == ["build (arm)"]
    assert deploy["spec"]["needs_outputs"] is True
    assert pipeline.triggers.dispatch_inputs[0].default == "2"
    assert pipeline.triggers.pull_request.types == ("opened",)


def test_secrets_referenced_by_a_job() -> None:
    pipeline = parse_pipeline("""\
env:
  TOKEN: ${{ secrets.API_TOKEN }}
jobs:
  a:
    env:
      KEY: ${{ secrets.DEPLOY_KEY }}
    steps:
      - run: echo ${{ secrets.OTHER }}
  b:
    steps:
      - run: echo
""", file="ci.yml")
    assert pipeline.jobs["a"].secrets == ("API_TOKEN", "DEPLOY_KEY", "OTHER")
    assert pipeline.jobs["b"].secrets == ("API_TOKEN",)
    assert build_graph(pipeline)[0]["spec"]["secrets"] == ["API_TOKEN", "DEPLOY_KEY", "OTHER"]


def test_checkout_inputs_become_commands() -> None:
    text = """\
jobs:
  a:
    steps:
      - uses: actions/checkout@v4
      - uses: actions/checkout@v4
        with: {submodules: 'true', lfs: true, fetch-depth: 0}
      - uses: actions/checkout@v4
        with: {submodules: recursive, lfs: 'false'}
"""
    steps = parse_pipeline(text, file=".minijenkin.yml").jobs["a"].steps

    assert [step.run for step in steps] == [
        None, "git submodule update --init\ngit lfs pull", "git submodule update --init --recursive"]
    assert [step.uses for step in steps] == ["actions/checkout@v4"] * 3


def test_env_without_value_is_empty_string() -> None:
    pipeline = parse_pipeline("""\
env:
  TOP:
jobs:
  a:
    env:
      TARGET_FLAGS:
    steps:
      - env:
          STEP: ~
        run: echo "$TARGET_FLAGS" ${{ env.TARGET_FLAGS }}
""", file="ci.yml")

    assert pipeline.env == {"TOP": ""}
    assert pipeline.jobs["a"].env == {"TARGET_FLAGS": ""}
    assert pipeline.jobs["a"].steps[0].env == {"STEP": ""}


def test_empty_environment_name_means_none() -> None:
    pipeline = parse_pipeline("""\
jobs:
  publish:
    environment:
      name: ${{ github.ref == 'refs/heads/main' && 'release' || '' }}
    steps:
      - run: echo
  deploy:
    environment: ${{ github.ref == 'refs/heads/dev' && 'staging' || '' }}
    steps:
      - run: echo
""", file="ci.yml")
    on_main = {entry["key"]: entry for entry in build_graph(pipeline, EVENT)}
    on_dev = {entry["key"]: entry for entry in build_graph(
        pipeline, Event(kind="push", ref="refs/heads/dev", commit="c" * 40, branch="dev"))}

    assert on_main["publish"]["environment"] == "release"
    assert on_main["publish"]["spec"]["environment"] == {"name": "release", "url": None}
    assert on_main["deploy"]["environment"] is None
    assert "environment" not in on_main["deploy"]["spec"]
    assert on_dev["publish"]["environment"] is None
    assert "environment" not in on_dev["publish"]["spec"]
    assert on_dev["deploy"]["environment"] == "staging"
