-- Metrics: live figures, reads of the metrics views, and their upkeep.
--
-- Live figures: one query per figure (see minijenkin/metrics/figures.py).
-- Each returns its label columns and `value`. `now` pins the clock for
-- tests; NULL means the database's now().
--
-- Time series (metrics_series_*) for charts: one point per bucket of
-- `step`, from the bucket that contains `from` up to the last bucket that
-- starts before `to`. Buckets are aligned to Monday 2000-01-03 00:00 UTC, so
-- one-day buckets start at midnight UTC and seven-day ones on Mondays.
-- repo_id 0 means every repository. `value` names the figure each point
-- carries. The points come back as one JSON array of {"t", "value"}
-- objects: a chart has up to thousands of points, and building the JSON
-- here costs far less than decoding rows and encoding them again in Python.

-- name: metrics_queue_depth
-- Count queued jobs per label set (the partial index jobs_queue_idx covers status = 'queued').
SELECT j.labels, count(*)::float8 AS value
FROM jobs j
WHERE j.status = 'queued'
GROUP BY j.labels
ORDER BY j.labels;

-- name: metrics_queue_oldest_age
-- Seconds since the longest-waiting queued job of each label set entered the queue.
SELECT j.labels,
       extract(epoch FROM clock.at - min(coalesce(j.queued_at, j.created_at)))::float8 AS value
FROM jobs j
CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, now()) AS at) clock
WHERE j.status = 'queued'
GROUP BY j.labels, clock.at
ORDER BY j.labels;

-- name: metrics_worker_slots
-- Busy and idle job slots of the live workers, per label set the workers offer.
WITH live AS (
    SELECT ARRAY(SELECT DISTINCT l FROM unnest(w.labels) AS l ORDER BY l) AS labels,
           w.concurrency,
           (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running') AS busy
    FROM workers w
    WHERE w.status IN ('active', 'stopping')
),
per_labels AS (
    SELECT live.labels, sum(live.busy) AS busy,
           sum(greatest(live.concurrency - live.busy, 0)) AS idle
    FROM live
    GROUP BY live.labels
)
SELECT p.labels, slot.state, slot.value::float8 AS value
FROM per_labels p
CROSS JOIN LATERAL (VALUES ('busy', p.busy), ('idle', p.idle)) AS slot (state, value)
ORDER BY p.labels, slot.state;

-- name: metrics_worker_utilisation
-- Share of the live workers' job slots that run a job; no row when no worker is live.
SELECT (sum(live.busy)::float8 / sum(live.concurrency)) AS value
FROM (
    SELECT w.concurrency,
           (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running') AS busy
    FROM workers w
    WHERE w.status IN ('active', 'stopping')
) live
HAVING sum(live.concurrency) > 0;

-- name: metrics_runs_active
-- Count the runs that have not ended, per status (index pipeline_runs_active_idx).
SELECT s.status, count(pr.id)::float8 AS value
FROM (VALUES ('pending'), ('queued'), ('running')) AS s (status)
LEFT JOIN pipeline_runs pr
  ON pr.status = s.status AND pr.status IN ('pending', 'queued', 'running')
GROUP BY s.status
ORDER BY s.status;

-- name: metrics_deploys_waiting
-- Deploy jobs parked per environment: waiting for its lock, or awaiting approval (jobs_environment_queue_idx).
SELECT e.name AS environment, s.state, count(j.id)::float8 AS value
FROM environments e
CROSS JOIN (VALUES ('waiting'), ('awaiting_approval')) AS s (state)
LEFT JOIN jobs j
  ON j.environment = e.name AND j.status = s.state
 AND j.status IN ('queued', 'waiting', 'awaiting_approval')
GROUP BY e.name, s.state
ORDER BY e.name, s.state;

-- name: metrics_deploy_lock_failures
-- Failed deploy-lock acquisitions per lock name since it was first contended (a running total).
SELECT f.name AS lock, f.failures::float8 AS value
FROM deploy_lock_failures f
ORDER BY f.name;

-- name: metrics_deploys
-- Deployments that ended in the last 30 days, per environment and status.
SELECT d.environment, d.status, count(*)::float8 AS value
FROM deployments d
CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, now()) AS at) clock
WHERE d.finished_at >= clock.at - interval '30 days' AND d.started_at IS NOT NULL
GROUP BY d.environment, d.status
ORDER BY d.environment, d.status;

-- name: metrics_deploy_lead_time
-- Lead time percentiles per environment over the last 30 days: run created to deploy succeeded.
SELECT d.environment, q.quantile,
       percentile_cont(q.fraction) WITHIN GROUP (
           ORDER BY extract(epoch FROM d.finished_at - pr.created_at))::float8 AS value
