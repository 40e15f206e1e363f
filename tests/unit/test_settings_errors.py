"""Invalid MINIJENKIN_* values stop a command with one message naming the variable."""

from __future__ import annotations

import pytest

from minijenkin.cli.common import load_cli_settings
from minijenkin.errors import ConfigurationError


@pytest.mark.parametrize(("variable", "value"), [
    ("MINIJENKIN_WORKER_CONCURRENCY", "abc"),
    ("MINIJENKIN_WORKER_CONCURRENCY", ""),
    ("MINIJENKIN_WORKER_CONCURRENCY", "0"),
    ("MINIJENKIN_PORT", "-1"),
    ("MINIJENKIN_LOG_LEVEL", "LOUD"),
    ("MINIJENKIN_LOG_LEVEL", ""),
    ("MINIJENKIN_LOG_RETENTION_DAYS", "0"),
    ("MINIJENKIN_LOG_RETENTION_DAYS", "9999999"),
    ("MINIJENKIN_ANONYMOUS_READ", "maybe"),
    ("MINIJENKIN_WORKER_LEASE_SECONDS", "inf"),
    ("MINIJENKIN_METRICS_REFRESH_SECONDS", "nan"),
    ("MINIJENKIN_DATA_DIR", ""),
])
def test_invalid_setting_names_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                        value: str) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as raised:
        load_cli_settings()

    assert f"{variable}={value!r}" in str(raised.value)
    assert "Value error" not in str(raised.value)


def test_log_level_accepts_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIJENKIN_LOG_LEVEL", "debug")

    assert load_cli_settings().log_level == "DEBUG"


def test_retention_limit_keeps_cutoff_a_valid_date(monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL dates end at 4713 BC; the partition upkeep subtracts the
    # retention from today's date, so the maximum must stay far above that.
    monkeypatch.setenv("MINIJENKIN_LOG_RETENTION_DAYS", "36500")

    assert load_cli_settings().log_retention_days == 36500


def test_cross_setting_error_has_no_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIJENKIN_WORKER_LEASE_SECONDS", "1")

    with pytest.raises(ConfigurationError) as raised:
        load_cli_settings()

    assert str(raised.value).startswith("invalid settings: MINIJENKIN_WORKER_LEASE_SECONDS (1)")
