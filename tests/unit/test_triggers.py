"""The `on` key: glob filters for branches, tags and paths, events, schedules and inputs.

Also the inputs of reusable workflows (`on.workflow_call`), which no run gets.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minijenkin.pipeline import globs, sources
from minijenkin.pipeline.events import Event
from minijenkin.pipeline.inputs import resolve_inputs
from minijenkin.pipeline.parser import PipelineValidationError, parse_pipeline, parse_source
from minijenkin.pipeline.triggers import Schedule, match, needs_changed_files

STEPS = "jobs:\n  build:\n    steps:\n      - run: make\n"


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("main", "main", True),
    ("main", "main2", False),
    ("feature/*", "feature/login", True),
    ("feature/*", "feature/a/b", False),
    ("feature/**", "feature/a/b", True),
    ("*", "main", True),
    ("*", "a/b", False),
    ("**", "a/b/c", True),
    ("v[12].[0-9]+", "v1.10", True),
    ("v[12].[0-9]+", "v3.1", False),
    ("v[12].[0-9]+", "v1.", False),
    ("colou?r", "color", True),
    ("colou?r", "colour", True),
    ("colou?r", "colouur", False),
    ("*.js", "app.js", True),
    ("*.js", "src/app.js", False),
    ("**.js", "src/app.js", True),
    ("**/README.md", "README.md", True),
    ("**/README.md", "docs/README.md", True),
    ("docs/**", "docs/a/b.md", True),
    ("docs/**", "doc/a.md", False),
    ("docs/*", "docs/a/b.md", False),
    ("releases/**-alpha", "releases/1.0-alpha", True),
    ("v\\*", "v*", True),
    ("v\\*", "v1", False),
    ("a.b", "axb", False),
    ("$(touch x)", "$(touch x)", True),
])
def test_glob_patterns(pattern: str, value: str, expected: bool) -> None:
    assert globs.matches(pattern, value) is expected


def test_glob_lists_last_match_wins() -> None:
    patterns = ["releases/**", "!releases/**-alpha"]
    assert globs.matches_any(patterns, "releases/1.0") is True
    assert globs.matches_any(patterns, "releases/1.0-alpha") is False
    assert globs.matches_any(["!main", "*"], "main") is True
    assert globs.matches_any(["*", "!main"], "main") is False


@pytest.mark.parametrize(("pattern", "message"), [
    ("[", "pattern '[' has a '[' without a closing ']'"),
    ("a[]", "invalid character class [] in pattern 'a[]'"),
    ("+a", "'+' in pattern '+a' must follow a character it applies to"),
    ("*?", "'?' in pattern '*?' must follow a character it applies to"),
    ("a\\", "pattern 'a\\\\' ends with an escape character '\\'"),
])
def test_glob_invalid_patterns(pattern: str, message: str) -> None:
    with pytest.raises(globs.PatternError) as caught:
        globs.check_pattern(pattern)
    assert str(caught.value) == message


names = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=12)


@given(names)
def test_literal_pattern_matches_only_itself(name: str) -> None:
    assert globs.matches(name, name)
    assert not globs.matches(name, name + "x")


@given(st.lists(names, min_size=1, max_size=4))
def test_star_never_crosses_slash(parts: list[str]) -> None:
    path = "/".join(parts)
    assert globs.matches("*", path) is (len(parts) == 1)
    assert globs.matches("**", path)


@given(names, st.lists(names, max_size=3))
def test_negation_cancels_a_match(name: str, prefix: list[str]) -> None:
    path = "/".join([*prefix, name])
    assert globs.matches_any(["**", f"!{path}"], path) is False
    assert globs.matches_any([f"!{path}", "**"], path) is True


def triggers(on: str, extra: str = "") -> Any:
    return parse_pipeline(f"{on}\n{extra}{STEPS}", file="ci.yml").triggers


def push(branch: str = "main", changed: tuple[str, ...] | None = None) -> Event:
    return Event(kind="push", ref=f"refs/heads/{branch}", commit="c" * 40, branch=branch,
                 changed_files=changed)


def tag(name: str) -> Event:
    return Event(kind="tag", ref=f"refs/tags/{name}", commit="c" * 40, tag=name)


def pull(base: str = "main", action: str = "opened") -> Event:
    return Event(kind="pull_request", ref="refs/pull/7/head", commit="c" * 40,
                 pull_request={"number": 7, "base_ref": base, "head_ref": "feature", "action": action})


@pytest.mark.parametrize(("on", "event", "changed", "expected", "reason"), [
    ("", push(), None, True, "the pipeline has no 'on' key, so every event starts it"),
    ("", Event(kind="schedule", ref="refs/heads/main", commit="c" * 40), None, False,
     "the pipeline has no 'on.schedule'"),
    ("on: push", push("any"), None, True, "on.push (branch any)"),
    ("on: push", tag("v1"), None, True, "on.push (tag v1)"),
    ("on: [pull_request]", push(), None, False, "the pipeline has no 'on.push'"),
    ("on: {push: {branches: [main, 'release/**']}}", push("release/1/2"), None, True,
     "on.push (branch release/1/2)"),
    ("on: {push: {branches: [main]}}", push("dev"), None, False,
     "branch 'dev' does not match on.push.branches"),
    ("on: {push: {branches: [main]}}", tag("v1"), None, False,
     "on.push filters branches only, so tags do not start it"),
    ("on: {push: {branches-ignore: ['wip/*']}}", push("wip/x"), None, False,
     "branch 'wip/x' does not match on.push.branches"),
    ("on: {push: {branches-ignore: ['wip/*']}}", push("main"), None, True, "on.push (branch main)"),
    ("on: {push: {tags: ['v*']}}", tag("v2.0"), None, True, "on.push (tag v2.0)"),
    ("on: {push: {tags: ['v*']}}", tag("nightly"), None, False, "tag 'nightly' does not match on.push.tags"),
    ("on: {push: {tags: ['v*']}}", push(), None, False,
     "on.push filters tags only, so branch pushes do not start it"),
    ("on: {push: {tags-ignore: ['*-rc*']}}", tag("v1-rc1"), None, False,
     "tag 'v1-rc1' does not match on.push.tags"),
    ("on: {push: {paths: ['src/**']}}", push(), ("src/a.py", "README.md"), True, "on.push (branch main)"),
    ("on: {push: {paths: ['src/**']}}", push(), ("README.md",), False,
     "no changed file matches on.push.paths"),
    ("on: {push: {paths: ['src/**', '!src/docs/**']}}", push(), ("src/docs/x.md",), False,
     "no changed file matches on.push.paths"),
    ("on: {push: {paths: ['src/**']}}", push(), None, True, "on.push (branch main)"),
    ("on: {push: {paths: ['src/**']}}", push(), (), False, "no changed file matches on.push.paths"),
    ("on: {push: {paths-ignore: ['**.md']}}", push(), ("a.md", "b/c.md"), False,
     "every changed file matches on.push.paths-ignore"),
    ("on: {push: {paths-ignore: ['**.md']}}", push(), ("a.md", "main.c"), True, "on.push (branch main)"),
    ("on: {push: {paths: ['src/**']}}", tag("v1"), ("README.md",), True, "on.push (tag v1)"),
    ("on: {push: {branches: [main], paths: ['src/**']}}", push("dev"), ("src/a",), False,
     "branch 'dev' does not match on.push.branches"),
    ("on: pull_request", pull(), None, True, "on.pull_request"),
    ("on: {pull_request: {branches: [main]}}", pull("develop"), None, False,
     "base branch 'develop' does not match on.pull_request.branches"),
    ("on: pull_request", pull(action="closed"), None, False,
     "pull request action 'closed' is not in on.pull_request.types"),
    ("on: {pull_request: {types: [closed]}}", pull(action="closed"), None, True, "on.pull_request"),
    ("on: {pull_request: {types: [opened, labeled]}}", pull(), None, True, "on.pull_request"),
    ("on: {pull_request: {types: [labeled, unlabeled]}}", pull(), None, False,
     "pull request action 'opened' is not in on.pull_request.types (its types never match here: "
     "Mini-Jenkin starts pull request runs only for opened, synchronize, reopened)"),
    ("on: {pull_request: {paths: ['api/**']}}", pull(), ("web/x",), False,
     "no changed file matches on.pull_request.paths"),
    ("on: workflow_dispatch", Event(kind="manual", ref="refs/heads/main", commit="c" * 40), None, True,
     "on.workflow_dispatch"),
    ("on: workflow_dispatch", Event(kind="api", ref="refs/heads/main", commit="c" * 40), None, True,
     "on.workflow_dispatch"),
    ("on: push", Event(kind="manual", ref="refs/heads/main", commit="c" * 40), None, False,
     "the pipeline has no 'on.workflow_dispatch'"),
    ("on: {schedule: [{cron: '0 3 * * *'}]}", Event(kind="schedule", ref="refs/heads/main", commit="c" * 40),
     None, True, "on.schedule"),
    ("on: {schedule: [{cron: '0 3 * * *'}]}",
     Event(kind="schedule", ref="refs/heads/main", commit="c" * 40, schedule="5 * * * *"), None, False,
     "no schedule of this pipeline is '5 * * * *'"),
    ("on: {schedule: [{cron: '0  3 * * *', timezone: Europe/Paris}]}",
     Event(kind="schedule", ref="refs/heads/main", commit="c" * 40, schedule="0 3 * * *",
           schedule_timezone="Europe/Paris"), None, True, "on.schedule"),
    ("on: {schedule: [{cron: '0 3 * * *', timezone: Europe/Paris}]}",
     Event(kind="schedule", ref="refs/heads/main", commit="c" * 40, schedule="0 3 * * *",
           schedule_timezone="UTC"), None, False, "no schedule of this pipeline is '0 3 * * * (UTC)'"),
    ("on: {schedule: [{cron: '@DAILY'}]}",
     Event(kind="schedule", ref="refs/heads/main", commit="c" * 40, schedule="@daily",
           schedule_timezone="UTC"), None, True, "on.schedule"),
])
def test_trigger_matching(on: str, event: Event, changed: tuple[str, ...] | None, expected: bool,
                          reason: str) -> None:
    result = match(triggers(on), event, changed)
    assert (result.matched, result.reason) == (expected, reason)


GITHUB_PULL_REQUEST_TYPES = [
    "assigned", "unassigned", "labeled", "unlabeled", "opened", "edited", "closed", "reopened",
    "synchronize", "converted_to_draft", "ready_for_review", "locked", "unlocked", "review_requested",
    "review_request_removed", "auto_merge_enabled", "auto_merge_disabled", "milestoned", "demilestoned",
    "enqueued", "dequeued",
]


@pytest.mark.parametrize("kind", GITHUB_PULL_REQUEST_TYPES)
def test_every_github_pull_request_type_parses(kind: str) -> None:
    parsed = triggers(f"on: {{pull_request: {{types: [{kind}]}}}}")
    assert parsed.pull_request.types == (kind,)


def test_unknown_pull_request_type_rejected() -> None:
    result = parse_source(f"on: {{pull_request: {{types: [opened, labelled]}}}}\n{STEPS}", file="ci.yml")
    assert result.triggers is None
    assert [str(error) for error in result.errors] == [
        "ci.yml:1:37: on.pull_request: unknown pull request type 'labelled'; did you mean 'labeled'?",
    ]


def test_labeled_workflow_leaves_push_runs_alone() -> None:
    files = [
        sources.SourceFile(".github/workflows/ci.yml", f"on: push\n{STEPS}".encode()),
        sources.SourceFile(".github/workflows/labels.yml",
                           b"on:\n  pull_request:\n    types: [opened, labeled]\n"
                           b"jobs:\n  check:\n    steps: [{run: x}]\n"),
    ]
    plan = sources.plan_run(sources.parse_sources(files), push(), None)
    assert plan.errors == []
    assert plan.notes == [
        ".github/workflows/ci.yml: runs for on.push (branch main)",
        ".github/workflows/labels.yml: not run: the pipeline has no 'on.push'",
    ]
    assert [entry["key"] for entry in plan.graph] == ["build"]


def test_changed_files_needed_only_for_path_filters() -> None:
    assert needs_changed_files(triggers("on: {push: {paths: [src]}}"), push()) is True
    assert needs_changed_files(triggers("on: {push: {paths: [src]}}"), tag("v1")) is False
    assert needs_changed_files(triggers("on: {push: {branches: [main]}}"), push()) is False
    assert needs_changed_files(triggers("on: {pull_request: {paths-ignore: [docs]}}"), pull()) is True


def test_schedules_with_time_zone() -> None:
    parsed = triggers("on:\n  schedule:\n    - cron: '30 5 * * 1-5'\n    - cron: '0 0 1 * *'\n"
                      "      timezone: Europe/Paris")
    assert parsed.schedules == (Schedule("30 5 * * 1-5", None, 3), Schedule("0 0 1 * *", "Europe/Paris", 4))


def test_schedule_shorthand_accepted() -> None:
    parsed = triggers("on:\n  schedule:\n    - cron: '@daily'\n    - cron: '@HOURLY'")
    assert parsed.schedules == (Schedule("@daily", None, 3), Schedule("@hourly", None, 4))


@pytest.mark.parametrize(("cron", "message"), [
    ("0 0 31 2 *", "cron expression '0 0 31 2 *' never matches a date"),
    ("60 * * * *", "invalid cron expression '60 * * * *': expected five fields "
                   "(minute hour day-of-month month day-of-week), e.g. '30 5 * * 1-5'"),
    ("0 0 * * * *", "invalid cron expression '0 0 * * * *': it needs 5 fields "
                    "(minute hour day-of-month month day-of-week), got 6"),
])
def test_schedule_rejected_like_scheduler(cron: str, message: str) -> None:
    result = parse_source(f"on:\n  schedule:\n    - cron: '{cron}'\n{STEPS}", file="ci.yml")
    assert [str(error) for error in result.errors] == [f"ci.yml:3:13: on.schedule[0]: {message}"]


def test_event_reads_fired_schedule() -> None:
    run = {"event": "schedule", "ref": "refs/heads/main", "commit": "c" * 40,
           "trigger": {"source": "schedule", "branch": "main",
                       "schedule": {"id": 4, "cron": "0 3 * * *", "timezone": "Europe/Paris",
                                    "tick": "2026-12-05T02:00:00+00:00"}}}
    event = Event.from_context(run, {"name": "acme/web"})
    assert event.schedule == "0 3 * * *"
    assert event.schedule_timezone == "Europe/Paris"


DISPATCH = """\
on:
  workflow_dispatch:
    inputs:
      target:
        type: choice
        options: [staging, production]
        default: staging
      dry-run:
        type: boolean
      count:
        type: number
        required: true
      note:
        description: Free text
