"""Cron ticks in a time zone, with daylight-saving changes handled like wall clocks.

A schedule names wall-clock times in an IANA time zone (default UTC). Each
wall-clock time that the expression matches fires once:

- a time that does not exist because clocks jump forward (02:30 on the
  night summer time starts in Europe) fires at the first instant after the
  jump (03:00 local); several such times in one gap fire once;
- a time that occurs twice because clocks go back fires at its first
  occurrence only.

Expressions have the five standard fields (minute hour day-of-month month
day-of-week) or one of the @yearly, @annually, @monthly, @weekly, @daily,
@midnight and @hourly shorthands; croniter evaluates them on naive
wall-clock times.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadCronError, CroniterBadDateError, CroniterError

ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
FIELD_COUNT = 5
# Longest clock jump to step over, in minutes (Samoa skipped a whole day in 2011).
_GAP_MINUTES_MAX = 48 * 60
# Candidates examined before giving up (an expression such as "0 0 30 2 *" never matches).
_CANDIDATES_MAX = 10_000
# croniter's extensions `H` (hashed, as in Jenkins) and `R` (random), alone or as
# `R(0-29)` or `R/5`. A random value is drawn anew at every evaluation, so
# each computed tick would land elsewhere.
_HASHED_OR_RANDOM = re.compile(r"^[HR](\(|/|$)", re.IGNORECASE)


class CronError(ValueError):
    """An invalid cron expression or time zone; the message says which and why."""


def normalize(expression: str) -> str:
    """The expression with single spaces; raise CronError unless it is valid."""
    text = " ".join(expression.split())
    if text.lower() in ALIASES:
        return text.lower()
    fields = text.split(" ")
    if len(fields) != FIELD_COUNT:
        raise CronError(f"invalid cron expression {expression!r}: it needs 5 fields "
                        f"(minute hour day-of-month month day-of-week), got {len(fields)}")
    for field in fields:
        if any(_HASHED_OR_RANDOM.match(value) for value in field.split(",")):
            raise CronError(f"invalid cron expression {expression!r}: {field!r} is a hashed (H) "
                            "or random (R) value, which standard cron does not have. "
                            "Use numbers, ranges, lists and steps.")
    if not croniter.is_valid(text):
        raise CronError(f"invalid cron expression {expression!r}: expected five fields "
                        "(minute hour day-of-month month day-of-week), e.g. '30 5 * * 1-5'")
    try:
        next_tick(text, "UTC", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronError:
        raise CronError(f"cron expression {expression!r} never matches a date") from None
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; raise CronError when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}: use an IANA name such as "
                        "'Europe/Berlin' or 'UTC'") from None


def _exists(naive: dt.datetime, tz: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) == naive


def wall_to_instant(naive: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of a wall-clock time: its first occurrence, or the end of its gap."""
    candidate = naive
    for _ in range(_GAP_MINUTES_MAX):
        if _exists(candidate, tz):
            return candidate.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
        candidate = (candidate + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    raise CronError(f"{naive.isoformat()} falls in a clock change longer than two days in {tz.key}")


def next_tick(expression: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first tick strictly after the aware datetime `after`, as an aware UTC datetime."""
    tz = zone(timezone)
    local_after = after.astimezone(tz).replace(tzinfo=None)
    try:
        candidates = croniter(expression, local_after)
        # Wall-clock times before local_after map to instants at or before
        # `after`, so walking forward from it finds the first later tick.
        for _ in range(_CANDIDATES_MAX):
            instant = wall_to_instant(candidates.get_next(dt.datetime), tz)
            if instant > after:
                return instant
    except (CroniterBadCronError, CroniterBadDateError, CroniterError) as exc:
        raise CronError(f"cron expression {expression!r}: {exc}") from exc
    raise CronError(f"cron expression {expression!r} has no tick after {after.isoformat()}")


def latest_tick(expression: str, timezone: str, at_or_before: dt.datetime) -> dt.datetime | None:
    """The last tick at or before `at_or_before`, or None when there is none within reach."""
    tz = zone(timezone)
    local = at_or_before.astimezone(tz)
    naive = local.replace(tzinfo=None)
    start = naive + dt.timedelta(seconds=1)
    if local.fold:
        # In the second pass of a repeated hour, every wall-clock time up to
        # the end of that hour first occurred in the first pass, so the walk
        # back starts from the end of the repeated hour.
        first_offset = naive.replace(tzinfo=tz, fold=0).utcoffset()
        second_offset = naive.replace(tzinfo=tz, fold=1).utcoffset()
        assert first_offset is not None and second_offset is not None
        start += max(first_offset - second_offset, dt.timedelta(0))
    try:
        candidates = croniter(expression, start)
        for _ in range(_CANDIDATES_MAX):
            instant = wall_to_instant(candidates.get_prev(dt.datetime), tz)
            if instant <= at_or_before:
                return instant
    except (CroniterBadCronError, CroniterBadDateError, CroniterError):
        return None
    return None


def due_tick(expression: str, timezone: str, next_run_at: dt.datetime,
             now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(tick to fire, following next_run_at) for a schedule whose next_run_at has come.

    However many ticks were missed while no process ran the loop, one fires:
    the latest one at or before `now`. The following tick is the first
    after `now`.
    """
    latest = latest_tick(expression, timezone, now)
    tick = latest if latest is not None and latest > next_run_at else next_run_at
    return tick, next_tick(expression, timezone, now)
