-- Queries behind the dashboard pages (minijenkin/web) that the REST API does not share.

-- name: dashboard_newest_run
-- The id of the newest run (an index-only scan of the primary key), to notice new runs.
SELECT coalesce(max(id), 0) AS id FROM pipeline_runs;

-- name: dashboard_queue_depth_series
-- Average and maximum queued and running jobs per bucket of `step` from the queue samples.
-- Buckets are aligned to 2000-01-03 00:00 UTC like the metrics_series_* queries; a bucket
-- without samples has null values.
WITH span AS (
    SELECT date_bin(%(step)s::interval, %(from)s::timestamptz, timestamptz '2000-01-03 00:00+00') AS first,
           %(to)s::timestamptz AS last
),
buckets AS (
    SELECT b AS t
    FROM span, generate_series(span.first, span.last, %(step)s::interval) AS b
    WHERE b < span.last
),
samples AS (
    SELECT date_bin(%(step)s::interval, s.sampled_at, timestamptz '2000-01-03 00:00+00') AS t,
           s.queued, s.running
    FROM metrics_queue_samples s, span
    WHERE s.sampled_at >= span.first AND s.sampled_at < span.last
)
SELECT to_char(b.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS t,
       avg(s.queued)::float8 AS queued_avg, max(s.queued) AS queued_max,
       avg(s.running)::float8 AS running_avg
FROM buckets b
LEFT JOIN samples s ON s.t = b.t
GROUP BY b.t
ORDER BY b.t;

-- name: dashboard_queue_sample
-- Record how many jobs are queued and running now, and delete samples older than `keep_seconds`.
WITH counted AS (
    SELECT (SELECT count(*) FROM jobs WHERE status = 'queued') AS queued,
           (SELECT count(*) FROM jobs WHERE status = 'running') AS running
),
inserted AS (
    INSERT INTO metrics_queue_samples (sampled_at, queued, running)
    SELECT now(), queued, running FROM counted
    ON CONFLICT (sampled_at) DO NOTHING
    RETURNING queued, running
),
deleted AS (
    DELETE FROM metrics_queue_samples
    WHERE sampled_at < now() - make_interval(secs => %(keep_seconds)s::float8)
)
SELECT queued, running FROM inserted;

-- name: dashboard_repo_names
-- Repository names for the filters of the runs list, alphabetically.
SELECT name FROM repositories ORDER BY name LIMIT %(limit)s::integer;

-- name: dashboard_run_jobs
-- The jobs of a run for its graph: ids of the jobs each one needs, matrix and environment,
-- and whether a live worker offers their labels.
SELECT j.id, j.kind, j.key, j.name, j.status, j.attempt, j.exit_code, j.reason, j.labels,
       j.created_at, j.queued_at, j.started_at, j.finished_at, j.worker_id,
       EXISTS (SELECT 1 FROM workers lw
               WHERE lw.status = 'active' AND j.labels <@ lw.labels) AS has_capable_worker,
       j.spec -> 'strategy' ->> 'job' AS matrix_job,
       j.environment,
       coalesce((SELECT array_agg(d.needs_job_id ORDER BY d.needs_job_id)
                 FROM job_dependencies d WHERE d.job_id = j.id), '{}') AS needs_ids
FROM jobs j
WHERE j.run_id = %(run_id)s::bigint
ORDER BY j.id;

-- name: dashboard_workers
-- Live workers, then those stopped or lost within `recent_seconds`, with heartbeat age in seconds.
SELECT w.id, w.name, w.hostname, w.pid, w.labels, w.concurrency, w.version, w.status,
       w.started_at, w.heartbeat_at, w.stopped_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age_seconds
FROM workers w
WHERE w.status IN ('active', 'stopping')
   OR coalesce(w.stopped_at, w.heartbeat_at) >= now() - make_interval(secs => %(recent_seconds)s::float8)
ORDER BY w.status IN ('active', 'stopping') DESC, w.name, w.started_at DESC
LIMIT %(limit)s::integer;

-- name: dashboard_workers_running_jobs
-- The running jobs of the given workers (index jobs_running_worker_idx), with their run and repository.
SELECT j.worker_id, j.id, j.run_id, j.key, j.name, j.attempt, j.started_at, r.name AS repo_name,
       extract(epoch FROM now() - j.started_at)::float8 AS running_seconds
FROM jobs j
JOIN repositories r ON r.id = j.repo_id
WHERE j.status = 'running' AND j.worker_id = ANY(%(worker_ids)s::uuid[])
ORDER BY j.started_at, j.id;