FROM deployments d
JOIN pipeline_runs pr ON pr.id = d.run_id
CROSS JOIN (SELECT coalesce(%(now)s::timestamptz, now()) AS at) clock
CROSS JOIN (VALUES ('0.5', 0.5::float8), ('0.9', 0.9::float8)) AS q (quantile, fraction)
WHERE d.status = 'succeeded' AND d.finished_at >= clock.at - interval '30 days'
GROUP BY d.environment, q.quantile, q.fraction
ORDER BY d.environment, q.quantile;

-- name: metrics_log_ingest_rate
-- Log lines stored per second: growth of the job_logs partitions' insert counters since a sample.
-- The base sample is the newest one at least `window_seconds` old, else the oldest one. A
-- counter lower than its sample (statistics reset, partition re-created) counts from zero.
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS at,
           make_interval(secs => %(window_seconds)s::float8) AS window_length
),
base AS (
    SELECT s.sampled_at, s.counters
    FROM metrics_log_ingest_samples s
    CROSS JOIN clock
    WHERE s.sampled_at < clock.at
    ORDER BY s.sampled_at <= clock.at - clock.window_length DESC,
             CASE WHEN s.sampled_at <= clock.at - clock.window_length THEN s.sampled_at END DESC,
             s.sampled_at
    LIMIT 1
),
counters AS (
    -- pg_stat_get_tuples_inserted is n_tup_ins of pg_stat_user_tables, without
    -- the view's work for every other table of the database.
    SELECT i.inhrelid::text AS relid, pg_stat_get_tuples_inserted(i.inhrelid) AS n_tup_ins
    FROM pg_inherits i
    WHERE i.inhparent = 'job_logs'::regclass
)
SELECT coalesce(sum(CASE WHEN c.n_tup_ins >= coalesce((b.counters ->> c.relid)::bigint, 0)
                         THEN c.n_tup_ins - coalesce((b.counters ->> c.relid)::bigint, 0)
                         ELSE c.n_tup_ins END), 0)::float8
       / extract(epoch FROM clock.at - b.sampled_at)::float8 AS value
FROM base b
CROSS JOIN clock
LEFT JOIN counters c ON true
GROUP BY b.sampled_at, clock.at;

-- name: metrics_refreshed_at
-- When each metrics view was last refreshed, as a Unix timestamp.
SELECT r.view_name AS view, extract(epoch FROM r.refreshed_at)::float8 AS value
FROM metrics_refreshes r
ORDER BY r.view_name;

-- name: metrics_refresh_duration
-- Seconds the last refresh of each metrics view took.
SELECT r.view_name AS view, r.duration_seconds AS value
FROM metrics_refreshes r
ORDER BY r.view_name;

-- name: metrics_throughput
-- Jobs that ended per hour, averaged over the last 24 complete UTC hours (view mj_metrics_jobs_hourly).
SELECT coalesce(sum(h.jobs), 0)::float8 / 24 AS value
FROM mj_metrics_jobs_hourly h
CROSS JOIN (SELECT date_trunc('hour', coalesce(%(now)s::timestamptz, now()), 'UTC') AS hour) clock
WHERE h.repo_id = 0
  AND h.hour >= clock.hour - interval '24 hours'
  AND h.hour < clock.hour;

-- name: metrics_repo_runs
-- Runs of the last 30 days per repository (view mj_metrics_repos).
SELECT r.name AS repo, m.runs::float8 AS value
FROM mj_metrics_repos m
JOIN repositories r ON r.id = m.repo_id
ORDER BY r.name;

-- name: metrics_repo_success_ratio
-- Share of the last 30 days' runs with a verdict that succeeded, per repository.
SELECT r.name AS repo, m.succeeded::float8 / (m.succeeded + m.failed) AS value
FROM mj_metrics_repos m
JOIN repositories r ON r.id = m.repo_id
WHERE m.succeeded + m.failed > 0
ORDER BY r.name;

-- name: metrics_repo_run_duration
-- Median and 95th percentile run duration of the last 30 days, per repository.
SELECT r.name AS repo, q.quantile, q.value
FROM mj_metrics_repos m
JOIN repositories r ON r.id = m.repo_id
CROSS JOIN LATERAL (VALUES ('0.5', m.duration_p50), ('0.95', m.duration_p95)) AS q (quantile, value)
WHERE q.value IS NOT NULL
ORDER BY r.name, q.quantile;

-- name: metrics_queue_wait
-- Median and 95th percentile queue wait of the last 30 days, per label set.
SELECT m.labels, q.quantile, q.value
FROM mj_metrics_queue_wait_labels m
CROSS JOIN LATERAL (VALUES ('0.5', m.wait_p50), ('0.95', m.wait_p95)) AS q (quantile, value)
ORDER BY m.labels, q.quantile;

