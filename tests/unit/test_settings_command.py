"""`minijenkin settings` prints every setting, its source, and never a secret."""

from __future__ import annotations

from typer.testing import CliRunner

from minijenkin.cli import app
from minijenkin.cli.settings import mask_password
from tests.support.settings_env import setting_variables


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 4 and cells[0].startswith("MINIJENKIN_"):
            rows[cells[0]] = cells[1:]
    return rows


def test_settings_lists_values_and_sources() -> None:
    env = {"MINIJENKIN_WORKER_CONCURRENCY": "7", "MINIJENKIN_SECRET_KEY": "c2VjcmV0LWtleS12YWx1ZQ==",
           "MINIJENKIN_ADMIN_TOKEN": "mjt_do-not-print", "DATABASE_URL": "postgresql://ci:pw-123@db/ci",
           "MINIJENKIN_WORKER_LABELS": "linux,gpu", "COLUMNS": "400"}

    result = CliRunner().invoke(app, ["settings"], env=env, terminal_width=400)

    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    assert rows["MINIJENKIN_WORKER_CONCURRENCY"][:2] == ["7", "environment"]
    assert rows["MINIJENKIN_PORT"][:2] == ["3000", "default"]
    assert rows["MINIJENKIN_WORKER_LABELS"][:2] == ["linux,gpu", "environment"]
    assert rows["MINIJENKIN_SECRET_KEY"][:2] == ["(set)", "environment"]
    assert rows["MINIJENKIN_ADMIN_TOKEN"][:2] == ["(set)", "environment"]
    assert rows["MINIJENKIN_DATABASE_URL or DATABASE_URL"][:2] == ["postgresql://ci:***@db/ci", "environment"]
    assert rows["MINIJENKIN_PUBLIC_URL"][:2] == ["(unset)", "default"]
    assert "pw-123" not in result.output
    assert "mjt_do-not-print" not in result.output
    assert "c2VjcmV0LWtleS12YWx1ZQ==" not in result.output
    listed = {name for row in rows for name in row.split(" or ")}
    assert listed == set(setting_variables())


def test_mask_password_forms() -> None:
    assert mask_password("postgresql://ci:s3cret@db:5432/ci") == "postgresql://ci:***@db:5432/ci"
    assert mask_password("postgresql://ci@db/ci") == "postgresql://ci@db/ci"
    assert mask_password("host=db user=ci password=s3cret dbname=ci") == \
        "host=db user=ci password=*** dbname=ci"
    assert mask_password("host=db password='a b\\' c' dbname=ci") == "host=db password=*** dbname=ci"


def test_settings_keeps_names_whole_when_narrow() -> None:
    result = CliRunner().invoke(app, ["settings"], env={"COLUMNS": "80"}, terminal_width=80)

    assert result.exit_code == 0, result.output
    names = {cells[0] for cells in (
        [cell.strip() for cell in line.strip().strip("│").split("│")] for line in result.output.splitlines())
        if cells[0].startswith("MINIJENKIN_")}
    assert "…" not in result.output
    assert "MINIJENKIN_WORKER_HEARTBEAT_SECONDS" in names
    assert "MINIJENKIN_WORKER_LEASE_SECONDS" in names
