-- Full-text search over job logs: the background indexer and its helpers.
--
-- Text-search configuration 'simple': log lines are identifiers, paths and
-- messages rather than prose, so words are lower-cased but neither stemmed
-- nor dropped as stop words ("No such file" keeps "no").

-- Lines per search chunk. Changing it requires rebuilding job_log_search,
-- because chunk numbers are derived from it.
CREATE OR REPLACE FUNCTION mj_logs_chunk_lines() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 64 $$;

-- The escape sequences blanked out of log lines before indexing.
CREATE OR REPLACE FUNCTION mj_logs_escape_pattern() RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT $re$\u001b\[[0-?]*[ -/]*[@-~]|\u001b[]PX^_][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[ -/]*[0-~]|\u001b$re$
$$;

-- Replace each escape sequence in p_text with one space per character. The
-- pattern is ESCAPE_SEQUENCE of logs/render.py: CSI sequences, OSC, DCS, SOS,
-- PM and APC strings, other two- and three-byte sequences, and a lone ESC.
-- The text between the sequences and the sequences themselves come from one
-- pass each (regexp_split_to_array and regexp_matches scan alike), so the
-- cost grows with the line's length, not with the number of sequences
-- times the length. Every match contains an ESC, so neither finds an empty
-- match.
CREATE OR REPLACE FUNCTION mj_logs_blank_escapes(p_text text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT string_agg(part.piece || repeat(' ', coalesce(length(sequence.match[1]), 0)), ''
                      ORDER BY part.position)
    FROM unnest(regexp_split_to_array(p_text, mj_logs_escape_pattern()))
         WITH ORDINALITY AS part (piece, position)
    LEFT JOIN regexp_matches(p_text, mj_logs_escape_pattern(), 'g')
         WITH ORDINALITY AS sequence (match, position)
         ON sequence.position = part.position
$$;

-- The part of a line that is indexed and highlighted. Bounding it keeps a
-- chunk's tsvector far below PostgreSQL's 1 MB limit whatever a step prints
-- (64 lines of at most 2,048 characters each). The default text-search
-- parser reads `<...>` as an XML tag and drops it, so `<` and `>` become
-- spaces: `<script>` is then indexed and highlighted like any other word.
-- Spaces, not other characters: in a database with the C locale the parser
-- counts every non-ASCII character as a letter, which would glue a stand-in
-- character to the word next to it. logs/search.py restores the brackets in
-- snippets from the original line (the mapping keeps every position).
-- Escape sequences (colours) become spaces as well, as many as they have
-- characters: `ESC[31mFAILED` would otherwise be indexed as the word
-- `31mfailed`, and a search for FAILED would miss every coloured line.
CREATE OR REPLACE FUNCTION mj_logs_search_text(p_line text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN strpos(left(p_line, 2048), chr(27)) = 0
                THEN translate(left(p_line, 2048), '<>', '  ')
                ELSE mj_logs_blank_escapes(translate(left(p_line, 2048), '<>', '  '))
           END
$$;

CREATE OR REPLACE FUNCTION mj_logs_search_vector(p_line text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_tsvector('simple', mj_logs_search_text(p_line)) $$;

-- The part of a search query a GIN index evaluates alone: querytree() (the
-- query without its negated words) with every phrase operator (<-> and <N>)
-- turned into AND. The index stores no word positions, so checking a phrase
-- means reading each chunk's document, while this weaker form needs none;
-- every chunk that matches the query also matches it. Lexemes are quoted in
-- the text form of a tsquery, so only operators outside quotes are replaced.
-- NULL when the query has no positive word (querytree() returns 'T'): it
-- then matches no chunk.
CREATE OR REPLACE FUNCTION mj_logs_search_prefilter(p_query tsquery) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
    SELECT string_agg(CASE WHEN token.part[1] LIKE '<%' THEN '&' ELSE token.part[1] END, ''
                      ORDER BY token.position)::tsquery
    FROM regexp_matches(nullif(querytree(p_query), 'T'), $re$('(?:[^']|'')*'|<(?:-|[0-9]+)>|[^'<]+)$re$, 'g')
         WITH ORDINALITY AS token (part, position)
$$;

-- Index what the log flush queued: take queued batches, oldest first, until
-- they cover p_max_lines lines (at least one batch), then rebuild every
-- chunk they touch from the stored lines.
-- Rebuilding whole chunks makes the work idempotent, so a batch queued twice
-- or a chunk filled over several batches ends up indexed the same.
-- Returns the number of attempts and chunks indexed. Run by the maintenance
-- leader only; SKIP LOCKED also keeps two concurrent callers apart.
CREATE OR REPLACE FUNCTION mj_logs_index_v1(p_max_lines integer)
RETURNS TABLE (attempts integer, chunks integer)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_range record;
    v_count integer;
    v_lines integer := mj_logs_chunk_lines();
BEGIN
    attempts := 0;
    chunks := 0;
    -- job_logs before job_log_search: partition upkeep locks them in that
    -- order too, and the reverse order would deadlock with it.
    LOCK TABLE job_logs IN ACCESS SHARE MODE;
    FOR v_range IN
        WITH taken AS (
            DELETE FROM job_log_index_queue q
            WHERE q.id IN (
                SELECT sized.id
                FROM (
                    SELECT locked.id,
                           sum(locked.last_seq - locked.first_seq + 1) OVER (ORDER BY locked.id)
                               - (locked.last_seq - locked.first_seq + 1) AS lines_before
                    FROM (
                        SELECT pending.id, pending.first_seq, pending.last_seq
                        FROM job_log_index_queue pending
                        ORDER BY pending.id
                        LIMIT 10000
                        FOR UPDATE SKIP LOCKED
                    ) locked
                ) sized
                WHERE sized.lines_before < p_max_lines
            )
            RETURNING q.job_id, q.attempt, q.day, q.first_seq, q.last_seq
        )
        SELECT t.job_id, t.attempt, t.day, min(t.first_seq) AS first_seq, max(t.last_seq) AS last_seq
        FROM taken t
        GROUP BY t.job_id, t.attempt, t.day
        ORDER BY t.job_id, t.attempt
    LOOP
        IF to_regclass(mj_logs_search_partition_name(v_range.day)) IS NULL THEN
            PERFORM mj_logs_ensure_partitions_v1(v_range.day, v_range.day);
        END IF;

        INSERT INTO job_log_search AS s (job_id, attempt, chunk, day, run_id, repo_id, ref,
                                         first_seq, last_seq, last_ts, document)
        SELECT l.job_id, l.attempt, (l.seq - 1) / v_lines, l.day, j.run_id, j.repo_id, pr.ref,
               min(l.seq), max(l.seq), max(l.ts),
               to_tsvector('simple', string_agg(mj_logs_search_text(l.line), E'\n' ORDER BY l.seq))
        FROM job_logs l
        JOIN jobs j ON j.id = l.job_id
        JOIN pipeline_runs pr ON pr.id = j.run_id
        WHERE l.job_id = v_range.job_id
          AND l.attempt = v_range.attempt
          AND l.day = v_range.day
          -- Whole chunks: from the first line of the first touched chunk to
          -- the last line of the last one.
          AND l.seq > ((v_range.first_seq - 1) / v_lines) * v_lines
          AND l.seq <= ((v_range.last_seq - 1) / v_lines + 1) * v_lines
        GROUP BY l.job_id, l.attempt, (l.seq - 1) / v_lines, l.day, j.run_id, j.repo_id, pr.ref
        ON CONFLICT (job_id, attempt, chunk, day) DO UPDATE
            SET first_seq = excluded.first_seq,
                last_seq = excluded.last_seq,
                last_ts = excluded.last_ts,
                document = excluded.document;
        GET DIAGNOSTICS v_count = ROW_COUNT;

        attempts := attempts + 1;
        chunks := chunks + v_count;
    END LOOP;
    RETURN NEXT;
END;
$$;