-- name: metrics_log_ingest_sample
-- Store the job_logs partitions' insert counters and drop samples older than `keep_seconds`.
SELECT mj_metrics_log_ingest_sample_v1(%(keep_seconds)s::float8) AS partitions;

-- name: metrics_refresh
-- Refresh every metrics view CONCURRENTLY when the last refresh is `min_interval_seconds` old.
SELECT view_name, started_at, finished_at
FROM mj_metrics_refresh_v1(%(min_interval_seconds)s::float8);

-- name: metrics_refreshes
-- When each metrics view was last refreshed and how long it took.
SELECT view_name, refreshed_at, duration_seconds
FROM metrics_refreshes
ORDER BY view_name;

-- name: metrics_summary_repos
-- Runs of the last 30 days per repository, optionally of one repository.
SELECT r.name AS repo, m.runs, m.succeeded, m.failed, m.cancelled, m.duration_p50,
       m.duration_p95, m.last_run_at
FROM mj_metrics_repos m
JOIN repositories r ON r.id = m.repo_id
WHERE %(repo_id)s::bigint IS NULL OR m.repo_id = %(repo_id)s::bigint
ORDER BY r.name;

-- name: metrics_summary_job_names
-- Jobs of the last 30 days per repository and name, flakiest first, optionally of one repository.
SELECT r.name AS repo, m.name, m.jobs, m.attempts, m.succeeded, m.failed, m.duration_p50,
       m.duration_p95, m.commits, m.flaky_commits, m.flakiness
FROM mj_metrics_job_names m
JOIN repositories r ON r.id = m.repo_id
WHERE %(repo_id)s::bigint IS NULL OR m.repo_id = %(repo_id)s::bigint
ORDER BY m.flakiness DESC, m.failed DESC, r.name, m.name
LIMIT %(limit)s::integer;

-- name: metrics_summary_queue_wait
-- Queue wait of the last 30 days per label set.
SELECT m.labels, m.attempts, m.wait_p50, m.wait_p95, m.wait_max
FROM mj_metrics_queue_wait_labels m
ORDER BY m.labels;

-- name: metrics_summary_throughput
-- Jobs that ended in the last 24 complete UTC hours, of one repository or (repo_id 0) all.
SELECT coalesce(sum(h.jobs), 0)::bigint AS jobs,
       coalesce(sum(h.succeeded), 0)::bigint AS succeeded,
       coalesce(sum(h.failed), 0)::bigint AS failed
FROM mj_metrics_jobs_hourly h
CROSS JOIN (SELECT date_trunc('hour', coalesce(%(now)s::timestamptz, now()), 'UTC') AS hour) clock
WHERE h.repo_id = %(repo_id)s::bigint
  AND h.hour >= clock.hour - interval '24 hours'
  AND h.hour < clock.hour;

