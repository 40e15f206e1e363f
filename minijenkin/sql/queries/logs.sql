-- name: log_attempt_day
-- The partition day of an attempt's log lines (the UTC day the attempt started) and its outcome.
SELECT (started_at AT TIME ZONE 'UTC')::date AS day, status, exit_code, reason, finished_at
FROM job_attempts
WHERE job_id = %(job_id)s::bigint AND attempt = %(attempt)s::integer;

-- name: log_find_next
-- Find the first line after seq `after` whose text contains `needle` (case-insensitive).
SELECT seq
FROM job_logs
WHERE job_id = %(job_id)s::bigint
  AND attempt = %(attempt)s::integer
  AND day = %(day)s::date
  AND seq > %(after)s::integer
  AND strpos(lower(line), lower(%(needle)s::text)) > 0
ORDER BY seq
LIMIT 1;

-- name: log_find_previous
-- Find the last line before seq `before` whose text contains `needle` (case-insensitive).
SELECT seq
FROM job_logs
WHERE job_id = %(job_id)s::bigint
  AND attempt = %(attempt)s::integer
  AND day = %(day)s::date
  AND seq < %(before)s::integer
  AND strpos(lower(line), lower(%(needle)s::text)) > 0
ORDER BY seq DESC
LIMIT 1;

-- name: log_job_state
-- The run, latest attempt number and status of a job, for a log viewer waiting on it.
SELECT run_id, attempt, status, reason
FROM jobs
WHERE id = %(job_id)s::bigint;

-- name: log_last_seq
-- The highest stored seq of one attempt (0 without lines), by a backward scan of the primary key.
SELECT coalesce(max(seq), 0) AS last_seq
FROM job_logs
WHERE job_id = %(job_id)s::bigint
  AND attempt = %(attempt)s::integer
  AND day = %(day)s::date;

-- name: log_lines_after
-- Read up to `limit` lines of one attempt after a sequence number, in order.
SELECT seq, stream, ts, line
FROM job_logs
WHERE job_id = %(job_id)s::bigint
  AND attempt = %(attempt)s::integer
  AND day = %(day)s::date
  AND seq > %(after)s::integer
ORDER BY seq
LIMIT %(limit)s::integer;

-- name: log_lines_tail
-- Read the last `limit` lines of one attempt that come before seq `before`, in order.
SELECT seq, stream, ts, line
FROM (
    SELECT seq, stream, ts, line
    FROM job_logs
    WHERE job_id = %(job_id)s::bigint
      AND attempt = %(attempt)s::integer
      AND day = %(day)s::date
      AND seq < %(before)s::bigint
    ORDER BY seq DESC
    LIMIT %(limit)s::integer
) newest
ORDER BY seq;

-- name: logs_index
-- Index queued log batches for full-text search (the search indexer's tick).
SELECT attempts, chunks FROM mj_logs_index_v1(%(max_lines)s::integer);

-- name: logs_search
-- Rank log chunks matching a web-search style query, then return their matching lines.
-- Chunks are selected with querytree(), the query without its negated words: "-word"
-- excludes lines, not whole chunks. A query with no positive word ('T') matches nothing.
-- The newest `candidates` matching chunks are ranked, so ranking cost stays bounded
-- however common the searched words are.
-- NOTE: a phrase ("a b") is checked against every chunk holding all its words, since
-- the GIN index stores no positions: about 1 s over 10M lines for two common words.
WITH lock_order AS (
    -- Parsed first, so job_logs is locked before job_log_search, the order
    -- partition upkeep uses; the other order can deadlock with it.
    SELECT 1 FROM job_logs WHERE false
),
query AS (
    SELECT websearch_to_tsquery('simple', %(q)s::text) AS tsq
),
candidates AS (
    -- The query is written out rather than read from the CTE above, so the
    -- planner can estimate how many chunks match. It then walks
    -- job_log_search_recent_idx for a word found in most chunks and uses the
    -- GIN index for a rare one.
    SELECT s.job_id, s.attempt, s.day, s.run_id, s.repo_id, s.ref, s.first_seq, s.last_seq,
           s.last_ts, s.document
    FROM job_log_search s
    WHERE querytree(websearch_to_tsquery('simple', %(q)s::text)) <> 'T'
      AND s.document @@ querytree(websearch_to_tsquery('simple', %(q)s::text))::tsquery
      AND (%(repo_id)s::bigint IS NULL OR s.repo_id = %(repo_id)s::bigint)
      AND (%(ref)s::text IS NULL OR s.ref = %(ref)s::text)
      AND (%(since)s::timestamptz IS NULL OR s.last_ts >= %(since)s::timestamptz)
    ORDER BY s.last_ts DESC
    LIMIT %(candidates)s::integer
),
ranked AS (
    SELECT c.job_id, c.attempt, c.day, c.run_id, c.repo_id, c.ref, c.first_seq, c.last_seq,
           ts_rank_cd(c.document, query.tsq) AS chunk_rank
    FROM candidates c, query
    ORDER BY chunk_rank DESC, c.last_ts DESC
    LIMIT %(limit)s::integer
)
SELECT r.job_id, r.attempt, r.run_id, r.repo_id, repo.name AS repo_name, r.ref, j.key AS job_key,
       j.name AS job_name, l.seq, l.stream, l.ts, l.line, r.chunk_rank, l.line_rank,
       ts_headline('simple', mj_logs_search_text(l.line), query.tsq,
                   'StartSel=' || chr(57344) || ', StopSel=' || chr(57345)
                   || ', MaxWords=30, MinWords=10') AS headline
FROM ranked r
CROSS JOIN query
JOIN jobs j ON j.id = r.job_id
JOIN repositories repo ON repo.id = r.repo_id
CROSS JOIN LATERAL (
    SELECT lines.seq, lines.stream, lines.ts, lines.line,
           ts_rank_cd(mj_logs_search_vector(lines.line), query.tsq) AS line_rank
    FROM job_logs lines
    WHERE lines.job_id = r.job_id
      AND lines.attempt = r.attempt
      AND lines.day = r.day
      AND lines.seq BETWEEN r.first_seq AND r.last_seq
      AND mj_logs_search_vector(lines.line) @@ query.tsq
) l
ORDER BY r.chunk_rank DESC, l.line_rank DESC, r.job_id DESC, l.seq
LIMIT %(limit)s::integer;
