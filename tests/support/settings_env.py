"""The environment variables the settings class reads, found by introspection."""

from __future__ import annotations

from pydantic import AliasChoices

from minijenkin.config import Settings

PREFIX = Settings.model_config["env_prefix"]

# Variables read by the CLI itself (Typer `envvar=`), not by `Settings`.
CLI_VARIABLES = frozenset({
    "MINIJENKIN_API_URL", "MINIJENKIN_API_TOKEN", "MINIJENKIN_NOTIFY_URL", "MINIJENKIN_NOTIFY_SECRET",
})


def setting_variables() -> dict[str, str]:
    """Map every variable `Settings` reads to its field name."""
    variables: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                variables[str(choice)] = name
        else:
            variables[f"{PREFIX}{name}".upper()] = name
    return variables
