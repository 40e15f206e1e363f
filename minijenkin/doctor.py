"""Health checks of an installation, run by `minijenkin doctor`.

Each check returns a `Finding`: its status, what was measured and, when it
is not fine, what to do about it. The checks only read: they never migrate,
start or stop anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import psycopg

from minijenkin import sql
from minijenkin.config import Settings
from minijenkin.crypto import KEY_FILE_NAME, Keyring, key_id
from minijenkin.db import connect
from minijenkin.db.migrate import MIN_SERVER_VERSION
from minijenkin.errors import ConfigurationError, DatabaseUnavailableError
from minijenkin.runtime import database_url
from minijenkin.sql import QUERIES
from minijenkin.text import noun, quantity

Status = Literal["ok", "warn", "fail"]

MAX_CLOCK_SKEW_SECONDS_DEFAULT = 2.0
MIN_FREE_MIB_DEFAULT = 1024
# Each worker's clock offset is bounded by the log timestamps of its latest
# attempts: at most this many per worker, from the last 24 hours.
CLOCK_WINDOW_SECONDS = 24 * 3600
CLOCK_ATTEMPT_LIMIT = 50


@dataclasses.dataclass(frozen=True)
class Finding:
    """Outcome of one check, with `fix` naming what to do when the status is not ok."""

    check: str
    status: Status
    detail: str
    fix: str | None = None


@dataclasses.dataclass(frozen=True)
class Limits:
    """Thresholds of the checks."""

    max_clock_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS_DEFAULT
    min_free_mib: int = MIN_FREE_MIB_DEFAULT


NO_SCHEMA = Finding("migrations", "fail", "the database has no Mini-Jenkin schema",
                    "run `minijenkin migrate` (or start `minijenkin up`)")


def run_checks(settings: Settings, limits: Limits) -> list[Finding]:
    """Run every check and return the findings in a fixed order.

    A database that cannot be reached fails its own check and skips the
    checks that need it. A database without the schema skips the worker
    checks and the secret key check. The disk and tool checks always run.
    """
    findings: list[Finding] = []
    try:
        conninfo = database_url(settings)
        conn = connect(conninfo, application_name="minijenkin-doctor")
    except (ConfigurationError, DatabaseUnavailableError) as exc:
        findings.append(Finding(
            "database", "fail", str(exc),
            "set MINIJENKIN_DATABASE_URL to a reachable PostgreSQL 15+ server, or start "
            "`minijenkin up`, which runs an embedded one; if `minijenkin up` already runs "
            "with another MINIJENKIN_DATA_DIR, set the same value here"))
        findings.append(check_disk(settings.data_dir, limits))
        findings.append(check_tools())
        findings.append(check_step_user(settings))
        return findings

    with conn:
        findings.append(check_server_version(conn))
        findings.extend(check_clock_of_this_host(conn, limits))
        migrations = check_migrations(conn)
        findings.append(migrations)
        if migrations is not NO_SCHEMA:
            findings.extend(check_workers(conn, settings, limits))
            findings.append(check_secret_key(conn, settings))
    findings.append(check_disk(settings.data_dir, limits))
    findings.append(check_tools())
    findings.append(check_step_user(settings))
    return findings


def check_server_version(conn: psycopg.Connection) -> Finding:
    row = conn.execute(QUERIES["doctor_clock_read"]).fetchone()
    version = row["server_version"]
    if row["server_version_num"] < MIN_SERVER_VERSION:
        return Finding("database", "fail", f"PostgreSQL {version} is too old",
                       "upgrade the server to PostgreSQL 15 or newer (pg_upgrade, or dump and "
                       "restore)")
    return Finding("database", "ok", f"PostgreSQL {version}")


def measure_clock_offset(conn: psycopg.Connection) -> tuple[float, float]:
    """Return (offset, uncertainty) in seconds of this host's clock from the database's.

    The database clock is read between two local readings. The offset is
    taken against their midpoint, so the uncertainty is half the round trip.
    The best of three readings is kept.
    """
    best: tuple[float, float] | None = None
    for _ in range(3):
        before = time.time()
        database_now = conn.execute(QUERIES["doctor_clock_read"]).fetchone()["now_epoch"]
        after = time.time()
        reading = ((before + after) / 2 - database_now, (after - before) / 2)
        if best is None or reading[1] < best[1]:
            best = reading
    assert best is not None
    return best


def check_clock_of_this_host(conn: psycopg.Connection, limits: Limits) -> list[Finding]:
    offset, uncertainty = measure_clock_offset(conn)
    detail = f"this host's clock is {_describe_offset(offset)} (±{uncertainty * 1000:.0f} ms)"
    if abs(offset) - uncertainty > limits.max_clock_skew_seconds:
        return [Finding("clock", "fail", detail,
                        "synchronise this host's clock with NTP (chrony or systemd-timesyncd); "
                        f"more than {limits.max_clock_skew_seconds:g} s of skew makes log "
                        "timestamps disagree with run and job times")]
    return [Finding("clock", "ok", detail)]


def check_migrations(conn: psycopg.Connection) -> Finding:
    present = conn.execute(QUERIES["doctor_migrations_table_exists"]).fetchone()["present"]
    if not present:
        return NO_SCHEMA
    recorded = {row["name"]: row["checksum"] for row in conn.execute(QUERIES["doctor_migrations_list"])}
    return compare_migrations(recorded, _packaged_files())


def _packaged_files() -> dict[str, str]:
    files = {name: _checksum(text) for name, text in sql.migration_files()}
    files.update({f"functions/{name}": _checksum(text) for name, text in sql.function_files()})
    return files


def _checksum(text: str) -> str:
    # Keep in step with minijenkin.db.migrate, which records these checksums.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compare_migrations(recorded: dict[str, str], packaged: dict[str, str]) -> Finding:
    """Compare the schema_migrations rows with the SQL files this installation ships."""
    pending = sorted(name for name in packaged if name not in recorded)
    changed = sorted(name for name in packaged
                     if name in recorded and recorded[name] != packaged[name])
    unknown = sorted(name for name in recorded if name not in packaged)
    versioned = [name for name in packaged if not name.startswith("functions/")]
    applied = len([name for name in versioned if name in recorded])

    if unknown:
        return Finding("migrations", "fail",
                       f"the database has {quantity(len(unknown), 'migration')} that this installation "
                       f"does not ship: {', '.join(unknown)}",
                       "upgrade this installation to the version that migrated the database")
    changed_versioned = [name for name in changed if not name.startswith("functions/")]
    if changed_versioned:
        return Finding("migrations", "fail",
                       f"applied {noun(len(changed_versioned), 'migration differs', 'migrations differ')} "
                       "from the shipped files: "
                       f"{', '.join(changed_versioned)}",
                       "install the release that applied them; never edit an applied migration")
    stale = pending + changed
    if stale:
        return Finding("migrations", "fail",
                       f"{applied} of {len(versioned)} migrations applied; pending: {', '.join(stale)}",
                       "run `minijenkin migrate` (safe while the API and workers run)")
    return Finding("migrations", "ok", f"{applied} of {len(versioned)} migrations applied, "
                                       "functions up to date")


def check_workers(conn: psycopg.Connection, settings: Settings, limits: Limits) -> list[Finding]:
    workers = conn.execute(QUERIES["doctor_workers_list"]).fetchall()
    lease = settings.worker_lease_seconds
    live = [row for row in workers if row["heartbeat_age_seconds"] <= lease]
    silent = [row for row in workers if row["heartbeat_age_seconds"] > lease]

    findings: list[Finding] = []
    if live:
        slots = sum(row["concurrency"] for row in live)
        hosts = sorted({row["hostname"] for row in live})
        detail = (f"{quantity(len(live), 'live worker')}, {quantity(slots, 'job slot')}, "
                  f"on {', '.join(hosts)}")
        findings.append(Finding("workers", "ok", detail))
    else:
        findings.append(Finding("workers", "fail", "no live worker: queued jobs will not run",
                                "start one with `minijenkin worker` (or `minijenkin up`, which "
                                "starts local workers)"))
    for row in silent:
        findings.append(Finding(
            "workers", "warn",
            f"worker {row['name']} on {row['hostname']} has not sent a heartbeat for "
            f"{row['heartbeat_age_seconds']:.0f} s (lease {lease:g} s)",
            "check that process and its database connection; the reaper retries its jobs "
            "once an API process runs maintenance"))

    findings.extend(check_worker_clocks(conn, live, limits))
    return findings


def check_worker_clocks(conn: psycopg.Connection, live: Iterable[dict[str, Any]],
                        limits: Limits) -> list[Finding]:
    """Bound each live worker's clock offset from the log timestamps of its recent attempts.

    A worker stamps log lines with its own clock, while attempt start and end
    are stamped by the database. So `first line - start` is an upper bound
    of the offset and `last output line - end` a lower bound. Skew is
    reported only when a bound proves it exceeds the limit.
    """
    by_id = {row["id"]: row for row in live}
    if not by_id:
        return []
    bounds = conn.execute(QUERIES["doctor_worker_clock_bounds"], {
        "worker_ids": list(by_id), "window_seconds": CLOCK_WINDOW_SECONDS,
        "attempt_limit": CLOCK_ATTEMPT_LIMIT}).fetchall()
    measured = {row["worker_id"]: row for row in bounds}

    findings = []
    limit = limits.max_clock_skew_seconds
    for worker_id, worker in by_id.items():
        name = f"worker {worker['name']} on {worker['hostname']}"
        row = measured.get(worker_id)
        if row is None:
            findings.append(Finding("clock", "ok", f"{name}: no finished job in the last 24 h to "
                                                   "measure its clock by"))
            continue
        upper, lower = row["upper_seconds"], row["lower_seconds"]
        detail = f"{name}: clock offset between {_seconds(lower)} and {_seconds(upper)}"
        if (lower is not None and lower > limit) or (upper is not None and upper < -limit):
            findings.append(Finding("clock", "fail", detail + f" (limit ±{limit:g} s)",
                                    f"synchronise the clock of {worker['hostname']} with NTP; "
                                    "its log timestamps disagree with the database"))
        else:
            findings.append(Finding("clock", "ok", detail))
    return findings


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:+.3f} s"


def _describe_offset(offset: float) -> str:
    if offset >= 0:
        return f"{offset:.3f} s ahead of the database"
    return f"{-offset:.3f} s behind the database"


def check_disk(data_dir: Path, limits: Limits) -> Finding:
    """Check the free space of the file system holding the data directory."""
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    free_mib = usage.free // (1024 * 1024)
    detail = (f"{free_mib} MiB free of {usage.total // (1024 * 1024)} MiB on the file system of "
              f"{data_dir}")
    if free_mib < limits.min_free_mib:
        return Finding("disk", "fail", detail,
                       f"free at least {limits.min_free_mib} MiB there (old workspaces, git "
                       "mirrors, or a lower MINIJENKIN_LOG_RETENTION_DAYS), or move "
                       "MINIJENKIN_DATA_DIR to a larger disk")
    return Finding("disk", "ok", detail)


def local_key_ids(settings: Settings) -> tuple[list[str], str]:
    """Return the ids of this host's secret keys, first the one that encrypts, and their source.

    Unlike the API, this never generates a key file.
    """
    if settings.secret_key:
        keyring = Keyring.from_text(settings.secret_key)
        return [key_id(key) for key in keyring.keys], "MINIJENKIN_SECRET_KEY"
    path = settings.data_dir / KEY_FILE_NAME
    if path.exists():
        keyring = Keyring.from_text(path.read_text())
        return [key_id(key) for key in keyring.keys], str(path)
    return [], f"neither MINIJENKIN_SECRET_KEY nor {path}"


def check_secret_key(conn: psycopg.Connection, settings: Settings) -> Finding:
    """Check that this host's secret keys can decrypt every stored secret.

    Every ciphertext names the id of the key that sealed it, so nothing is
    decrypted here. A host with another key can neither read a repository's
    secrets nor verify its webhooks.
    """
    fix = ("give every API and worker process the same MINIJENKIN_SECRET_KEY; while rotating, "
           "list the new key first and the old one after it")
    try:
        ids, source = local_key_ids(settings)
    except ConfigurationError as exc:
        return Finding("secrets", "fail", str(exc), fix)
    stored = {row["key_id"]: row["sealed_values"]
              for row in conn.execute(QUERIES["doctor_secret_key_ids"])}
    total = sum(stored.values())
    if not stored:
        return Finding("secrets", "ok", "no encrypted values stored yet")

    unknown = sorted(key for key in stored if key not in ids)
    if unknown:
        values = sum(stored[key] for key in unknown)
        have = ", ".join(ids) if ids else "none"
        return Finding("secrets", "fail",
                       f"{values} of {total} stored values are sealed with {noun(len(unknown), 'key id')} "
                       f"{', '.join(unknown)}, which this host lacks (keys from {source}: {have})", fix)
    older = sum(count for key, count in stored.items() if key != ids[0])
    if older:
        return Finding("secrets", "warn",
                       f"{older} of {total} stored values are sealed with an older key",
                       "finish the key rotation with `minijenkin secret rotate-key`")
    return Finding("secrets", "ok", f"all {total} stored values sealed with key id {ids[0]} "
                                    f"(from {source})")


# Workers clone with git and run every step with bash.
REQUIRED_TOOLS = ("git", "bash")


def check_tools() -> Finding:
    """Check that the programs a worker on this host needs are on PATH."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return Finding("tools", "fail", f"not found on PATH: {', '.join(missing)}",
                       f"install {' and '.join(missing)} (e.g. apt-get install {' '.join(missing)}) "
                       "on every worker host")
    return Finding("tools", "ok", "git and bash found")


def check_step_user(settings: Settings) -> Finding:
    """Warn when a worker on this host would run steps as root.

    Steps run as the worker's own user unless MINIJENKIN_WORKER_RUN_AS names
    another; as root they can read the data directory and the secret key.
    """
    if settings.worker_run_as:
        return Finding("step user", "ok", f"steps run as {settings.worker_run_as}")
    if os.geteuid() == 0:
        return Finding("step user", "warn", "a worker started here runs steps as root",
                       "set MINIJENKIN_WORKER_RUN_AS to an unprivileged user (e.g. one made "
                       "with `useradd --system minijenkin-steps`), or run the worker as one")
    return Finding("step user", "ok", "steps run as this host's non-root worker user")