"""


def test_inputs_defaults_and_types() -> None:
    specs = triggers(DISPATCH).dispatch_inputs
    assert [spec.name for spec in specs] == ["target", "dry-run", "count", "note"]
    assert resolve_inputs(specs, {"count": "3"}, file="ci.yml") == {
        "target": "staging", "dry-run": False, "count": 3, "note": ""}
    assert resolve_inputs(specs, {"count": 2.5, "dry-run": "true", "target": "production",
                                  "note": "hi"}, file="ci.yml") == {
        "target": "production", "dry-run": True, "count": 2.5, "note": "hi"}


def test_inputs_invalid_values() -> None:
    specs = triggers(DISPATCH).dispatch_inputs
    with pytest.raises(PipelineValidationError) as caught:
        resolve_inputs(specs, {"target": "qa", "dry-run": "maybe", "extra": 1}, file="ci.yml")
    assert [str(error) for error in caught.value.errors] == [
        "ci.yml: inputs: unknown input 'extra'; the workflow declares: target, dry-run, count, note",
        "ci.yml:4:7: inputs.target: 'qa' is not one of the options: staging, production",
        "ci.yml:8:7: inputs.dry-run: expected true or false, got 'maybe'",
        "ci.yml:10:7: inputs.count: this input is required and has no default",
    ]


def test_schedules_of_workflow_files() -> None:
    files = [
        sources.SourceFile(".github/workflows/nightly.yml",
                           b"on:\n  schedule:\n    - cron: '0 2 * * *'\n"
                           b"jobs:\n  a:\n    steps: [{run: x}]\n"),
        sources.SourceFile(".github/workflows/ci.yml", b"on: push\njobs:\n  a:\n    steps: [{run: x}]\n"),
        sources.SourceFile(".github/workflows/broken.yml", b"on:\n  schedule: nightly\njobs: {}\n"),
    ]
    assert sources.schedules(files) == [(".github/workflows/nightly.yml", Schedule("0 2 * * *", None, 3))]


REUSABLE = b"""\
on:
  workflow_call:
    inputs:
      target:
        type: string
        required: true
      dry-run:
        type: boolean
