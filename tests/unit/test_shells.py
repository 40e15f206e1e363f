"""The command lines and script files of the `shell` keywords and templates."""

from __future__ import annotations

import pytest

from minijenkin.pipeline import shells


@pytest.mark.parametrize(("shell", "expected"), [
    (None, ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/w/1.sh"]),
    ("bash", ["bash", "--noprofile", "--norc", "-eo", "pipefail", "/w/1.sh"]),
    ("sh", ["sh", "-e", "/w/1.sh"]),
    ("python", ["python", "/w/1.sh"]),
    ("pwsh", ["pwsh", "-command", ". '/w/1.sh'"]),
    ("bash -el {0}", ["bash", "-el", "/w/1.sh"]),
    ("  perl -w {0} --flag ", ["perl", "-w", "/w/1.sh", "--flag"]),
])
def test_command_line_per_shell(shell: str | None, expected: list[str]) -> None:
    assert shells.command_line(shells.template(shell), "/w/1.sh") == expected


@pytest.mark.parametrize(("shell", "suffix"), [
    ("bash", ".sh"), ("sh", ".sh"), ("python", ".py"), ("/usr/bin/python3 -u {0}", ".py"),
    ("pwsh", ".ps1"), ("ruby {0}", ".sh"),
])
def test_script_suffix_per_shell(shell: str, suffix: str) -> None:
    assert shells.script_suffix(shells.template(shell)) == suffix


def test_pwsh_script_stops_at_errors() -> None:
    text = shells.script_text(shells.template("pwsh"), "Write-Output hi")
    assert text == ("$ErrorActionPreference = 'stop'\nWrite-Output hi\n"
                    "if ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }\n")
    assert shells.script_text(shells.template("bash"), "echo hi") == "echo hi"


@pytest.mark.parametrize(("value", "problem"), [
    ("bash", None),
    ("bash -el {0}", None),
    ("", "'shell' must be a keyword (bash, sh, python, pwsh) or a command with {0}"),
    (3, "'shell' must be a keyword (bash, sh, python, pwsh) or a command with {0}"),
    ("{0}", "shell '{0}' must start with the command that runs the script"),
    ("zsh", "shell 'zsh' is neither a keyword (bash, sh, python, pwsh) nor a command with {0} "
            "where the script's path goes, such as 'bash -el {0}'"),
    ("powershell", "shell 'powershell' exists only on Windows runners; use bash, sh, python, pwsh "
                   "or a command with {0}"),
])
def test_check_shell_values(value: object, problem: str | None) -> None:
    assert shells.check(value) == problem
