"""The worker's log shipper against PostgreSQL: direct COPY and the staged fallback."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from minijenkin.worker import shipper as shipper_module
from minijenkin.worker.shipper import LogShipper, utc_timestamp
from tests.support import factories
from tests.support.logs import store_lines, stored_lines


def _running_jobs(db: psycopg.Connection, count: int) -> list[dict[str, Any]]:
    repo_id = factories.create_repo(db)
    worker_id = factories.register_worker(db)
    for _ in range(count):
        factories.create_run(db, repo_id)
    return factories.claim(db, worker_id)


class _Shipping:
    """A LogShipper whose staged-path batches are counted."""

    def __init__(self, database_url: str) -> None:
        self.shipper = LogShipper(database_url, application_name="test-log-shipper")
        self.staged_batches = 0
        store_staged = self.shipper._store_staged

        async def counting_store_staged(*args: Any, **kwargs: Any) -> list[dict[str, int]]:
            self.staged_batches += 1
            return await store_staged(*args, **kwargs)

        self.shipper._store_staged = counting_store_staged  # type: ignore[method-assign]


def _ship(database_url: str, batches: list[tuple[dict[str, Any], uuid.UUID, list[tuple[int, str]]]],
          ) -> _Shipping:
    """Append each (job, lease token, [(seq, text)]) to one shipper, then close it."""
    shipping = _Shipping(database_url)

    async def run() -> None:
        await shipping.shipper.start()
        for job, lease_token, lines in batches:
            ts = utc_timestamp()
            await shipping.shipper.append_many(
                job_id=job["job_id"], attempt=job["attempt"], lease_token=lease_token,
                lines=[(seq, 1, ts, text) for seq, text in lines])
        await shipping.shipper.close()

    asyncio.run(run())
    return shipping


def _numbered(first: int, last: int, text: str = "line") -> list[tuple[int, str]]:
    return [(seq, f"{text} {seq}") for seq in range(first, last + 1)]


@pytest.fixture
def direct_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let batches of any size take the direct path."""
    monkeypatch.setattr(shipper_module, "DIRECT_COPY_MIN_BYTES", 0)


@pytest.mark.usefixtures("direct_small_batches")
def test_shipper_copies_new_lines_directly(database_url: str, db: psycopg.Connection) -> None:
    first, second = _running_jobs(db, 2)

    shipping = _ship(database_url, [
        (first, first["lease_token"], _numbered(1, 3, "a\tb\\c")),
        (second, second["lease_token"], _numbered(1, 2)),
        (first, first["lease_token"], _numbered(4, 5, "a\tb\\c")),
    ])

    assert shipping.staged_batches == 0
    assert shipping.shipper.lines_stored == 7
    assert shipping.shipper.lines_rejected == 0
    assert stored_lines(db, first["job_id"]) == _numbered(1, 5, "a\tb\\c")
    assert stored_lines(db, second["job_id"]) == _numbered(1, 2)
    queued = db.execute("SELECT job_id, min(first_seq) AS first_seq, max(last_seq) AS last_seq "
                        "FROM job_log_index_queue GROUP BY job_id ORDER BY job_id").fetchall()
    assert queued == sorted([{"job_id": first["job_id"], "first_seq": 1, "last_seq": 5},
                             {"job_id": second["job_id"], "first_seq": 1, "last_seq": 2}],
                            key=lambda row: row["job_id"])


def test_shipper_stages_small_batches(database_url: str, db: psycopg.Connection) -> None:
    [job] = _running_jobs(db, 1)

    shipping = _ship(database_url, [(job, job["lease_token"], _numbered(1, 3))])

    assert shipping.staged_batches == 1
    assert shipping.shipper.lines_stored == 3
    assert stored_lines(db, job["job_id"]) == _numbered(1, 3)


def test_shipper_copies_large_batch_directly(database_url: str, db: psycopg.Connection) -> None:
    [job] = _running_jobs(db, 1)
    # About 100 KiB, above DIRECT_COPY_MIN_BYTES.
    lines = _numbered(1, 2000, "compiling module of the build")

    shipping = _ship(database_url, [(job, job["lease_token"], lines)])

    assert shipping.staged_batches == 0
    assert shipping.shipper.lines_stored == 2000
    assert stored_lines(db, job["job_id"]) == lines


@pytest.mark.usefixtures("direct_small_batches")
def test_shipper_stores_resent_lines_once(database_url: str, db: psycopg.Connection) -> None:
    [job] = _running_jobs(db, 1)
    store_lines(db, job, [text for _, text in _numbered(1, 5)])

    shipping = _ship(database_url, [(job, job["lease_token"], _numbered(1, 10))])

    assert shipping.staged_batches == 1
    assert shipping.shipper.lines_stored == 5
    assert shipping.shipper.lines_rejected == 5
    assert stored_lines(db, job["job_id"]) == _numbered(1, 10)


@pytest.mark.usefixtures("direct_small_batches")
def test_shipper_drops_lines_of_revoked_lease(database_url: str, db: psycopg.Connection) -> None:
    [job] = _running_jobs(db, 1)

    shipping = _ship(database_url, [(job, uuid.uuid4(), _numbered(1, 4))])

    assert shipping.staged_batches == 1
    assert shipping.shipper.lines_stored == 0
    assert shipping.shipper.lines_rejected == 4
    assert stored_lines(db, job["job_id"]) == []


@pytest.mark.usefixtures("direct_small_batches")
def test_shipper_splits_batches_at_byte_limit(
    database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # About 50 bytes per row: each batch takes a few rows, so the segments of
    # one append are cut into several batches, at least 10 for 40 rows.
    monkeypatch.setattr(shipper_module, "BATCH_MAX_BYTES", 200)
    [job] = _running_jobs(db, 1)

    shipping = _ship(database_url, [(job, job["lease_token"], _numbered(1, 30)),
                                    (job, job["lease_token"], _numbered(31, 40))])

    batches = db.execute("SELECT count(*) AS n FROM job_log_index_queue").fetchone()["n"]
    assert shipping.staged_batches == 0
    assert shipping.shipper.lines_stored == 40
    assert stored_lines(db, job["job_id"]) == _numbered(1, 40)
    assert batches >= 10
