"""The `retry` key of a job: which failures get another attempt.

Accepted forms, as in GitLab CI and Buildkite:

    retry: 2                                  # any failure, up to 2 more attempts
    retry: {max: 2}                           # the same
    retry: {max: 2, on: [timeout, infra]}     # only these failure classes
    retry: {max: 2, on: [exit-codes: [137]]}  # script failures with these codes

Classes: `script` (a step exited non-zero), `timeout` (`timeout-minutes`
passed) and `infra` (the worker was lost). Without `retry`, only
infrastructure failures are retried, up to DEFAULT_MAX_ATTEMPTS attempts in
all. An explicit `on` list is exact: a class it leaves out is not retried.

The normalised policy is the JSON object the queue functions read:
{"max": N, "script": bool, "timeout": bool, "infra": bool,
 "exit_codes": [...]}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_MAX_ATTEMPTS = 3
RETRY_MAX = 10
RETRY_CLASSES = ("script", "timeout", "infra")

ReportError = Callable[[str], None]


def parse_retry(value: Any, report: ReportError) -> dict[str, Any]:
    """Normalise a `retry` value; call `report(message)` for each problem."""
    if value is None:
        return {}
    if isinstance(value, bool) or isinstance(value, int):
        if isinstance(value, bool) or not 0 <= value <= RETRY_MAX:
            report(f"'retry' must be a number from 0 to {RETRY_MAX}, or a mapping with 'max' and 'on'")
            return {}
        return {"max": value, "script": True, "timeout": True, "infra": True}
    if not isinstance(value, Mapping):
        report("'retry' must be a number or a mapping with 'max' and 'on'")
        return {}

    unknown = [key for key in value if key not in ("max", "on")]
    if unknown:
        report(f"unknown key {unknown[0]!r} in 'retry'; expected 'max' or 'on'")
    maximum = value.get("max", 1)
    if isinstance(maximum, bool) or not isinstance(maximum, int) or not 0 <= maximum <= RETRY_MAX:
        report(f"'retry.max' must be a number from 0 to {RETRY_MAX}")
        return {}

    classes = value.get("on")
    if classes is None:
        return {"max": maximum, "script": True, "timeout": True, "infra": True}
    if isinstance(classes, str | Mapping):
        classes = [classes]
    if not isinstance(classes, list) or not classes:
        report("'retry.on' must be a list of: script, timeout, infra, exit-codes: [...]")
        return {}

    policy: dict[str, Any] = {"max": maximum, "script": False, "timeout": False, "infra": False}
    for item in classes:
        if isinstance(item, str) and item in RETRY_CLASSES:
            policy[item] = True
        elif isinstance(item, Mapping) and list(item) == ["exit-codes"]:
            codes = item["exit-codes"]
            codes = [codes] if isinstance(codes, int) and not isinstance(codes, bool) else codes
            if not isinstance(codes, list) or not codes or not all(
                isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 255
                for code in codes
            ):
                report("'exit-codes' must be a list of exit codes from 0 to 255")
                return {}
            policy["script"] = True
            policy["exit_codes"] = sorted(set(codes))
        else:
            report(f"invalid 'retry.on' entry {item!r}; expected script, timeout, infra "
                   "or exit-codes: [...]")
            return {}
    return policy


def max_attempts(policy: Mapping[str, Any]) -> int:
    """Attempts allowed when workers are lost: the default, or more if the policy asks."""
    if not policy:
        return DEFAULT_MAX_ATTEMPTS
    if not policy.get("infra", False):
        return 1
    return max(DEFAULT_MAX_ATTEMPTS, int(policy.get("max", 0)) + 1)
