"""docs/configuration.md lists every setting with the default and meaning the code has."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from minijenkin.config import Settings
from tests.support.settings_env import CLI_VARIABLES, PREFIX, setting_variables

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Defaults that depend on the machine, shown as the rule that computes them.
COMPUTED_DEFAULTS = {"data_dir": "`~/.local/share/minijenkin` (the platform's user data directory)"}


def setting_rows() -> list[str]:
    """Render one Markdown table row per setting, in declaration order."""
    rows = []
    for name, field in Settings.model_fields.items():
        variable = f"`{PREFIX}{name.upper()}`"
        if name == "database_url":
            variable += " (or `DATABASE_URL`)"
        if name in COMPUTED_DEFAULTS:
            default = COMPUTED_DEFAULTS[name]
        elif field.default is PydanticUndefined or field.default_factory is not None:
            default = "none"
        elif field.default is None:
            default = "unset"
        else:
            default = f"`{str(field.default).lower() if isinstance(field.default, bool) else field.default}`"
        rows.append(f"| {variable} | {default} | {field.description} |")
    return rows


def test_configuration_lists_every_setting() -> None:
    text = (DOCS / "configuration.md").read_text()

    assert [row for row in setting_rows() if row not in text.splitlines()] == []


def test_docs_name_only_real_variables() -> None:
    known = set(setting_variables()) | CLI_VARIABLES
    # pipeline.md names the variables steps receive; test_pipeline_docs checks those.
    pages = [path for path in DOCS.glob("*.md") if path.name != "pipeline.md"]
    for path in [*pages, DOCS.parent / "README.md"]:
        named = set(re.findall(r"\bMINIJENKIN_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
        # Test-only variables are documented for developers, not read by Settings.
        named = {name for name in named if not name.startswith(("MINIJENKIN_TEST_", "MINIJENKIN_BENCH_"))}
        assert sorted(named - known) == [], path.name


if __name__ == "__main__":
    print("\n".join(setting_rows()))
