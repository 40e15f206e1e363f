"""Cron ticks in time zones, across daylight-saving changes (Europe/Berlin, 2026)."""

from __future__ import annotations

import datetime as dt

import pytest

from minijenkin import cron

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def test_next_tick_in_utc() -> None:
    assert cron.next_tick("30 5 * * 1-5", "UTC", utc(2026, 12, 4, 12, 0)) == utc(2026, 12, 7, 5, 30)


def test_next_tick_is_strictly_later() -> None:
    assert cron.next_tick("0 6 * * *", "UTC", utc(2026, 12, 4, 6, 0)) == utc(2026, 12, 5, 6, 0)


def test_local_time_follows_summer_time() -> None:
    # 06:00 in Berlin is 05:00 UTC in winter and 04:00 UTC in summer.
    assert cron.next_tick("0 6 * * *", BERLIN, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 4, 0)
    assert cron.next_tick("0 6 * * *", BERLIN, utc(2026, 3, 27, 12, 0)) == utc(2026, 3, 28, 5, 0)


def test_skipped_hour_fires_once_after_the_jump() -> None:
    # On 2026-03-29 Berlin clocks jump from 02:00 to 03:00 (01:00 UTC).
    assert cron.next_tick("30 2 * * *", BERLIN, utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)
    ticks = [utc(2026, 3, 28, 23, 0)]
    for _ in range(2):
        ticks.append(cron.next_tick("*/15 2 * * *", BERLIN, ticks[-1]))
    assert ticks[1:] == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0)]


def test_repeated_hour_fires_at_first_occurrence_only() -> None:
    # On 2026-10-25 Berlin clocks go back from 03:00 to 02:00: 02:30 happens twice.
    first = cron.next_tick("30 2 * * *", BERLIN, utc(2026, 10, 24, 23, 0))
    assert first == utc(2026, 10, 25, 0, 30)
    assert cron.next_tick("30 2 * * *", BERLIN, first) == utc(2026, 10, 26, 1, 30)


def test_hourly_ticks_across_the_repeated_hour() -> None:
    ticks = [utc(2026, 10, 24, 23, 30)]
    for _ in range(4):
        ticks.append(cron.next_tick("0 * * * *", BERLIN, ticks[-1]))
    # Wall clock 02:00 (summer time), 03:00, 04:00, 05:00 (winter time): the
    # second 02:00, at 01:00 UTC, does not fire.
    assert ticks[1:] == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0),
                         utc(2026, 10, 25, 3, 0), utc(2026, 10, 25, 4, 0)]


def test_latest_tick_in_repeated_hour() -> None:
    # 01:10 UTC on 2026-10-25 is 02:10 winter time in Berlin, during the
    # second pass of 02:00-03:00. Today's 02:30 already fired at 00:30 UTC.
    latest = cron.latest_tick("30 2 * * *", BERLIN, utc(2026, 10, 25, 1, 10))

    assert latest == utc(2026, 10, 25, 0, 30)


def test_due_tick_after_downtime_ending_in_repeated_hour() -> None:
    tick, following = cron.due_tick("30 2 * * *", BERLIN, utc(2026, 10, 23, 0, 30),
                                    utc(2026, 10, 25, 1, 10))

    assert tick == utc(2026, 10, 25, 0, 30)
    assert following == utc(2026, 10, 26, 1, 30)


def test_due_tick_after_downtime_is_the_latest_missed() -> None:
    tick, following = cron.due_tick("0 6 * * *", BERLIN, utc(2026, 12, 1, 5, 0),
                                    utc(2026, 12, 4, 20, 0))

    assert tick == utc(2026, 12, 4, 5, 0)
    assert following == utc(2026, 12, 5, 5, 0)


def test_due_tick_without_missed_ticks() -> None:
    tick, following = cron.due_tick("0 6 * * *", "UTC", utc(2026, 12, 4, 6, 0),
                                    utc(2026, 12, 4, 6, 0, 1))

    assert tick == utc(2026, 12, 4, 6, 0)
    assert following == utc(2026, 12, 5, 6, 0)


@pytest.mark.parametrize(("expression", "message"), [
    ("0 6 * *", "it needs 5 fields (minute hour day-of-month month day-of-week), got 4"),
    ("0 6 * * * *", "it needs 5 fields (minute hour day-of-month month day-of-week), got 6"),
    ("61 6 * * *", "invalid cron expression '61 6 * * *'"),
    ("0 0 30 2 *", "cron expression '0 0 30 2 *' never matches a date"),
    ("R * * * *", "'R' is a hashed (H) or random (R) value"),
    ("0 r(0-5) * * *", "'r(0-5)' is a hashed (H) or random (R) value"),
    ("0 1,R/4 * * *", "'1,R/4' is a hashed (H) or random (R) value"),
    ("H 6 * * *", "'H' is a hashed (H) or random (R) value"),
])
def test_invalid_expressions_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError) as raised:
        cron.normalize(expression)

    assert message in str(raised.value)


def test_aliases_and_spacing_are_normalized() -> None:
    assert cron.normalize(" @Daily ") == "@daily"
    assert cron.normalize("0  6 * *\t*") == "0 6 * * *"


def test_day_and_month_names_are_accepted() -> None:
    assert cron.normalize("0 6 * mar-apr thu,fri") == "0 6 * mar-apr thu,fri"


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")