-- name: metrics_series_runs
-- Runs, verdicts, success rate or daily duration percentiles per bucket (view mj_metrics_runs_daily).
WITH span AS (
    SELECT date_bin(%(step)s::interval, %(from)s::timestamptz, timestamptz '2000-01-03 00:00+00') AS first,
           %(to)s::timestamptz AS last
),
buckets AS (
    SELECT b AS t
    FROM span, generate_series(span.first, span.last, %(step)s::interval) AS b
    WHERE b < span.last
),
rows AS (
    SELECT date_bin(%(step)s::interval, d.day::timestamp AT TIME ZONE 'UTC',
                    timestamptz '2000-01-03 00:00+00') AS t,
           d.runs, d.succeeded, d.failed, d.duration_p50, d.duration_p95
    FROM mj_metrics_runs_daily d, span
    WHERE d.repo_id = %(repo_id)s::bigint
      AND d.day >= (span.first AT TIME ZONE 'UTC')::date
      AND d.day <= (span.last AT TIME ZONE 'UTC')::date
      AND (d.day::timestamp AT TIME ZONE 'UTC') < span.last
),
per_bucket AS (
    SELECT b.t, coalesce(sum(r.runs), 0) AS runs, coalesce(sum(r.succeeded), 0) AS succeeded,
           coalesce(sum(r.failed), 0) AS failed, max(r.duration_p50) AS duration_p50,
           max(r.duration_p95) AS duration_p95
    FROM buckets b
    LEFT JOIN rows r ON r.t = b.t
    GROUP BY b.t
)
SELECT coalesce(json_agg(json_build_object(
           't', to_char(p.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'value', CASE %(value)s::text
                        WHEN 'runs' THEN p.runs::float8
                        WHEN 'succeeded' THEN p.succeeded::float8
                        WHEN 'failed' THEN p.failed::float8
                        WHEN 'success_rate' THEN p.succeeded::float8 / nullif(p.succeeded + p.failed, 0)
                        WHEN 'duration_p50' THEN p.duration_p50
                        WHEN 'duration_p95' THEN p.duration_p95
                    END) ORDER BY p.t), '[]')::text AS points
FROM per_bucket p;

-- name: metrics_series_queue_wait
-- Attempts started, daily queue wait percentiles or longest wait per bucket (view mj_metrics_queue_wait_daily).
WITH span AS (
    SELECT date_bin(%(step)s::interval, %(from)s::timestamptz, timestamptz '2000-01-03 00:00+00') AS first,
           %(to)s::timestamptz AS last
),
buckets AS (
    SELECT b AS t
    FROM span, generate_series(span.first, span.last, %(step)s::interval) AS b
    WHERE b < span.last
),
rows AS (
    SELECT date_bin(%(step)s::interval, d.day::timestamp AT TIME ZONE 'UTC',
                    timestamptz '2000-01-03 00:00+00') AS t,
           d.attempts, d.wait_p50, d.wait_p95, d.wait_max
    FROM mj_metrics_queue_wait_daily d, span
    WHERE d.repo_id = %(repo_id)s::bigint
      AND d.day >= (span.first AT TIME ZONE 'UTC')::date
      AND d.day <= (span.last AT TIME ZONE 'UTC')::date
      AND (d.day::timestamp AT TIME ZONE 'UTC') < span.last
),
per_bucket AS (
    SELECT b.t, coalesce(sum(r.attempts), 0) AS attempts, max(r.wait_p50) AS wait_p50,
           max(r.wait_p95) AS wait_p95, max(r.wait_max) AS wait_max
    FROM buckets b
    LEFT JOIN rows r ON r.t = b.t
    GROUP BY b.t
)
SELECT coalesce(json_agg(json_build_object(
           't', to_char(p.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'value', CASE %(value)s::text
                        WHEN 'attempts' THEN p.attempts::float8
                        WHEN 'wait_p50' THEN p.wait_p50
                        WHEN 'wait_p95' THEN p.wait_p95
                        WHEN 'wait_max' THEN p.wait_max
                    END) ORDER BY p.t), '[]')::text AS points
FROM per_bucket p;

-- name: metrics_series_jobs
-- Jobs that ended per bucket, all or by verdict (view mj_metrics_jobs_hourly).
WITH span AS (
    SELECT date_bin(%(step)s::interval, %(from)s::timestamptz, timestamptz '2000-01-03 00:00+00') AS first,
           %(to)s::timestamptz AS last
),
buckets AS (
    SELECT b AS t
    FROM span, generate_series(span.first, span.last, %(step)s::interval) AS b
    WHERE b < span.last
),
rows AS (
    SELECT date_bin(%(step)s::interval, h.hour, timestamptz '2000-01-03 00:00+00') AS t,
           h.jobs, h.succeeded, h.failed
    FROM mj_metrics_jobs_hourly h, span
    WHERE h.repo_id = %(repo_id)s::bigint
      AND h.hour >= span.first
      AND h.hour < span.last
),
per_bucket AS (
    SELECT b.t, coalesce(sum(r.jobs), 0) AS jobs, coalesce(sum(r.succeeded), 0) AS succeeded,
           coalesce(sum(r.failed), 0) AS failed
    FROM buckets b
    LEFT JOIN rows r ON r.t = b.t
    GROUP BY b.t
)
SELECT coalesce(json_agg(json_build_object(
           't', to_char(p.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           'value', CASE %(value)s::text
                        WHEN 'jobs' THEN p.jobs::float8
                        WHEN 'succeeded' THEN p.succeeded::float8
                        WHEN 'failed' THEN p.failed::float8
                    END) ORDER BY p.t), '[]')::text AS points
FROM per_bucket p;

-- name: metrics_clock
-- The database's current time, for request defaults.
SELECT now() AS now;

-- name: metrics_outbox_messages
-- Notifications in the outbox by state: pending (backlog), delivering, dead (dead letters).
SELECT s.state, count(o.id)::float8 AS value
FROM (VALUES ('pending'), ('delivering'), ('dead')) AS s (state)
LEFT JOIN outbox o ON o.state = s.state
GROUP BY s.state
ORDER BY s.state;

-- name: metrics_outbox_oldest_due_age
-- Seconds the most overdue pending notification has waited past its delivery time.
SELECT coalesce(extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(o.next_attempt_at)),
                0)::float8 AS value
FROM outbox o
WHERE o.state = 'pending' AND o.next_attempt_at <= coalesce(%(now)s::timestamptz, now());
