"""Full-text search over stored log lines.

The search indexer (a maintenance loop) turns stored lines into tsvector
chunks of consecutive lines (sql/functions/45_log_search.sql). A search
finds and ranks chunks with the GIN index, then returns the lines inside the
best chunks that match the whole query, each with a highlighted snippet
from ts_headline. A line becomes searchable at the indexer's next tick.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from dataclasses import dataclass

import psycopg

from minijenkin import repos
from minijenkin.logs.render import ESCAPE_SEQUENCE, plain_text
from minijenkin.logs.store import STREAM_NAMES
from minijenkin.sql import QUERIES

# ts_headline marks matches with these private-use characters, so that the
# line's own text can be escaped before the marks become HTML tags.
_START = "\ue000"
_STOP = "\ue001"
# Keep in step with mj_logs_search_text(): the part of a line the parser
# reads, with `<`, `>` and escape sequences replaced by spaces.
SEARCH_TEXT_CHARS = 2048
_BRACKETS_TO_SPACES = str.maketrans("<>", "  ")
# Matching chunks ranked per search: the newest ones win beyond this, which
# bounds the cost of ranking a word that occurs in millions of lines.
CANDIDATE_CHUNKS = 1000
# Chunks containing every searched word that a search checks against its
# exact query, newest first. A phrase is checked by reading each chunk's
# document, so this bounds the work of a rare phrase of common words. Older
# chunks are then left unsearched, and the result is marked truncated.
SCAN_CHUNKS = 5000
# One indexer call covers about this many lines (at least one queued
# batch); a tick repeats calls for at most INDEX_TICK_SECONDS.
INDEX_LINES_PER_CALL = 50_000
INDEX_TICK_SECONDS = 1.5


@dataclass(frozen=True)
class SearchHit:
    job_id: int
    attempt: int
    run_id: int
    repo: str
    ref: str
    job_key: str
    job_name: str
    seq: int
    stream: str
    ts: dt.datetime
    # Relevance of the chunk of lines the hit is in (hits are ordered by it),
    # and of the line alone (the tie-breaker within a chunk).
    rank: float
    line_rank: float
    snippet: str
    snippet_html: str


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    # True when a bound (SCAN_CHUNKS, CANDIDATE_CHUNKS) was reached, so older
    # chunks were not searched or not ranked and may hold more matches.
    truncated: bool


def _restore_brackets(segments: list[str], line: str) -> list[str]:
    """Put the line's own `<` and `>` back into the headline's segments.

    ts_headline returns an excerpt of the text it was given, which is the
    line with brackets and escape sequences turned into spaces. The same
    positions of the original line hold the real characters.
    """
    searched = line[:SEARCH_TEXT_CHARS].translate(_BRACKETS_TO_SPACES)
    if "\x1b" in searched:
        searched = ESCAPE_SEQUENCE.sub(lambda match: " " * len(match.group(0)), searched)
    start = searched.find("".join(segments))
    if start < 0:
        return segments
    restored = []
    for segment in segments:
        restored.append(line[start:start + len(segment)])
        start += len(segment)
    return restored


def _highlight(headline: str, line: str) -> tuple[str, str]:
    """Return (plain snippet, escaped HTML snippet with <mark> around matches)."""
    # Splitting at both marks alternates unmatched and matched text.
    segments = _restore_brackets(headline.replace(_STOP, _START).split(_START), line)
    parts: list[str] = []
    plain: list[str] = []
    for index, piece in enumerate(segments):
        text = plain_text(piece)
        plain.append(text)
        escaped = html.escape(text, quote=True)
        parts.append(f"<mark>{escaped}</mark>" if index % 2 == 1 else escaped)
    return "".join(plain), "".join(parts)


async def search_logs(
    conn: psycopg.AsyncConnection,
    *,
    query: str,
    repo: str | None = None,
    branch: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 50,
) -> SearchResult:
    """Find up to `limit` matching lines, best first; NotFoundError for an unknown `repo`.

    Only the newest chunks are searched (SCAN_CHUNKS) and ranked
    (CANDIDATE_CHUNKS). The result's `truncated` is true when older ones
    were left out.
    """
    repo_id = None
    if repo is not None:
        repo_id = (await repos.get_repo_by_name(conn, repo))["id"]
    ref = f"refs/heads/{branch}" if branch else None
    cursor = await conn.execute(QUERIES["logs_search"], {
        "q": query, "repo_id": repo_id, "ref": ref, "since": since, "limit": limit,
        "candidates": max(CANDIDATE_CHUNKS, limit), "scan_chunks": max(SCAN_CHUNKS, limit),
    })
    rows = await cursor.fetchall()
    hits = []
    for row in rows:
        if row["job_id"] is None:
            continue  # the single row of a search without hits
        snippet, snippet_html = _highlight(row["headline"], row["line"])
        hits.append(SearchHit(
            job_id=row["job_id"], attempt=row["attempt"], run_id=row["run_id"],
            repo=row["repo_name"], ref=row["ref"], job_key=row["job_key"], job_name=row["job_name"],
            seq=row["seq"], stream=STREAM_NAMES.get(row["stream"], "stdout"), ts=row["ts"],
            rank=round(float(row["chunk_rank"]), 6), line_rank=round(float(row["line_rank"]), 6),
            snippet=snippet, snippet_html=snippet_html,
        ))
    return SearchResult(hits=hits, truncated=bool(rows and rows[0]["truncated"]))


async def index_pending(conn: psycopg.AsyncConnection) -> tuple[int, int, bool]:
    """Index queued log batches until none is left or INDEX_TICK_SECONDS passed.

    Returns the (attempts, chunks) indexed and whether batches may remain.
    Bounding the work keeps each indexer transaction short whatever the
    backlog.
    """
    deadline = time.monotonic() + INDEX_TICK_SECONDS
    attempts = chunks = 0
    while True:
        cursor = await conn.execute(QUERIES["logs_index"], {"max_lines": INDEX_LINES_PER_CALL})
        row = await cursor.fetchone()
        if row is None or not row["attempts"]:
            return attempts, chunks, False
        attempts += int(row["attempts"])
        chunks += int(row["chunks"])
        if time.monotonic() >= deadline:
            return attempts, chunks, True
