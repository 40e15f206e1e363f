-- Job log storage: daily partitions and the fenced, idempotent batch insert.
--
-- job_logs and job_log_search (0005_log_search.sql) share their daily
-- partition bounds: the functions below create and drop both together.
-- Lock order: a function that locks both tables locks job_logs first, so
-- partition upkeep and the search indexer cannot deadlock.

CREATE OR REPLACE FUNCTION mj_logs_partition_name(p_day date) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'job_logs_p' || to_char(p_day, 'YYYYMMDD') $$;

CREATE OR REPLACE FUNCTION mj_logs_search_partition_name(p_day date) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'job_log_search_p' || to_char(p_day, 'YYYYMMDD') $$;

-- Create the daily partitions of job_logs and job_log_search for every day
-- in [p_from, p_to] that lacks one. Returns the number of days for which a
-- job_logs partition was created.
CREATE OR REPLACE FUNCTION mj_logs_ensure_partitions_v1(p_from date, p_to date) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_day date;
    v_created integer := 0;
BEGIN
    -- CREATE TABLE ... PARTITION OF would lock the parent ACCESS EXCLUSIVE,
    -- stalling every insert and read of the logs. ATTACH PARTITION needs
    -- only SHARE UPDATE EXCLUSIVE on the parent, which readers and writers
    -- do not conflict with. It also creates the parent's indexes on the new
    -- table. Two passes lock job_logs before job_log_search.
    --
    -- A log flush and the maintenance loop may both find a day missing; the
    -- transaction lock makes the second wait for the first and then see its
    -- tables instead of failing on a duplicate name.
    PERFORM mj_lock_xact_v1('log_partitions');
    FOR v_day IN SELECT generate_series(p_from, p_to, interval '1 day')::date LOOP
        IF to_regclass(mj_logs_partition_name(v_day)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE job_logs INCLUDING ALL)', mj_logs_partition_name(v_day));
            EXECUTE format('ALTER TABLE job_logs ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           mj_logs_partition_name(v_day), v_day, v_day + 1);
            v_created := v_created + 1;
        END IF;
    END LOOP;
    FOR v_day IN SELECT generate_series(p_from, p_to, interval '1 day')::date LOOP
        IF to_regclass(mj_logs_search_partition_name(v_day)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE job_log_search INCLUDING ALL)',
                           mj_logs_search_partition_name(v_day));
            EXECUTE format('ALTER TABLE job_log_search ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           mj_logs_search_partition_name(v_day), v_day, v_day + 1);
        END IF;
    END LOOP;
    RETURN v_created;
END;
$$;

-- Drop whole daily partitions of job_logs and job_log_search that end on
-- or before p_before. Returns the names of the dropped partitions.
CREATE OR REPLACE FUNCTION mj_logs_drop_partitions_v1(p_before date) RETURNS SETOF text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN
        SELECT c.relname::text
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('job_logs'::regclass, 'job_log_search'::regclass)
          AND c.relname ~ '^job_log(s|_search)_p[0-9]{8}$'
          AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= p_before
        -- job_logs before job_log_search, the lock order every log function keeps.
        ORDER BY right(c.relname, 8), i.inhparent = 'job_logs'::regclass DESC
    LOOP
        EXECUTE format('DROP TABLE %I', v_name);
        RETURN NEXT v_name;
    END LOOP;
END;
$$;

-- Move the lines staged in this session's temporary table mj_log_batch into
-- job_logs. The worker fills mj_log_batch with COPY and calls this function
-- in the same transaction; the table is ON COMMIT DELETE ROWS.
--
-- Lines whose (job, attempt, lease token) no longer match a running attempt
-- are dropped: they come from a worker presumed dead. A line already stored
-- (same job, attempt and seq, e.g. a batch re-sent after a lost connection)
-- is ignored, so each line is stored exactly once. Sends one NOTIFY per
-- attempt carrying ids and the last sequence number, never log text, and
-- queues the stored range for the search indexer (mj_logs_index_v1).
CREATE OR REPLACE FUNCTION mj_logs_flush_v1()
RETURNS TABLE (job_id bigint, attempt integer, stored bigint, last_seq integer)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_results jsonb;
    v_row record;
BEGIN
    BEGIN
        v_results := mj_logs_insert_batch_v1();
    EXCEPTION WHEN check_violation THEN
        -- No partition for the day yet (the maintenance loop has not run):
        -- create the missing ones and try once more.
        PERFORM mj_logs_ensure_partitions_v1(min(day), max(day))
        FROM (SELECT (j.started_at AT TIME ZONE 'UTC')::date AS day
              FROM (SELECT DISTINCT b.job_id FROM pg_temp.mj_log_batch b) staged
              JOIN jobs j ON j.id = staged.job_id) days;
        v_results := mj_logs_insert_batch_v1();
    END;

    INSERT INTO job_log_index_queue (job_id, attempt, day, first_seq, last_seq)
    SELECT r.job_id, r.attempt, r.day, r.first_seq, r.last_seq
    FROM jsonb_to_recordset(v_results) AS r (job_id bigint, attempt integer, day date, first_seq integer,
                                             last_seq integer);

    FOR v_row IN
        SELECT * FROM jsonb_to_recordset(v_results) AS r (job_id bigint, attempt integer, stored bigint, last_seq integer)
    LOOP
        PERFORM pg_notify('mj_logs_v1', format('%s:%s:%s', v_row.job_id, v_row.attempt, v_row.last_seq));
        job_id := v_row.job_id;
        attempt := v_row.attempt;
        stored := v_row.stored;
        last_seq := v_row.last_seq;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Insert the staged lines of attempts still running under the staged lease
-- token; returns per attempt the lines stored and their seq range.
--
-- Lines of an attempt are stored in seq order, one batch after another, so
-- a batch whose first seq is above the attempt's last stored seq cannot
-- conflict: it takes a plain INSERT, about twice as fast as ON CONFLICT
-- (bench/logs.py). A re-sent batch, or a unique violation because another
-- session stored the same lines meanwhile, takes the ON CONFLICT DO NOTHING
-- path, which skips what is stored already.
CREATE OR REPLACE FUNCTION mj_logs_insert_batch_v1() RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_valid jsonb;
    v_results jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'job_id', staged.job_id, 'attempt', staged.attempt, 'day', attempt_day.day,
               'stored', staged.lines, 'first_seq', staged.first_seq, 'last_seq', staged.last_seq,
               'stored_seq', (SELECT max(l.seq) FROM job_logs l
                              WHERE l.job_id = staged.job_id AND l.attempt = staged.attempt
                                AND l.day = attempt_day.day))), '[]')
    INTO v_valid
    FROM (
        SELECT b.job_id, b.attempt, b.lease_token, count(*) AS lines, min(b.seq) AS first_seq,
               max(b.seq) AS last_seq
        FROM pg_temp.mj_log_batch b
        GROUP BY b.job_id, b.attempt, b.lease_token
    ) staged
    JOIN jobs j
      ON j.id = staged.job_id
     AND j.attempt = staged.attempt
     AND j.lease_token = staged.lease_token
     AND j.status = 'running'
    CROSS JOIN LATERAL (SELECT (j.started_at AT TIME ZONE 'UTC')::date AS day) attempt_day;

    IF NOT EXISTS (
        SELECT 1
        FROM jsonb_to_recordset(v_valid) AS v (first_seq integer, stored_seq integer)
        WHERE v.stored_seq >= v.first_seq
    ) THEN
        BEGIN
            INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line)
            SELECT b.job_id, b.attempt, b.seq, v.day, b.stream, b.ts, b.line
            FROM pg_temp.mj_log_batch b
            JOIN jsonb_to_recordset(v_valid) AS v (job_id bigint, attempt integer, day date)
              ON v.job_id = b.job_id AND v.attempt = b.attempt;
            RETURN (SELECT coalesce(jsonb_agg(entry - 'stored_seq'), '[]')
                    FROM jsonb_array_elements(v_valid) AS entry);
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- stored meanwhile by another session: take the path below
        END;
    END IF;

    WITH inserted AS (
        INSERT INTO job_logs (job_id, attempt, seq, day, stream, ts, line)
        SELECT b.job_id, b.attempt, b.seq, v.day, b.stream, b.ts, b.line
        FROM pg_temp.mj_log_batch b
        JOIN jsonb_to_recordset(v_valid) AS v (job_id bigint, attempt integer, day date)
          ON v.job_id = b.job_id AND v.attempt = b.attempt
        ON CONFLICT DO NOTHING
        RETURNING job_logs.job_id, job_logs.attempt, job_logs.day, job_logs.seq
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'job_id', per_attempt.job_id, 'attempt', per_attempt.attempt, 'day', per_attempt.day,
               'stored', per_attempt.stored, 'first_seq', per_attempt.first_seq,
               'last_seq', per_attempt.last_seq)), '[]')
    INTO v_results
    FROM (
        SELECT i.job_id, i.attempt, i.day, count(*) AS stored, min(i.seq) AS first_seq,
               max(i.seq) AS last_seq
        FROM inserted i
        GROUP BY i.job_id, i.attempt, i.day
    ) per_attempt;
    RETURN v_results;
