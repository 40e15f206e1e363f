-- Helpers shared by the queue, run and log functions.
--
-- Files in this folder are "repeatable": the migrator re-applies a file
-- whenever its checksum changes, after the numbered migrations. Each file must
-- therefore be safe to run again (CREATE OR REPLACE). A function whose
-- behaviour changes incompatibly gets a new _vN name, so that workers of the
-- previous release keep working during an upgrade.

-- First key of every advisory lock this project takes (two-int form), so
-- that our locks never collide with an application sharing the database.
-- 1296714497 is 0x4D4A4B01, "MJK" plus a version byte.
CREATE OR REPLACE FUNCTION mj_lock_namespace() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 1296714497 $$;

-- Every advisory-lock key is derived here. Names in use:
--   migrations                 the migrator (session lock)
--   maintenance:<loop>         leader of one maintenance loop (transaction lock)
--   deploy:<environment>       the running deploy of an environment (session lock)
--   concurrency:<group>        the running job of a concurrency group (session lock)
--   deploy_queue:<lock name>   changes to the queue of one of the two above
--                              (transaction lock)
--   log_partitions             creating job_logs partitions (transaction lock)
--   run_group:<repo>:<group>   which run of a pipeline-wide concurrency group
--                              is active (transaction lock, 20_runs.sql)
CREATE OR REPLACE FUNCTION mj_lock_key(p_name text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtext(p_name) $$;

CREATE OR REPLACE FUNCTION mj_lock_try_xact_v1(p_name text) RETURNS boolean
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_try_advisory_xact_lock(mj_lock_namespace(), mj_lock_key(p_name)) $$;

-- Take the transaction lock of a name, waiting for it if need be.
CREATE OR REPLACE FUNCTION mj_lock_xact_v1(p_name text) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$ SELECT pg_advisory_xact_lock(mj_lock_namespace(), mj_lock_key(p_name)) $$;

-- Statuses in which a job or run has not ended yet. Only jobs are ever
-- waiting (for a deploy lock) or awaiting_approval.
CREATE OR REPLACE FUNCTION mj_status_is_active(p_status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT p_status IN ('pending', 'queued', 'running', 'waiting', 'awaiting_approval') $$;

-- Exponential backoff with "equal jitter": the delay for the Nth retry is
-- uniformly drawn from [d/2, d] with d = min(max, base * 2^(N-1)), so retries
-- of many jobs that failed together spread out instead of returning at once.
-- The exponent stops at 512 because power(2, N) overflows double precision
-- above 1023, and an outbox row retried after each Retry-After can pass
-- 1023 attempts within its retry schedule.
CREATE OR REPLACE FUNCTION mj_backoff_v1(
    p_retry_number integer,
    p_base_seconds double precision,
    p_max_seconds double precision
) RETURNS interval
    LANGUAGE sql VOLATILE
    AS $$
        SELECT make_interval(secs =>
            least(p_max_seconds,
                  p_base_seconds * power(2, least(greatest(p_retry_number, 1) - 1, 512)))
            * (0.5 + random() * 0.5))
    $$;
