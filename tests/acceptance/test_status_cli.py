"""`minijenkin status` run as a user runs it, against a real database."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg

from tests.support.workers import scrubbed_environment


def _status(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**scrubbed_environment(), "MINIJENKIN_DATABASE_URL": database_url, "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "minijenkin", "status"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _table_rows(output: str) -> list[list[str]]:
    rows = []
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if len(cells) == 3 and cells[0] and not cells[0].startswith(("━", "─", "figure")):
            rows.append(cells)
    return rows


def test_status_prints_live_figures(db: psycopg.Connection, database_url: str) -> None:
    repo_id = db.execute("INSERT INTO repositories (name, url) VALUES ('acme/web', 'file:///x') "
                         "RETURNING id").fetchone()["id"]
    run_id = db.execute("INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha) "
                        "VALUES (%s, 'running', 'push', 'refs/heads/main', %s) RETURNING id",
                        (repo_id, "a" * 40)).fetchone()["id"]
    worker_id = uuid.uuid4()
    db.execute("INSERT INTO workers (id, name, hostname, labels, concurrency) "
               "VALUES (%s, 'w', 'host', '{linux}', 4)", (worker_id,))
    db.execute("INSERT INTO jobs (run_id, repo_id, key, name, status, labels, queued_at) "
               "VALUES (%s, %s, 'a', 'a', 'queued', '{linux}', now()), "
               "       (%s, %s, 'b', 'b', 'queued', '{}', now())",
               (run_id, repo_id, run_id, repo_id))
    db.execute("INSERT INTO jobs (run_id, repo_id, key, name, status, worker_id, lease_token) "
               "VALUES (%s, %s, 'c', 'c', 'running', %s, gen_random_uuid())",
               (run_id, repo_id, worker_id))

    result = _status(database_url)

    assert result.returncode == 0, result.stderr
    rows = _table_rows(result.stdout)
    assert ["queue_depth", "labels=(none)", "1 jobs"] in rows
    assert ["queue_depth", "labels=linux", "1 jobs"] in rows
    assert ["worker_slots", "labels=linux state=busy", "1 slots"] in rows
    assert ["worker_slots", "labels=linux state=idle", "3 slots"] in rows
    assert ["worker_utilisation", "-", "25.0 %"] in rows
    assert ["runs_active", "status=running", "1 runs"] in rows
    assert [row[0] for row in rows if row[0] == "queue_oldest_age"] == ["queue_oldest_age"] * 2


def test_status_without_database_says_what_to_do(tmp_path) -> None:
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "minijenkin", "status"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    assert "set MINIJENKIN_DATABASE_URL" in result.stderr