jobs:
  deploy:
    if: inputs.target == 'production'
    steps:
      - run: echo "dry run ${{ inputs.dry-run }}"
      - run: ./deploy.sh
        env:
          TARGET: ${{ inputs.target }}
"""


def test_reusable_workflow_inputs_are_known() -> None:
    (result,) = sources.parse_sources([sources.SourceFile(".github/workflows/deploy.yml", REUSABLE)])

    assert result.errors == ()
    assert [spec.name for spec in result.triggers.call_inputs] == ["target", "dry-run"]


def test_reusable_workflow_is_not_run() -> None:
    files = [sources.SourceFile(".github/workflows/ci.yml", f"on: push\n{STEPS}".encode()),
             sources.SourceFile(".github/workflows/deploy.yml", REUSABLE)]
    result = sources.plan_run(sources.parse_sources(files), push(), None)

    assert result.errors == []
    assert result.notes == [
        ".github/workflows/ci.yml: runs for on.push (branch main)",
        ".github/workflows/deploy.yml: not run: it declares only events Mini-Jenkin never starts runs "
        "for: workflow_call",
    ]
    assert [entry["key"] for entry in result.graph] == ["build"]


def test_reusable_workflow_undeclared_input() -> None:
    text = REUSABLE.replace(b"inputs.target ==", b"inputs.region ==")

    (result,) = sources.parse_sources([sources.SourceFile(".github/workflows/deploy.yml", text)])

    assert [str(error) for error in result.errors] == [
        ".github/workflows/deploy.yml:11:9: jobs.deploy.if: unknown input 'region'; expected one of: "
        "target, dry-run",
    ]


def test_reusable_string_input_not_spliced() -> None:
    text = REUSABLE.replace(b"dry run ${{ inputs.dry-run }}", b"target ${{ inputs.target }}")

    (result,) = sources.parse_sources([sources.SourceFile(".github/workflows/deploy.yml", text)])

    assert [str(error) for error in result.errors] == [
        ".github/workflows/deploy.yml:13:31: jobs.deploy.steps[0].run: '${{ inputs.target }}' in a script "
        "would splice in a manual run's free-text input, and such text can run commands; set it in the "
        "step's 'env' (for example VALUE: ${{ inputs.target }}) and use \"$VALUE\" in the script instead",
    ]


@pytest.mark.parametrize(("forge", "action", "expected"), [
    ("gitlab", "open", "opened"),
    ("gitlab", "reopen", "reopened"),
    ("gitlab", "update", "synchronize"),
    ("gitea", "synchronized", "synchronize"),
    ("forgejo", "opened", "opened"),
    ("github", "synchronize", "synchronize"),
])
def test_forge_pull_request_actions_match(forge: str, action: str, expected: str) -> None:
    run = {"id": 3, "event": "pull_request", "ref": "refs/pull/7/head", "commit": "c" * 40,
           "trigger": {"forge": forge, "pull_request": {"number": 7, "base_ref": "main",
                                                        "head_ref": "feature", "action": action}}}
    event = Event.from_context(run, {"name": "acme/web"})

    assert event.pull_request["action"] == expected
    assert match(triggers("on: pull_request"), event).matched is True
