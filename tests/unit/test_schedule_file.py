"""Reading `on.schedule` from a pipeline file, with positions in errors."""

from __future__ import annotations

import pytest

from minijenkin.errors import PipelineError
from minijenkin.schedules import ScheduleSpec, read_schedules


def test_schedules_with_and_without_time_zone() -> None:
    text = """\
on:
  schedule:
    - cron: "30 5 * * 1-5"
    - cron: "0 6 * * *"
      timezone: Europe/Berlin
jobs: {}
"""
    assert read_schedules(text) == [ScheduleSpec("30 5 * * 1-5", "UTC"),
                                    ScheduleSpec("0 6 * * *", "Europe/Berlin")]


@pytest.mark.parametrize("text", [
    "jobs: {}\n", "on: push\njobs: {}\n", "on: [push, pull_request]\n", "on:\n  push:\n", "",
])
def test_files_without_schedules(text: str) -> None:
    assert read_schedules(text) == []


@pytest.mark.parametrize(("text", "message"), [
    ('on:\n  schedule:\n    - cron: "61 * * * *"\n',
     ".minijenkin.yml:3:13: on.schedule[0].cron: invalid cron expression '61 * * * *'"),
    ('on:\n  schedule:\n    - cron: "0 6 * * *"\n      timezone: Moon/Base\n',
     ".minijenkin.yml:4:17: on.schedule[0].timezone: unknown time zone 'Moon/Base'"),
    ('on:\n  schedule:\n    - crn: "0 6 * * *"\n',
     ".minijenkin.yml:3:7: on.schedule[0]: each entry must be a mapping with a 'cron' key"),
    ('on:\n  schedule:\n    - cron: "0 6 * * *"\n      tz: UTC\n',
     ".minijenkin.yml:4:7: on.schedule[0]: unknown key 'tz'; expected 'cron' or 'timezone'"),
    ('on:\n  schedule: "0 6 * * *"\n',
     ".minijenkin.yml:2:13: 'on.schedule' must be a list of entries with a 'cron' key"),
])
def test_invalid_schedules_name_the_place(text: str, message: str) -> None:
    with pytest.raises(PipelineError) as raised:
        read_schedules(text)

    assert str(raised.value).startswith(message)
