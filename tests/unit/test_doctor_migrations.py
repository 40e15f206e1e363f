"""The migrations check of `minijenkin doctor` compares recorded and shipped SQL files."""

from __future__ import annotations

from minijenkin.doctor import Finding, compare_migrations

SHIPPED = {"0001_core.sql": "a", "0002_tokens.sql": "b", "functions/10_common.sql": "c"}


def test_migrations_all_applied() -> None:
    assert compare_migrations(dict(SHIPPED), SHIPPED) == Finding(
        "migrations", "ok", "2 of 2 migrations applied, functions up to date")


def test_migrations_pending_and_changed_function() -> None:
    recorded = {"0001_core.sql": "a", "functions/10_common.sql": "old"}

    finding = compare_migrations(recorded, SHIPPED)

    assert finding.status == "fail"
    assert finding.detail == ("1 of 2 migrations applied; pending: 0002_tokens.sql, "
                              "functions/10_common.sql")
    assert finding.fix == "run `minijenkin migrate` (safe while the API and workers run)"


def test_migrations_from_newer_release() -> None:
    recorded = {**SHIPPED, "0003_future.sql": "d"}

    finding = compare_migrations(recorded, SHIPPED)

    assert finding.status == "fail"
    assert finding.detail == ("the database has 1 migration that this installation does not "
                              "ship: 0003_future.sql")
    assert finding.fix == "upgrade this installation to the version that migrated the database"


def test_migrations_edited_after_apply() -> None:
    recorded = {**SHIPPED, "0001_core.sql": "edited"}

    finding = compare_migrations(recorded, SHIPPED)

    assert finding.status == "fail"
    assert finding.detail == "applied migration differs from the shipped files: 0001_core.sql"
