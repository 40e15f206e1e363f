-- Full-text search over job logs, built off the ingest path.
--
-- A GIN index on job_logs itself would be updated for every stored line and
-- makes COPY several times slower. Instead the log flush queues the
-- (job, attempt, seq range) of each stored batch, and a leader-elected
-- background indexer turns runs of consecutive lines ("chunks") into one
-- tsvector row each. A chunk covers the lines whose seq lies in
-- (chunk * N, (chunk + 1) * N] for the N of mj_logs_chunk_lines().

CREATE TABLE job_log_search (
    job_id     bigint NOT NULL,
    attempt    integer NOT NULL,
    chunk      integer NOT NULL,
    -- Same partitioning as job_logs, so retention drops both together.
    day        date NOT NULL,
    run_id     bigint NOT NULL,
    repo_id    bigint NOT NULL,
    ref        text NOT NULL,
    first_seq  integer NOT NULL,
    last_seq   integer NOT NULL,
    last_ts    timestamptz NOT NULL,
    document   tsvector NOT NULL,
    PRIMARY KEY (job_id, attempt, chunk, day)
) PARTITION BY RANGE (day);

CREATE INDEX job_log_search_document_idx ON job_log_search USING gin (document);
-- A search ranks the newest matching chunks. For a word found in most chunks,
-- walking this index newest first and stopping after enough matches is
-- cheaper than collecting every match from the GIN index; the planner picks.
CREATE INDEX job_log_search_recent_idx ON job_log_search (last_ts);

-- Batches stored but not indexed yet; insert-only for the flush, emptied by
-- the indexer.
CREATE TABLE job_log_index_queue (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     bigint NOT NULL,
    attempt    integer NOT NULL,
    day        date NOT NULL,
    first_seq  integer NOT NULL,
    last_seq   integer NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

-- Give every existing job_logs partition its search partition.
DO $$
DECLARE
    v_day date;
BEGIN
    FOR v_day IN
        SELECT to_date(substring(c.relname from 11), 'YYYYMMDD')
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'job_logs'::regclass
          AND c.relname ~ '^job_logs_p[0-9]{8}$'
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF job_log_search FOR VALUES FROM (%L) TO (%L)',
            'job_log_search_p' || to_char(v_day, 'YYYYMMDD'), v_day, v_day + 1);
    END LOOP;
END;
$$;