END;
$$;

-- The direct path of the log flush: a batch whose attempts are all still
-- running under its lease tokens, and that starts after each attempt's last
-- stored line, is COPY-ed straight into job_logs. That writes every line
-- once instead of twice (staging table, then mj_logs_insert_batch_v1()),
-- which is about 1.4 times faster on 2 cores. Any other batch (a resend
-- after a lost connection, a stale lease) takes the staged path, which drops
-- or skips what it must.
--
-- mj_logs_direct_check_v1 runs first in the batch's transaction. It returns
-- one row per attempt: its partition day, and whether the direct path may
-- take it. It creates a missing partition, so the COPY cannot fail on one.
-- Like the staged path, it takes no lock on the job row: a lease revoked
-- after this check but before commit still lets the batch in.
CREATE OR REPLACE FUNCTION mj_logs_direct_check_v1(
    p_job_ids bigint[], p_attempts integer[], p_lease_tokens uuid[], p_first_seqs integer[]
) RETURNS TABLE (job_id bigint, attempt integer, day date, direct boolean)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_first date;
    v_last date;
BEGIN
    RETURN QUERY
    SELECT batch.job_id, batch.attempt, attempt_day.day,
           j.id IS NOT NULL AND coalesce(stored.last_seq, 0) < batch.first_seq
    FROM unnest(p_job_ids, p_attempts, p_lease_tokens, p_first_seqs)
         AS batch (job_id, attempt, lease_token, first_seq)
    LEFT JOIN jobs j
      ON j.id = batch.job_id
     AND j.attempt = batch.attempt
     AND j.lease_token = batch.lease_token
     AND j.status = 'running'
    LEFT JOIN LATERAL (SELECT (j.started_at AT TIME ZONE 'UTC')::date AS day) attempt_day ON true
    LEFT JOIN LATERAL (
        SELECT max(l.seq) AS last_seq
        FROM job_logs l
        WHERE l.job_id = batch.job_id AND l.attempt = batch.attempt AND l.day = attempt_day.day
    ) stored ON j.id IS NOT NULL;

    SELECT min((started_at AT TIME ZONE 'UTC')::date), max((started_at AT TIME ZONE 'UTC')::date)
    INTO v_first, v_last
    FROM jobs
    WHERE id = ANY (p_job_ids)
      AND to_regclass(mj_logs_partition_name((started_at AT TIME ZONE 'UTC')::date)) IS NULL;
    IF v_first IS NOT NULL THEN
        PERFORM mj_logs_ensure_partitions_v1(v_first, v_last);
    END IF;
