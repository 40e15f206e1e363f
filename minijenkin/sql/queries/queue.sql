-- name: job_claim
-- Claim up to `limit` queued jobs this worker's labels satisfy (fair across repositories).
SELECT job_id, run_id, attempt, lease_token, kind, key, name, spec, condition, timeout_seconds,
       needs, run_context
FROM mj_job_claim_v2(%(worker_id)s::uuid, %(labels)s::text[], %(limit)s::integer);

-- name: job_finish
-- Report the end of an attempt, fenced by its lease token.
SELECT mj_job_finish_v1(%(job_id)s::bigint, %(lease_token)s::uuid, %(status)s::text,
                        %(exit_code)s::integer, %(reason)s::text,
                        %(backoff_base)s::float8, %(backoff_max)s::float8) AS outcome;

-- name: job_outputs_set
-- Store a job's output values, fenced by its lease token.
SELECT mj_job_outputs_set_v1(%(job_id)s::bigint, %(lease_token)s::uuid, %(outputs)s::jsonb) AS stored;

-- name: job_needs_outputs
-- The output values of the jobs a running job needs, latest finished last.
SELECT key, outputs FROM mj_job_needs_outputs_v1(%(job_id)s::bigint, %(lease_token)s::uuid);

-- name: job_ancestor_statuses
-- The statuses of the named jobs of a running job's run, for failure().
SELECT key, status, continue_on_error
FROM mj_job_ancestor_statuses_v1(%(job_id)s::bigint, %(lease_token)s::uuid, %(keys)s::text[]);

-- name: log_batch_create
-- Create this session's staging table for COPY-ed log lines (emptied at every commit).
CREATE TEMP TABLE IF NOT EXISTS mj_log_batch (
    job_id bigint, attempt integer, lease_token uuid, seq integer, stream smallint,
    ts timestamptz, line text
) ON COMMIT DELETE ROWS;

-- name: log_batch_copy
-- Stream log lines into the staging table.
COPY mj_log_batch (job_id, attempt, lease_token, seq, stream, ts, line) FROM STDIN;

-- name: log_batch_share
-- Let the owner of mj_logs_flush_v1 read the staging table, because that function runs with its
-- owner's privileges and a temporary table of a worker role is not readable by other roles.
DO $$
BEGIN
    EXECUTE format('GRANT SELECT ON pg_temp.mj_log_batch TO %I',
                   (SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
                    WHERE p.oid = 'mj_logs_flush_v1'::regproc));
END;
$$;

-- name: log_batch_flush
-- Move staged lines into job_logs (fenced, idempotent) and notify viewers.
SELECT job_id, attempt, stored, last_seq FROM mj_logs_flush_v1();

-- name: log_direct_allowed
-- Whether this session's role may COPY straight into job_logs (the worker role may not).
SELECT has_table_privilege('job_logs', 'INSERT') AS allowed;

-- name: log_direct_check
-- Check whether a batch of log lines may be COPY-ed straight into job_logs; one row per attempt.
SELECT job_id, attempt, day, direct
FROM mj_logs_direct_check_v1(%(job_ids)s::bigint[], %(attempts)s::integer[],
                             %(lease_tokens)s::uuid[], %(first_seqs)s::integer[]);

-- name: log_direct_copy
-- Stream log lines straight into job_logs (after log_direct_check, in the same transaction).
COPY job_logs (job_id, attempt, day, seq, stream, ts, line) FROM STDIN;

-- name: log_direct_finish
-- Queue a directly COPY-ed batch for the search indexer and notify viewers.
SELECT job_id, attempt, stored, last_seq
FROM mj_logs_direct_finish_v1(%(job_ids)s::bigint[], %(attempts)s::integer[], %(days)s::date[],
                              %(first_seqs)s::integer[], %(last_seqs)s::integer[],
                              %(counts)s::bigint[]);

-- name: plan_submit
-- Store the job graph a plan job computed and finish the plan, fenced by its lease token.
SELECT mj_plan_submit_v1(%(job_id)s::bigint, %(lease_token)s::uuid, %(jobs)s::jsonb) AS outcome;

-- name: worker_heartbeat
-- Record liveness; returns held jobs to cancel or abandon.
SELECT job_id, action
FROM mj_worker_heartbeat_v1(%(worker_id)s::uuid, %(job_ids)s::bigint[], %(lease_tokens)s::uuid[]);

-- name: worker_register
-- Register (or re-register) this worker process.
SELECT mj_worker_register_v1(%(worker_id)s::uuid, %(name)s::text, %(hostname)s::text,
                             %(pid)s::integer, %(labels)s::text[], %(concurrency)s::integer,
                             %(version)s::text) AS started_at;

-- name: worker_stop
-- Mark the worker stopped and hand its running jobs back to the queue.
SELECT mj_worker_stop_v1(%(worker_id)s::uuid) AS job_id;

-- name: job_finish_many
-- Report the ends of several attempts in one transaction (one commit), each fenced by its lease token.
SELECT job_id, outcome
FROM mj_job_finish_many_v1(%(job_ids)s::bigint[], %(lease_tokens)s::uuid[], %(statuses)s::text[],
                           %(exit_codes)s::integer[], %(reasons)s::text[],
                           %(backoff_base)s::float8, %(backoff_max)s::float8);

-- name: job_finish_and_claim
-- Report the ends of attempts, then claim up to `limit` jobs, in one transaction (outcome NULL marks a claimed job).
SELECT job_id, outcome, run_id, attempt, lease_token, kind, key, name, spec, condition,
       timeout_seconds, needs, run_context
FROM mj_job_finish_and_claim_v1(%(worker_id)s::uuid, %(labels)s::text[], %(limit)s::integer,
                                %(job_ids)s::bigint[], %(lease_tokens)s::uuid[], %(statuses)s::text[],
                                %(exit_codes)s::integer[], %(reasons)s::text[],
                                %(backoff_base)s::float8, %(backoff_max)s::float8);
