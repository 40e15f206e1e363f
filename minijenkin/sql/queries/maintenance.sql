-- name: logs_drop_partitions
-- Drop daily log partitions older than the retention period (whole partitions, never rows).
SELECT mj_logs_drop_partitions_v1(
    (now() AT TIME ZONE 'UTC')::date - %(retention_days)s::integer) AS dropped;

-- name: logs_ensure_partitions
-- Create the daily log partitions from yesterday to a week ahead.
SELECT mj_logs_ensure_partitions_v1(
    (now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7) AS created;

-- name: maintenance_lock_try
-- Try to become this transaction's leader of one maintenance loop.
SELECT mj_lock_try_xact_v1(%(name)s::text) AS acquired;

-- name: reap
-- Declare silent workers lost and recover or fail their running jobs.
SELECT job_id, run_id, worker_id, attempt, outcome
FROM mj_reap_v1(%(lease_seconds)s::float8, %(backoff_base)s::float8, %(backoff_max)s::float8);
