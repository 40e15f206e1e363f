"""The `on` key: which events start a pipeline, with branch, tag and path filters.

Rules follow GitHub Actions:

- without `on`, every event starts the pipeline except schedules;
- `push` without filters runs for every branch and tag. With only branch
  filters (`branches`, `branches-ignore`) tag pushes do not run it, and with
  only tag filters branch pushes do not;
- path filters (`paths`, `paths-ignore`) apply to branch pushes and pull
  requests, never to tags. With `paths`, at least one changed file must be
  selected; with `paths-ignore`, at least one changed file must not be ignored;
- `pull_request` filters `branches` on the base branch and `types` on the
  pull request's action (default: opened, synchronize, reopened);
- `schedule` runs only for scheduled runs, `workflow_dispatch` for manual and
  API runs.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from minijenkin import cron
from minijenkin.pipeline import globs
from minijenkin.pipeline.diagnostics import Collector, check_keys, suggestion
from minijenkin.pipeline.events import Event
from minijenkin.pipeline.inputs import InputSpec, parse_inputs
from minijenkin.pipeline.loader import Position, item_position, key_position, value_position

EVENTS = ("push", "pull_request", "schedule", "workflow_dispatch")
PUSH_KEYS = ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore")
PULL_REQUEST_KEYS = ("branches", "branches-ignore", "paths", "paths-ignore", "types")
SCHEDULE_KEYS = ("cron", "timezone")
DISPATCH_KEYS = ("inputs",)
# The activity types of GitHub's `pull_request` and `pull_request_target`
# events, so workflow files written for GitHub load unchanged.
PULL_REQUEST_TYPES = (
    "assigned", "unassigned", "labeled", "unlabeled", "opened", "edited", "closed", "reopened",
    "synchronize", "converted_to_draft", "ready_for_review", "locked", "unlocked", "review_requested",
    "review_request_removed", "auto_merge_enabled", "auto_merge_disabled", "milestoned", "demilestoned",
    "enqueued", "dequeued",
)
DEFAULT_PULL_REQUEST_TYPES = ("opened", "synchronize", "reopened")
# The pull request actions the forges start runs for, by GitHub's names
# (Event.from_context renames GitLab's and Gitea's). A type outside this
# list is valid but never matches.
STARTED_PULL_REQUEST_TYPES = ("opened", "synchronize", "reopened")
# GitHub Actions events this project never receives; in a GitHub workflow
# file they are accepted and never match.
OTHER_GITHUB_EVENTS = frozenset({
    "branch_protection_rule", "check_run", "check_suite", "create", "delete", "deployment",
    "deployment_status", "discussion", "discussion_comment", "fork", "gollum", "issue_comment",
    "issues", "label", "merge_group", "milestone", "page_build", "public", "pull_request_review",
    "pull_request_review_comment", "pull_request_target", "registry_package", "release",
    "repository_dispatch", "status", "watch", "workflow_call", "workflow_run",
})


@dataclass(frozen=True)
class Filters:
    """Pattern lists of one event; None means the filter is absent."""

    branches: tuple[str, ...] | None = None
    branches_ignore: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    tags_ignore: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None

    @property
    def has_branch_filter(self) -> bool:
        return self.branches is not None or self.branches_ignore is not None

    @property
    def has_tag_filter(self) -> bool:
        return self.tags is not None or self.tags_ignore is not None

    @property
    def has_path_filter(self) -> bool:
        return self.paths is not None or self.paths_ignore is not None


@dataclass(frozen=True)
class Schedule:
    """One `on.schedule` entry: a cron expression as cron.normalize returns it, and an
    optional IANA time zone."""

    cron: str
    timezone: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Triggers:
    declared: bool = False
    push: Filters | None = None
    pull_request: Filters | None = None
    schedules: tuple[Schedule, ...] = ()
    # None: no workflow_dispatch; () : manual runs without inputs.
    dispatch_inputs: tuple[InputSpec, ...] | None = None
    other_events: tuple[str, ...] = field(default_factory=tuple)
    # The inputs of `on.workflow_call`: known to expressions, but no run gets them.
    call_inputs: tuple[InputSpec, ...] = ()


@dataclass(frozen=True)
class Match:
    matched: bool
    reason: str


def parse_triggers(errors: Collector, document: Mapping[Any, Any], *, lenient: bool) -> Triggers:
    """Validate `on`. With `lenient` (GitHub workflow files), unknown events are ignored."""
    if "on" not in document:
        return Triggers()
    raw = document["on"]
    position = value_position(document, "on")
    if isinstance(raw, str):
        raw = {raw: None}
    elif isinstance(raw, list):
        names: dict[str, None] = {}
        for index, item in enumerate(raw):
            if not isinstance(item, str):
                errors.add("each event must be a name such as push", item_position(raw, index), "on")
            else:
                names[item] = None
        events: Mapping[Any, Any] = names
        return _triggers(errors, events, raw, lenient=lenient, from_list=True, fallback=position)
    elif not isinstance(raw, Mapping) or not raw:
        errors.add("'on' must be an event name, a list of them, or a mapping of events to filters",
                   position, "on")
        return Triggers(declared=True)
    return _triggers(errors, raw, document["on"], lenient=lenient, from_list=False, fallback=position)


def _triggers(errors: Collector, events: Mapping[Any, Any], node: Any, *, lenient: bool,
              from_list: bool, fallback: Position | None) -> Triggers:
    push = pull_request = None
    schedules: tuple[Schedule, ...] = ()
    dispatch: tuple[InputSpec, ...] | None = None
    others: list[str] = []
    call_inputs: tuple[InputSpec, ...] = ()
    for index, (name, config) in enumerate(events.items()):
        position = (item_position(node, index) if from_list else key_position(node, name)) or fallback
        path = f"on.{name}"
        if name == "push":
            push = _filters(errors, config, PUSH_KEYS, path, node, name)
        elif name == "pull_request":
            pull_request = _filters(errors, config, PULL_REQUEST_KEYS, path, node, name)
        elif name == "schedule":
            schedules = _schedules(errors, config, path, node, name, position)
        elif name == "workflow_dispatch":
            if config is not None and not isinstance(config, Mapping):
                errors.add("'workflow_dispatch' must be empty or a mapping with 'inputs'",
                           value_position(node, name), path)
                dispatch = ()
            else:
                config = config or {}
                check_keys(errors, config, DISPATCH_KEYS, path)
                dispatch = parse_inputs(errors, config.get("inputs"), path, config)
        elif lenient and isinstance(name, str) and name in OTHER_GITHUB_EVENTS:
            others.append(name)
            if name == "workflow_call":
                call_inputs = _call_inputs(config)
        elif isinstance(name, str) and name in OTHER_GITHUB_EVENTS:
            errors.add(f"event {name!r} is not supported; Mini-Jenkin starts runs for: {', '.join(EVENTS)}",
                       position, "on")
        else:
            errors.add(f"unknown event {name!r}{suggestion(str(name), EVENTS)}", position, "on")
    return Triggers(declared=True, push=push, pull_request=pull_request, schedules=schedules,
                    dispatch_inputs=dispatch, other_events=tuple(others), call_inputs=call_inputs)


def _call_inputs(config: Any) -> tuple[InputSpec, ...]:
    """Collect the inputs a reusable workflow declares under `on.workflow_call.inputs`.

    Like the rest of an event Mini-Jenkin never receives, they are not
    validated. Their names decide which `inputs.*` references are known,
    and GitHub's `boolean` and `number` types mark the ones that may be
    spliced into a script.
    """
    inputs = config.get("inputs") if isinstance(config, Mapping) else None
    if not isinstance(inputs, Mapping):
        return ()
    specs = []
    for name, settings in inputs.items():
        if not isinstance(name, str):
            continue
        kind = settings.get("type") if isinstance(settings, Mapping) else None
        specs.append(InputSpec(name=name, type=kind if kind in ("boolean", "number") else "string"))
    return tuple(specs)


def _filters(errors: Collector, config: Any, allowed: tuple[str, ...], path: str, parent: Any,
             name: str) -> Filters:
    if config is None:
        return Filters()
    if not isinstance(config, Mapping):
        errors.add(f"'{name}' must be empty or a mapping with {', '.join(allowed)}",
                   value_position(parent, name), path)
        return Filters()
    check_keys(errors, config, allowed, path)
    values: dict[str, tuple[str, ...] | None] = {}
    for key in allowed:
        values[key.replace("-", "_")] = _patterns(errors, config, key, path)
    for key in ("branches", "tags", "paths"):
        if key in config and f"{key}-ignore" in config:
            errors.add(f"use either '{key}' or '{key}-ignore', not both (negate with '!' in '{key}')",
                       key_position(config, f"{key}-ignore"), path)
    types = values.get("types")
    if types is not None:
        for index, kind in enumerate(types):
            if kind not in PULL_REQUEST_TYPES:
                errors.add(f"unknown pull request type {kind!r}{suggestion(kind, PULL_REQUEST_TYPES)}",
                           item_position(config["types"], index) or value_position(config, "types"), path)
    return Filters(**values)  # type: ignore[arg-type]


def _patterns(errors: Collector, config: Mapping[Any, Any], key: str, path: str) -> tuple[str, ...] | None:
    if key not in config:
        return None
    value = config[key]
    items = [value] if isinstance(value, str) else value
    # YAML reads 3.10 as the number 3.1 and yes as true, so the error names
    # what YAML read and how to keep the text.
    not_text: list[tuple[str, Any]] = []
    if isinstance(value, list):
        not_text = [(f"item {item!r}", item_position(value, index))
                    for index, item in enumerate(value) if not isinstance(item, str)]
    elif isinstance(value, bool | int | float):
        not_text = [(f"value {value!r}", value_position(config, key))]
    for what, position in not_text:
        errors.add(f"'{key}' {what} is not a string; quote it (for example '3.10') so YAML keeps it "
                   "as written", position, path)
    if not_text:
        return None
    if not isinstance(items, list) or not items:
        errors.add(f"'{key}' must be a pattern or a non-empty list of patterns",
                   value_position(config, key), path)
        return None
    if key == "types":
        return tuple(items)
    for index, item in enumerate(items):
        position = item_position(value, index) if isinstance(value, list) else value_position(config, key)
        try:
            globs.check_pattern(item)
        except globs.PatternError as exc:
            errors.add(f"{key}: {exc}", position, path)
    if items and all(item.startswith("!") for item in items):
        errors.add(f"'{key}' has only negated ('!') patterns, so it selects nothing; add a positive pattern "
                   "first", value_position(config, key), path)
    return tuple(items)


def _schedules(errors: Collector, config: Any, path: str, parent: Any, name: str,
               position: Any) -> tuple[Schedule, ...]:
    if not isinstance(config, list) or not config:
        errors.add("'schedule' must be a list of entries like '- cron: \"0 3 * * *\"'",
                   value_position(parent, name) or position, path)
        return ()
    schedules: list[Schedule] = []
    for index, entry in enumerate(config):
        entry_path = f"{path}[{index}]"
        entry_position = item_position(config, index)
        if not isinstance(entry, Mapping) or "cron" not in entry:
            errors.add("each schedule needs a 'cron' key", entry_position, entry_path)
            continue
        check_keys(errors, entry, SCHEDULE_KEYS, entry_path)
        expression = entry["cron"]
        if not isinstance(expression, str):
            errors.add(f"invalid cron expression {expression!r}: expected a string with five "
                       "fields (minute hour day-of-month month day-of-week), e.g. '30 5 * * 1-5'",
                       value_position(entry, "cron"), entry_path)
            continue
        # The scheduler stores and fires what cron.normalize accepts, so the
        # file is checked with the same rules (shorthands such as @daily
        # included, expressions that never match a date excluded).
        try:
            normalized = cron.normalize(expression)
        except cron.CronError as exc:
            errors.add(str(exc), value_position(entry, "cron"), entry_path)
            continue
        timezone = entry.get("timezone")
        if timezone is not None:
            if not isinstance(timezone, str) or not _valid_timezone(timezone):
                errors.add(f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris'",
                           value_position(entry, "timezone"), entry_path)
                continue
        schedules.append(Schedule(cron=normalized, timezone=timezone,
                                  line=entry_position.line if entry_position else None))
    return tuple(schedules)


def _valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def needs_changed_files(triggers: Triggers, event: Event) -> bool:
    """Whether matching `event` depends on the list of changed files."""
    if event.kind == "push":
        return triggers.push is not None and triggers.push.has_path_filter
    if event.kind == "pull_request":
        return triggers.pull_request is not None and triggers.pull_request.has_path_filter
    return False


def match(triggers: Triggers, event: Event, changed_files: tuple[str, ...] | None = None) -> Match:
    """Whether `event` starts the pipeline, with the reason. Unknown changed files count as matching."""
    if not triggers.declared:
        if event.kind == "schedule":
            return Match(False, "the pipeline has no 'on.schedule'")
        return Match(True, "the pipeline has no 'on' key, so every event starts it")
    if (triggers.push is None and triggers.pull_request is None and not triggers.schedules
            and triggers.dispatch_inputs is None and triggers.other_events):
        return Match(False, "it declares only events Mini-Jenkin never starts runs for: "
                            f"{', '.join(triggers.other_events)}")

    if event.kind in ("push", "tag"):
        if triggers.push is None:
            return Match(False, "the pipeline has no 'on.push'")
        return _match_push(triggers.push, event, changed_files)
    if event.kind == "pull_request":
        if triggers.pull_request is None:
            return Match(False, "the pipeline has no 'on.pull_request'")
        return _match_pull_request(triggers.pull_request, event, changed_files)
    if event.kind in ("manual", "api"):
        if triggers.dispatch_inputs is None:
            return Match(False, "the pipeline has no 'on.workflow_dispatch'")
        return Match(True, "on.workflow_dispatch")
    if event.kind == "schedule":
        if not triggers.schedules:
            return Match(False, "the pipeline has no 'on.schedule'")
        if event.schedule is not None and not _has_schedule(triggers, event):
            fired = event.schedule
            if event.schedule_timezone is not None:
                fired = f"{event.schedule} ({event.schedule_timezone})"
            return Match(False, f"no schedule of this pipeline is {fired!r}")
        return Match(True, "on.schedule")
    return Match(False, f"event {event.kind!r} starts no pipeline")


def _has_schedule(triggers: Triggers, event: Event) -> bool:
    """Return whether the schedule that fired `event` is one of the pipeline's.

    The scheduler stores a schedule without a time zone as UTC, and a fired
    schedule without a recorded time zone matches on its cron alone.
    """
    for schedule in triggers.schedules:
        if schedule.cron != event.schedule:
            continue
        if event.schedule_timezone is None or (schedule.timezone or "UTC") == event.schedule_timezone:
            return True
    return False


def _selected(included: tuple[str, ...] | None, ignored: tuple[str, ...] | None, value: str) -> bool:
    if included is not None:
        return globs.matches_any(included, value)
    if ignored is not None:
        return not globs.matches_any(ignored, value)
    return True


def _match_paths(filters: Filters, changed: tuple[str, ...] | None, path: str) -> Match | None:
    """A non-matching result when the path filters exclude the change, else None."""
    if not filters.has_path_filter:
        return None
    if changed is None:
        return None
    if filters.paths is not None and not globs.any_path_selected(filters.paths, changed):
        return Match(False, f"no changed file matches {path}.paths")
    if filters.paths_ignore is not None and all(
            globs.matches_any(filters.paths_ignore, file) for file in changed):
        return Match(False, f"every changed file matches {path}.paths-ignore")
    return None


def _match_push(filters: Filters, event: Event, changed: tuple[str, ...] | None) -> Match:
    if event.kind == "tag":
        tag = event.tag or event.ref_name
        if filters.has_branch_filter and not filters.has_tag_filter:
            return Match(False, "on.push filters branches only, so tags do not start it")
        if not _selected(filters.tags, filters.tags_ignore, tag):
            return Match(False, f"tag {tag!r} does not match on.push.tags")
        return Match(True, f"on.push (tag {tag})")

    branch = event.branch or event.ref_name
    if filters.has_tag_filter and not filters.has_branch_filter:
        return Match(False, "on.push filters tags only, so branch pushes do not start it")
    if not _selected(filters.branches, filters.branches_ignore, branch):
        return Match(False, f"branch {branch!r} does not match on.push.branches")
    return _match_paths(filters, changed, "on.push") or Match(True, f"on.push (branch {branch})")


def _match_pull_request(filters: Filters, event: Event, changed: tuple[str, ...] | None) -> Match:
    action = event.pull_request.get("action")
    types = filters.types or DEFAULT_PULL_REQUEST_TYPES
    if isinstance(action, str) and action and action not in types:
        reason = f"pull request action {action!r} is not in on.pull_request.types"
        if not any(kind in STARTED_PULL_REQUEST_TYPES for kind in types):
            reason += (f" (its types never match here: Mini-Jenkin starts pull request runs only for "
                       f"{', '.join(STARTED_PULL_REQUEST_TYPES)})")
        return Match(False, reason)
    base = str(event.pull_request.get("base_ref") or "")
    if not _selected(filters.branches, filters.branches_ignore, base):
        return Match(False, f"base branch {base!r} does not match on.pull_request.branches")
    return _match_paths(filters, changed, "on.pull_request") or Match(True, "on.pull_request")
