"""The `shell` of a `run:` step: keywords and templates as GitHub Actions defines them.

A step's script is written to a file, and the shell runs that file. `shell`
is a keyword (bash, sh, python, pwsh) or a template such as `bash -el {0}`,
where `{0}` is replaced by the script's path. The command lines of the
keywords and the default of workflow files are those of GitHub's runner
(actions/runner, ScriptHandlerHelpers.cs, and GitHub's workflow syntax
reference for `jobs.<job_id>.steps[*].shell`).
"""

from __future__ import annotations

import posixpath
import shlex

# The shell of a step in `.minijenkin.yml` that sets none, and of `shell: bash`.
BASH = "bash --noprofile --norc -eo pipefail {0}"
# The shell of a step in a GitHub workflow file that sets none: GitHub runs
# it without pipefail, so `producer | head -1` passes there.
WORKFLOW_DEFAULT = "bash -e {0}"

KEYWORDS = {
    "bash": BASH,
    "sh": "sh -e {0}",
    "python": "python {0}",
    "pwsh": "pwsh -command \". '{0}'\"",
}
# Shells of Windows runners, which workers never are.
WINDOWS_SHELLS = ("cmd", "powershell")
# Script file suffixes by the template's command; some interpreters need them.
SUFFIXES = {"python": ".py", "python3": ".py", "pwsh": ".ps1"}
# GitHub wraps pwsh scripts so that errors stop them and the last native
# command's exit code becomes the step's.
PWSH_PROLOGUE = "$ErrorActionPreference = 'stop'\n"
PWSH_EPILOGUE = "\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }\n"


def check(value: object) -> str | None:
    """Return why `value` is not a valid `shell`, or None when it is."""
    if not isinstance(value, str) or not value.strip():
        return "'shell' must be a keyword (bash, sh, python, pwsh) or a command with {0}"
    if "${{" in value:
        return "'shell' cannot contain expressions"
    shell = value.strip()
    if shell in KEYWORDS:
        return None
    if shell in WINDOWS_SHELLS:
        return (f"shell {shell!r} exists only on Windows runners; use bash, sh, python, pwsh "
                "or a command with {0}")
    try:
        words = shlex.split(shell)
    except ValueError as exc:
        return f"shell {shell!r} is not a valid command line: {exc}"
    if "{0}" not in shell:
        return (f"shell {shell!r} is neither a keyword (bash, sh, python, pwsh) nor a command "
                "with {0} where the script's path goes, such as 'bash -el {0}'")
    if words[0] == "{0}":
        return f"shell {shell!r} must start with the command that runs the script"
    return None


def template(shell: str | None, *, default: str = BASH) -> str:
    """Return the command template of a checked `shell` value (None means the default)."""
    if shell is None:
        return default
    shell = shell.strip()
    return KEYWORDS.get(shell, shell)


def command_line(shell_template: str, script_path: str) -> list[str]:
    """Return the argument list that runs the script file at `script_path`."""
    return [word.replace("{0}", script_path) for word in shlex.split(shell_template)]


def script_suffix(shell_template: str) -> str:
    """Return the file suffix the script gets, e.g. `.py` for python."""
    command = posixpath.basename(shlex.split(shell_template)[0])
    return SUFFIXES.get(command, ".sh")


def script_text(shell_template: str, script: str) -> str:
    """Return the script file's content, wrapped as GitHub wraps pwsh scripts."""
    if shell_template == KEYWORDS["pwsh"]:
        return PWSH_PROLOGUE + script + PWSH_EPILOGUE
    return script
