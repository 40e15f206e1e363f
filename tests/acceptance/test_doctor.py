"""`minijenkin doctor` run as an operator runs it, against real databases."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from minijenkin import sql
from minijenkin.crypto import Keyring, generate_key
from tests.support.factories import claim, create_repo, create_run, finish, register_worker
from tests.support.workers import scrubbed_environment

MIGRATIONS = len(sql.migration_files())


def _doctor(database_url: str | None, data_dir: Path, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(data_dir), "COLUMNS": "200", **(env or {})}
    if database_url is not None:
        env["MINIJENKIN_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "minijenkin", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def _attempt_with_log_clock(db: psycopg.Connection, worker_id: uuid.UUID, skew_seconds: float) -> None:
    """Record a finished attempt whose log lines a worker stamped with a clock off by skew_seconds."""
    run_id = create_run(db, create_repo(db))
    [job] = [job for job in claim(db, worker_id) if job["run_id"] == run_id]
    now = db.execute("SELECT now() AS now").fetchone()["now"]
    started, finished = now - dt.timedelta(seconds=60), now - dt.timedelta(seconds=50)
    skew = dt.timedelta(seconds=skew_seconds)
    assert finish(db, job) == "finished"
    db.execute("UPDATE job_attempts SET started_at = %s, finished_at = %s WHERE job_id = %s",
               (started, finished, job["job_id"]))
    day = started.astimezone(dt.UTC).date()
    db.execute("SELECT mj_logs_ensure_partitions_v1(%s, %s)", (day, day))
    db.execute("INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line) "
               "VALUES (%s, 1, 1, %s, 3, %s, 'start'), (%s, 1, 2, %s, 1, %s, 'output')",
               (job["job_id"], day, started + dt.timedelta(seconds=1) + skew,
                job["job_id"], day, finished - dt.timedelta(seconds=1) + skew))


def test_doctor_without_database_names_the_fix(tmp_path: Path) -> None:
    result = _doctor(None, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result)
    assert lines[0].startswith("FAIL database no database: set MINIJENKIN_DATABASE_URL")
    assert lines[1] == ("fix: set MINIJENKIN_DATABASE_URL to a reachable PostgreSQL 15+ server, "
                        "or start `minijenkin up`, which runs an embedded one; if `minijenkin up` "
                        "already runs with another MINIJENKIN_DATA_DIR, set the same value here")
    assert lines[2].startswith("ok disk ")
    assert lines[-1] == "1 check failed"


def test_doctor_unreachable_server_fails(tmp_path: Path) -> None:
    result = _doctor("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", tmp_path)

    assert result.returncode == 1
    assert _lines(result)[0].startswith("FAIL database cannot connect to the database:")


def test_doctor_empty_database_needs_migrate(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")

    result = _doctor(database_url, tmp_path)

    assert result.returncode == 1
    lines = _lines(result)
    assert lines[0].startswith("ok database PostgreSQL 1")
    assert lines[1].startswith("ok clock this host's clock is ")
    assert lines[2] == "FAIL migrations the database has no Mini-Jenkin schema"
    assert lines[3] == "fix: run `minijenkin migrate` (or start `minijenkin up`)"
    assert [line for line in lines if line.split()[1:2] == ["workers"]] == []


def test_doctor_reports_pending_migration_and_no_worker(db: psycopg.Connection, database_url: str,
                                                        tmp_path: Path) -> None:
    last = sql.migration_files()[-1][0]
    db.execute("DELETE FROM schema_migrations WHERE name = %s", (last,))

    result = _doctor(database_url, tmp_path)

    assert result.returncode == 1
    lines = _lines(result)
    assert f"FAIL migrations {MIGRATIONS - 1} of {MIGRATIONS} migrations applied; pending: {last}" in lines
    assert "fix: run `minijenkin migrate` (safe while the API and workers run)" in lines
    assert "FAIL workers no live worker: queued jobs will not run" in lines
    assert lines[-1] == "2 checks failed"


def test_doctor_passes_with_live_worker(db: psycopg.Connection, database_url: str,
                                        tmp_path: Path) -> None:
    worker_id = register_worker(db)
    _attempt_with_log_clock(db, worker_id, skew_seconds=0.0)

    result = _doctor(database_url, tmp_path)

    assert result.returncode == 0, result.stdout
    lines = _lines(result)
    assert f"ok migrations {MIGRATIONS} of {MIGRATIONS} migrations applied, functions up to date" in lines
    assert "ok workers 1 live worker, 4 job slots, on host" in lines
    assert "ok clock worker test on host: clock offset between -1.000 s and +1.000 s" in lines
    assert lines[-1] == "all checks passed"


def test_doctor_warns_about_root_steps(db: psycopg.Connection, database_url: str,
                                       tmp_path: Path) -> None:
    as_root = _doctor(database_url, tmp_path)
    with_user = _doctor(database_url, tmp_path, env={"MINIJENKIN_WORKER_RUN_AS": "nobody"})

    if os.geteuid() == 0:
        assert "warn step user a worker started here runs steps as root" in _lines(as_root)
        assert any(line.startswith("fix: set MINIJENKIN_WORKER_RUN_AS to an unprivileged user")
                   for line in _lines(as_root))
    else:
        assert "ok step user steps run as this host's non-root worker user" in _lines(as_root)
    assert "ok step user steps run as nobody" in _lines(with_user)


def test_doctor_fails_on_worker_clock_skew(db: psycopg.Connection, database_url: str,
                                           tmp_path: Path) -> None:
    worker_id = register_worker(db)
    _attempt_with_log_clock(db, worker_id, skew_seconds=30.0)

    result = _doctor(database_url, tmp_path, "--max-clock-skew", "5")

    assert result.returncode == 1
    lines = _lines(result)
    assert ("FAIL clock worker test on host: clock offset between +29.000 s and +31.000 s "
            "(limit ±5 s)") in lines
    assert ("fix: synchronise the clock of host with NTP; its log timestamps disagree with "
            "the database") in lines
    assert lines[-1] == "1 check failed"


def test_doctor_worker_without_jobs_is_unmeasured(db: psycopg.Connection, database_url: str,
                                                  tmp_path: Path) -> None:
    register_worker(db)

    result = _doctor(database_url, tmp_path)

    assert result.returncode == 0, result.stdout
    assert ("ok clock worker test on host: no finished job in the last 24 h to measure its clock by"
            in _lines(result))


def test_doctor_warns_about_silent_worker(db: psycopg.Connection, database_url: str,
                                          tmp_path: Path) -> None:
    register_worker(db)
    silent = register_worker(db)
    db.execute("UPDATE workers SET heartbeat_at = now() - interval '120 seconds', name = 'old' "
               "WHERE id = %s", (silent,))

    result = _doctor(database_url, tmp_path)

    assert result.returncode == 0, result.stdout
    lines = _lines(result)
    prefix = "warn workers worker old on host has not sent a heartbeat for "
    [warning] = [line for line in lines if line.startswith(prefix)]
    assert warning.endswith(" s (lease 30 s)")
    assert 120 <= int(warning[len(prefix):].split()[0]) < 180
    assert "ok workers 1 live worker, 4 job slots, on host" in lines


def test_doctor_fails_on_low_disk_space(db: psycopg.Connection, database_url: str,
                                        tmp_path: Path) -> None:
    register_worker(db)

    result = _doctor(database_url, tmp_path, "--min-free", str(2**40))

    assert result.returncode == 1
    lines = _lines(result)
    [disk] = [line for line in lines if line.split()[1:2] == ["disk"]]
    assert disk.startswith("FAIL disk ")
    assert disk.endswith(f"MiB on the file system of {tmp_path}")
    assert any(line.startswith(f"fix: free at least {2**40} MiB there") for line in lines)


def test_doctor_fails_on_host_clock_skew(db: psycopg.Connection, database_url: str,
                                         tmp_path: Path) -> None:
    register_worker(db)
    # Only the doctor process reads a clock 30 s ahead, as on a host without NTP.
    shifted = tmp_path / "shifted-clock"
    shifted.mkdir()
    (shifted / "sitecustomize.py").write_text(
        "import time\n_real_time = time.time\ntime.time = lambda: _real_time() + 30.0\n")
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(tmp_path), "COLUMNS": "200",
           "MINIJENKIN_DATABASE_URL": database_url, "PYTHONPATH": str(shifted)}

    result = subprocess.run([sys.executable, "-m", "minijenkin", "doctor"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1, result.stdout
    lines = _lines(result)
    [clock] = [line for line in lines if line.startswith("FAIL clock this host's clock is ")]
    offset = float(clock.split()[6])
    assert 29.9 < offset < 30.1
    assert clock.split()[7:12] == ["s", "ahead", "of", "the", "database"]
    assert any(line.startswith("fix: synchronise this host's clock with NTP") for line in lines)
    assert lines[-1] == "1 check failed"


def test_doctor_fails_without_git(tmp_path: Path) -> None:
    env = {**scrubbed_environment(), "MINIJENKIN_DATA_DIR": str(tmp_path), "COLUMNS": "200",
           "PATH": str(tmp_path / "empty-bin")}

    result = subprocess.run([sys.executable, "-m", "minijenkin", "doctor"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 1
    lines = _lines(result)
    assert "FAIL tools not found on PATH: git, bash" in lines
    assert ("fix: install git and bash (e.g. apt-get install git bash) on every worker host"
            in lines)
    assert lines[-1] == "2 checks failed"


def _store_secret(db: psycopg.Connection, keyring: Keyring) -> None:
    repo_id = create_repo(db, name="acme/api")
    sealed = keyring.encrypt("deploy-token-value", purpose="secret")
    db.execute("INSERT INTO secrets (repo_id, name, value_encrypted) VALUES (%s, 'TOKEN', %s)",
               (repo_id, sealed))


def test_doctor_accepts_matching_secret_key(db: psycopg.Connection, database_url: str,
                                            tmp_path: Path) -> None:
    register_worker(db)
    key = generate_key()
    keyring = Keyring.from_text(key)
    _store_secret(db, keyring)

    result = _doctor(database_url, tmp_path, env={"MINIJENKIN_SECRET_KEY": key})

    assert result.returncode == 0, result.stdout
    assert (f"ok secrets all 1 stored values sealed with key id {keyring.active_id} "
            "(from MINIJENKIN_SECRET_KEY)") in _lines(result)


def test_doctor_fails_on_other_secret_key(db: psycopg.Connection, database_url: str,
                                          tmp_path: Path) -> None:
    register_worker(db)
    stored = Keyring.from_text(generate_key())
    _store_secret(db, stored)
    local = generate_key()

    result = _doctor(database_url, tmp_path, env={"MINIJENKIN_SECRET_KEY": local})

    assert result.returncode == 1
    lines = _lines(result)
    local_id = Keyring.from_text(local).active_id
    assert (f"FAIL secrets 1 of 1 stored values are sealed with key id {stored.active_id}, "
            f"which this host lacks (keys from MINIJENKIN_SECRET_KEY: {local_id})") in lines
    assert ("fix: give every API and worker process the same MINIJENKIN_SECRET_KEY; while "
            "rotating, list the new key first and the old one after it") in lines
    assert not (tmp_path / "secret.key").exists()


def test_doctor_warns_during_key_rotation(db: psycopg.Connection, database_url: str,
                                          tmp_path: Path) -> None:
    register_worker(db)
    old = generate_key()
    _store_secret(db, Keyring.from_text(old))

    result = _doctor(database_url, tmp_path, env={"MINIJENKIN_SECRET_KEY": f"{generate_key()},{old}"})

    assert result.returncode == 0, result.stdout
    lines = _lines(result)
    assert "warn secrets 1 of 1 stored values are sealed with an older key" in lines
    assert "fix: finish the key rotation with `minijenkin secret rotate-key`" in lines
