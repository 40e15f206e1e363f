-- name: log_attempt_day
-- The partition day of an attempt's log lines (the UTC day the attempt started) and its outcome.
-- A running attempt has no job_attempts row yet: it is read from the job.
(SELECT (started_at AT TIME ZONE 'UTC')::date AS day, status, exit_code, reason, finished_at
 FROM job_attempts
 WHERE job_id = %(job_id)s::bigint AND attempt = %(attempt)s::integer)
UNION ALL
(SELECT (started_at AT TIME ZONE 'UTC')::date, 'running', NULL, NULL, NULL
 FROM jobs
 WHERE id = %(job_id)s::bigint AND attempt = %(attempt)s::integer AND status = 'running')
LIMIT 1;

-- name: log_find_next
-- Find the first line in seqs (after, until] whose text contains `needle` (case-insensitive);
-- `more` is true when the attempt has lines after `until`, where the caller continues.
SELECT (SELECT seq
        FROM job_logs
        WHERE job_id = %(job_id)s::bigint
          AND attempt = %(attempt)s::integer
          AND day = %(day)s::date
          AND seq > %(after)s::integer
          AND seq <= %(until)s::integer
          AND strpos(lower(line), lower(%(needle)s::text)) > 0
        ORDER BY seq
        LIMIT 1) AS seq,
       EXISTS (SELECT 1
               FROM job_logs
               WHERE job_id = %(job_id)s::bigint
                 AND attempt = %(attempt)s::integer
                 AND day = %(day)s::date
                 AND seq > %(until)s::integer) AS more;

-- name: log_find_previous
-- Find the last line in seqs [until, before) whose text contains `needle` (case-insensitive);
-- `more` is true when the attempt has lines before `until`.
SELECT (SELECT seq
        FROM job_logs
        WHERE job_id = %(job_id)s::bigint
          AND attempt = %(attempt)s::integer
          AND day = %(day)s::date
          AND seq < %(before)s::integer
          AND seq >= %(until)s::integer
          AND strpos(lower(line), lower(%(needle)s::text)) > 0
        ORDER BY seq DESC
        LIMIT 1) AS seq,
       EXISTS (SELECT 1
               FROM job_logs
               WHERE job_id = %(job_id)s::bigint
                 AND attempt = %(attempt)s::integer
                 AND day = %(day)s::date
                 AND seq < %(until)s::integer) AS more;

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
-- Rank the newest log chunks matching a web-search style query, then return their matching lines.
-- Work is bounded whatever the words: the GIN index finds the newest `scan_chunks` chunks
-- holding every positive word (mj_logs_search_prefilter(), no document read), the exact
-- query (phrases) is checked on those only, and the newest `candidates` that match are
-- ranked. "-word" excludes lines, not whole chunks. A query with no positive word matches
-- nothing. Returns one row per hit, or a single row of NULL hit columns when nothing
-- matches. `truncated` is true on every row when a bound was reached, so older chunks
-- were left unsearched or unranked.
WITH lock_order AS (
    -- Parsed first, so job_logs is locked before job_log_search, the order
    -- partition upkeep uses; the other order can deadlock with it.
    SELECT 1 FROM job_logs WHERE false
),
query AS (
    SELECT websearch_to_tsquery('simple', %(q)s::text) AS tsq
),
prefiltered AS MATERIALIZED (
    -- The query is written out rather than read from the CTE above, so the
    -- planner folds it into a constant and can estimate how many chunks
    -- match: it walks job_log_search_recent_idx for words found in most
    -- chunks and collects the GIN index's matches for rarer ones.
    SELECT s.job_id, s.attempt, s.day, s.run_id, s.repo_id, s.ref, s.first_seq, s.last_seq,
           s.last_ts, s.document
    FROM job_log_search s
    WHERE s.document @@ mj_logs_search_prefilter(websearch_to_tsquery('simple', %(q)s::text))
      AND (%(repo_id)s::bigint IS NULL OR s.repo_id = %(repo_id)s::bigint)
      AND (%(ref)s::text IS NULL OR s.ref = %(ref)s::text)
      AND (%(since)s::timestamptz IS NULL OR s.last_ts >= %(since)s::timestamptz)
    ORDER BY s.last_ts DESC
    LIMIT %(scan_chunks)s::integer
),
candidates AS MATERIALIZED (
    -- No ORDER BY: a sort would read all of `prefiltered` first. The CTE is
    -- read in the order it was written, newest first, and only as far as
    -- needed. Without a phrase the prefilter is the query itself, and the
    -- constant-folded first condition skips reading the documents again.
    SELECT p.job_id, p.attempt, p.day, p.run_id, p.repo_id, p.ref, p.first_seq, p.last_seq,
           p.last_ts, p.document
    FROM prefiltered p
    WHERE mj_logs_search_prefilter(websearch_to_tsquery('simple', %(q)s::text))
              = querytree(websearch_to_tsquery('simple', %(q)s::text))::tsquery
       OR p.document @@ querytree(websearch_to_tsquery('simple', %(q)s::text))::tsquery
    LIMIT %(candidates)s::integer
),
ranked AS (
    SELECT c.job_id, c.attempt, c.day, c.run_id, c.repo_id, c.ref, c.first_seq, c.last_seq,
           ts_rank_cd(c.document, query.tsq) AS chunk_rank
    FROM candidates c, query
    ORDER BY chunk_rank DESC, c.last_ts DESC
    LIMIT %(limit)s::integer
),
hits AS (
    SELECT r.job_id, r.attempt, r.run_id, r.repo_id, repo.name AS repo_name, r.ref,
           j.key AS job_key, j.name AS job_name, l.seq, l.stream, l.ts, l.line, r.chunk_rank,
           l.line_rank,
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
        -- OFFSET 0 keeps this a lookup of one chunk's lines by primary key.
        -- Flattened into the outer join, the planner matched lines on
        -- job_id alone and filtered every line of a long log for each chunk.
        OFFSET 0
    ) l
    ORDER BY r.chunk_rank DESC, l.line_rank DESC, r.job_id DESC, l.seq
    LIMIT %(limit)s::integer
),
bounds AS (
    -- Reading `prefiltered` to its end is only needed (and then already
    -- done) when fewer than `candidates` chunks matched.
    SELECT CASE
               WHEN (SELECT count(*) FROM candidates) >= %(candidates)s::integer THEN true
               ELSE (SELECT count(*) FROM prefiltered) >= %(scan_chunks)s::integer
           END AS truncated
)
SELECT b.truncated, h.job_id, h.attempt, h.run_id, h.repo_id, h.repo_name, h.ref, h.job_key,
       h.job_name, h.seq, h.stream, h.ts, h.line, h.chunk_rank, h.line_rank, h.headline
FROM bounds b
LEFT JOIN hits h ON true
ORDER BY h.chunk_rank DESC, h.line_rank DESC, h.job_id DESC, h.seq;