END;
$$;

-- Finish a batch COPY-ed into job_logs after mj_logs_direct_check_v1: queue
-- each attempt's range for the search indexer and send one NOTIFY per
-- attempt (ids and the last sequence number only), as mj_logs_flush_v1()
-- does for a staged batch. Returns the same rows as mj_logs_flush_v1().
CREATE OR REPLACE FUNCTION mj_logs_direct_finish_v1(
    p_job_ids bigint[], p_attempts integer[], p_days date[], p_first_seqs integer[],
    p_last_seqs integer[], p_counts bigint[]
) RETURNS TABLE (job_id bigint, attempt integer, stored bigint, last_seq integer)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_row record;
BEGIN
    INSERT INTO job_log_index_queue (job_id, attempt, day, first_seq, last_seq)
    SELECT * FROM unnest(p_job_ids, p_attempts, p_days, p_first_seqs, p_last_seqs);

    FOR v_row IN
        SELECT * FROM unnest(p_job_ids, p_attempts, p_counts, p_last_seqs)
                 AS batch (job_id, attempt, stored, last_seq)
    LOOP
        PERFORM pg_notify('mj_logs_v1', format('%s:%s:%s', v_row.job_id, v_row.attempt, v_row.last_seq));
        job_id := v_row.job_id;
        attempt := v_row.attempt;
        stored := v_row.stored;
        last_seq := v_row.last_seq;
        RETURN NEXT;
    END LOOP;
END;
$$;
