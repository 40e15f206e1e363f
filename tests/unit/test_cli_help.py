"""Every command's --help: it renders, explains each option with its unit and variable."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from minijenkin.cli import app
from tests.support.settings_env import CLI_VARIABLES, setting_variables

ROOT = typer.main.get_command(app)
# Typer's own options of the root command.
BUILT_IN = {"install_completion", "show_completion", "help"}
# Commands that never open a database connection.
WITHOUT_DATABASE = {"", "validate", "exec", "logs", "search", "notify", "repo", "token", "secret", "var",
                    "secret generate-key", "settings"}
# A numeric option names what it counts in one of these words.
UNITS = re.compile(r"\b(?:seconds?|MiB|days?|jobs?|process(?:es)?|hits?|attempt|id|port)\b", re.IGNORECASE)
VARIABLE = re.compile(r"\b(?:MINIJENKIN_[A-Z_]+|DATABASE_URL)\b")
# A note such as "[env: MINIJENKIN_PORT; default: 3000]" in an option's help.
BRACKETED = re.compile(r"\[[^\]]+\]")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    yield " ".join(path), command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(ROOT))


def _help(path: str) -> str:
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "200"},
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def _is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def _options(command: Any) -> list[Any]:
    return [param for param in command.params if param.name not in BUILT_IN]


def test_command_tree_is_complete() -> None:
    assert sorted(COMMANDS) == [
        "", "api", "approve", "cancel", "dispatcher", "doctor", "exec", "logs", "migrate", "notify",
        "notify add", "notify list", "notify remove", "repo", "repo add", "repo list", "rerun",
        "search", "secret", "secret delete", "secret generate-key", "secret list", "secret rotate-key",
        "secret set", "settings", "show", "status", "token", "token create", "token list", "token revoke",
        "trigger", "up", "validate", "var", "var delete", "var list", "var set", "worker",
    ]


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_describes_command(path: str) -> None:
    command = COMMANDS[path]
    text = _help(path)

    summary = " ".join((command.help or "").split("\n\n")[0].split())
    assert summary != ""
    assert summary in text
    for param in _options(command):
        assert (getattr(param, "help", None) or "").strip() != "", f"{path}: {param.name}"
        if _is_option(param):
            assert param.opts[0] in text


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_numbers_carry_units(path: str) -> None:
    for param in _options(COMMANDS[path]):
        annotation = param.type_descriptor.annotation
        if {int, float} & {annotation, *typing.get_args(annotation)}:
            assert UNITS.search(param.help), f"{path} {param.name}: {param.help}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_names_real_variables(path: str) -> None:
    known = set(setting_variables()) | CLI_VARIABLES
    text = _help(path)

    assert sorted(set(VARIABLE.findall(text)) - known) == []
    for param in _options(COMMANDS[path]):
        if _is_option(param) and param.envvar:
            assert f"[env var: {param.envvar}]" in text


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_names_database_variable(path: str) -> None:
    text = _help(path)

    if path in WITHOUT_DATABASE:
        assert "Database: MINIJENKIN_DATABASE_URL" not in text
    else:
        assert "Database: MINIJENKIN_DATABASE_URL (or DATABASE_URL)" in text


def test_options_for_settings_name_their_variable() -> None:
    variables = setting_variables()
    options = {
        ("up", "--host"): "MINIJENKIN_HOST", ("up", "--port"): "MINIJENKIN_PORT",
        ("up", "--data-dir"): "MINIJENKIN_DATA_DIR", ("api", "--host"): "MINIJENKIN_HOST",
        ("api", "--port"): "MINIJENKIN_PORT", ("worker", "--concurrency"): "MINIJENKIN_WORKER_CONCURRENCY",
        ("worker", "--labels"): "MINIJENKIN_WORKER_LABELS", ("exec", "--data-dir"): "MINIJENKIN_DATA_DIR",
        ("doctor", "--data-dir"): "MINIJENKIN_DATA_DIR",
    }
    for (path, flag), variable in options.items():
        [param] = [param for param in COMMANDS[path].params if flag in getattr(param, "opts", [])]
        assert variable in variables
        assert f"[env: {variable}" in _help(path), f"{path} {flag}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_keeps_bracketed_notes(path: str) -> None:
    text = _help(path)

    for param in _options(COMMANDS[path]):
        for note in BRACKETED.findall((getattr(param, "help", None) or "").replace("\\[", "[")):
            assert " ".join(note.split()) in text, f"{path} {param.name}"
