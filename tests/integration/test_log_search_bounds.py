"""Log search: the text that is indexed, the index-only prefilter, the scan and candidate limits."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from minijenkin.logs.render import ESCAPE_SEQUENCE
from minijenkin.sql import QUERIES
from tests.support import factories
from tests.support.logs import store_lines

CHUNK_LINES = 64


@pytest.mark.parametrize(("query", "expected"), [
    ("disk full", "'disk' & 'full'"),
    ('"disk full"', "'disk' & 'full'"),
    ('"no space left" -retry', "'no' & 'space' & 'left'"),
    ('"disk full" or quota', "'disk' & 'full' | 'quota'"),
    ("it's", "'it' & 's'"),
    ("build:*", "'build'"),
])
def test_search_prefilter_replaces_phrases(db: psycopg.Connection, query: str,
                                           expected: str) -> None:
    row = db.execute("SELECT mj_logs_search_prefilter(websearch_to_tsquery('simple', %s))::text "
                     "AS prefilter", (query,)).fetchone()

    assert row["prefilter"] == expected


def test_search_prefilter_keeps_quoted_operators(db: psycopg.Connection) -> None:
    # A lexeme is quoted in a tsquery's text form; "<->" inside one is text.
    row = db.execute("SELECT mj_logs_search_prefilter($$'a<->b' <-> 'c'$$::tsquery)::text "
                     "AS prefilter").fetchone()

    assert row["prefilter"] == "'a<->b' & 'c'"


def test_search_prefilter_without_positive_word(db: psycopg.Connection) -> None:
    row = db.execute("SELECT mj_logs_search_prefilter(websearch_to_tsquery('simple', '-disk')) "
                     "AS prefilter").fetchone()

    assert row["prefilter"] is None


def _job_with_chunks(db: psycopg.Connection) -> dict[str, Any]:
    """A job with four chunks, stored one batch (one timestamp) each, oldest first.

    Only chunk 0 contains the phrase "disk full"; chunks 1 to 3 contain both
    words apart.
    """
    repo_id = factories.create_repo(db)
    worker_id = factories.register_worker(db)
    factories.create_run(db, repo_id)
    [job] = factories.claim(db, worker_id)
    for chunk in range(4):
        text = "error: disk full" if chunk == 0 else "full scan of disk 3"
        lines = [text] + [f"compiling unit {n}" for n in range(CHUNK_LINES - 1)]
        store_lines(db, job, lines, first_seq=chunk * CHUNK_LINES + 1)
    db.execute("SELECT mj_logs_index_v1(100000)")
    return job


def _search(db: psycopg.Connection, query: str, *, scan_chunks: int,
            candidates: int = 1000) -> tuple[list[tuple[int, int]], bool]:
    rows = db.execute(QUERIES["logs_search"], {
        "q": query, "repo_id": None, "ref": None, "since": None, "limit": 50,
        "candidates": candidates, "scan_chunks": scan_chunks}).fetchall()
    hits = [(row["job_id"], row["seq"]) for row in rows if row["job_id"] is not None]
    return hits, rows[0]["truncated"]


def test_search_finds_phrase_within_scan_bound(db: psycopg.Connection) -> None:
    job = _job_with_chunks(db)

    hits, truncated = _search(db, '"disk full"', scan_chunks=5)

    assert hits == [(job["job_id"], 1)]
    assert truncated is False


def test_search_scan_bound_leaves_older_chunks_out(db: psycopg.Connection) -> None:
    _job_with_chunks(db)

    hits, truncated = _search(db, '"disk full"', scan_chunks=3)

    # The newest three chunks contain both words but not the phrase.
    assert hits == []
    assert truncated is True


def test_search_candidate_bound_ranks_newest_chunks(db: psycopg.Connection) -> None:
    job = _job_with_chunks(db)

    hits, truncated = _search(db, "disk", scan_chunks=10, candidates=2)

    assert sorted(hits) == [(job["job_id"], 2 * CHUNK_LINES + 1), (job["job_id"], 3 * CHUNK_LINES + 1)]
    assert truncated is True


def test_search_without_positive_word_matches_nothing(db: psycopg.Connection) -> None:
    _job_with_chunks(db)

    hits, truncated = _search(db, "-disk", scan_chunks=10)

    assert hits == []
    assert truncated is False


def test_search_text_blanks_escape_sequences(db: psycopg.Connection) -> None:
    line = "\x1b[1;31merror\x1b[0m: <b> \x1b]0;title\x07done \x1b[31"
    row = db.execute("SELECT mj_logs_search_text(%s) AS text, "
                     "mj_logs_search_vector(%s)::text AS vector", (line, line)).fetchone()

    # Each sequence becomes as many spaces as it has characters; the
    # unfinished one at the end loses only its ESC and '['.
    assert row["text"] == "       error    :  b            done   31"
    assert row["text"] == _python_search_text(line)
    assert row["vector"] == "'31':4 'b':2 'done':3 'error':1"


def _python_search_text(line: str) -> str:
    """The search text as logs/search.py maps snippets back onto lines."""
    text = line.translate(str.maketrans("<>", "  "))
    return ESCAPE_SEQUENCE.sub(lambda match: " " * len(match.group(0)), text)
