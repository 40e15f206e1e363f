"""`minijenkin settings`: every setting with its value, its source and its meaning."""

from __future__ import annotations

import re

from pydantic import AliasChoices
from rich.console import Console
from rich.table import Table

from minijenkin.cli.common import load_cli_settings
from minijenkin.config import Settings

# Values never printed; a set one shows as "(set)".
SECRET_FIELDS = frozenset({"secret_key", "admin_token"})
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def mask_password(conninfo: str) -> str:
    """Replace the password of a libpq URL or key/value string with ***."""
    masked = _URL_PASSWORD.sub(r"\1***@", conninfo)
    return _KEYWORD_PASSWORD.sub(r"\1***", masked)


def variable_names(name: str) -> list[str]:
    """Return the environment variables that set the field `name`, preferred first."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{Settings.model_config['env_prefix']}{name}".upper()]


def shown_value(name: str, value: object) -> str:
    if value is None:
        return "(unset)"
    if name in SECRET_FIELDS:
        return "(set)"
    if name == "database_url":
        return mask_password(str(value))
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings() -> None:
    """Print every MINIJENKIN_* setting: its value here, whether the environment set it, and what it does.

    Secret keys and tokens are never printed, and passwords in the database
    URL are masked.
    """
    current = load_cli_settings()
    explicit = current.model_fields_set
    table = Table("variable", "value", "from", "meaning", title="Mini-Jenkin settings")
    # Variable names are what users grep for and copy, so they are never cut
    # short, and values and meanings fold instead of ending in an ellipsis.
    table.columns[0].no_wrap = True
    table.columns[0].overflow = "fold"
    table.columns[0].min_width = max(len(name) for field in Settings.model_fields
                                     for name in variable_names(field))
    table.columns[1].overflow = "fold"
    table.columns[3].overflow = "fold"
    for name, field in Settings.model_fields.items():
        table.add_row(" or ".join(variable_names(name)), shown_value(name, getattr(current, name)),
                      "environment" if name in explicit else "default", field.description or "")
    Console().print(table)
