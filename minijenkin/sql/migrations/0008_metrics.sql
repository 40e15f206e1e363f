-- Metrics computed by PostgreSQL itself.
--
-- History comes from materialized views, refreshed CONCURRENTLY by a
-- leader-elected maintenance loop (mj_metrics_refresh_v1), so readers are
-- never blocked by a refresh. REFRESH ... CONCURRENTLY needs a unique index
-- on plain columns that covers every row, hence the sentinel repo_id 0 for
-- the "every repository" rows instead of NULL.
--
-- Days and hours are UTC. Durations and waits are in seconds.
--
-- Two families of views:
--   *_daily, *_hourly  every day or hour of the whole history, for charts;
--                      percentiles are exact per day and cannot be merged
--                      across days, so charts of them use one-day steps.
--                      Rows are written in (repo_id, day or hour) order so
--                      that a chart's range sits in a few pages; a
--                      concurrent refresh appends only the rows that changed.
--   the others         a rolling window of the runs created in the last 30
--                      days at refresh time, for the summary page.

-- Drives the 30-day windows. Runs are written a few times each (create,
-- start, finish), far less often than jobs, so the index stays off the
-- queue's hot path (jobs gets no new index).
CREATE INDEX pipeline_runs_created_idx ON pipeline_runs (created_at);

-- When each view was last refreshed and how long that took.
CREATE TABLE metrics_refreshes (
    view_name         text PRIMARY KEY,
    refreshed_at      timestamptz NOT NULL,
    duration_seconds  double precision NOT NULL
);

-- Samples of the insert counters of the job_logs partitions, taken by a
-- maintenance loop; the log ingest rate is the growth since an older sample.
-- Reading PostgreSQL's cumulative statistics adds no work to the ingest path.
CREATE TABLE metrics_log_ingest_samples (
    sampled_at  timestamptz PRIMARY KEY,
    -- {"<partition oid>": n_tup_ins, ...} for every partition of job_logs.
    counters    jsonb NOT NULL
);

-- Runs per repository (repo_id 0: every repository) and UTC day of creation.
-- failed counts failed and timed-out runs. Durations (started to finished)
-- cover the runs that succeeded or failed; cancelled and skipped runs are
-- counted in runs only.
CREATE MATERIALIZED VIEW mj_metrics_runs_daily AS
SELECT coalesce(grouped.repo_id, 0) AS repo_id,
       grouped.day,
       grouped.runs,
       grouped.succeeded,
       grouped.failed,
       grouped.cancelled,
       grouped.durations[1] AS duration_p50,
       grouped.durations[2] AS duration_p95
FROM (
    SELECT r.repo_id,
           r.day,
           count(*) AS runs,
           count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE r.status IN ('failed', 'timed_out')) AS failed,
           count(*) FILTER (WHERE r.status = 'cancelled') AS cancelled,
           percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY r.duration)
               FILTER (WHERE r.status IN ('succeeded', 'failed', 'timed_out')) AS durations
    FROM (
        SELECT pr.repo_id,
               (pr.created_at AT TIME ZONE 'UTC')::date AS day,
               pr.status,
               extract(epoch FROM pr.finished_at - pr.started_at)::float8 AS duration
        FROM pipeline_runs pr
    ) r
    GROUP BY GROUPING SETS ((r.repo_id, r.day), (r.day))
) grouped
ORDER BY 1, 2;

CREATE UNIQUE INDEX mj_metrics_runs_daily_key ON mj_metrics_runs_daily (repo_id, day);

-- Queue wait of every attempt (queued to started; for a retry the backoff
-- delay is part of the wait), per repository (0: every repository) and UTC
-- day the attempt started.
CREATE MATERIALIZED VIEW mj_metrics_queue_wait_daily AS
SELECT coalesce(grouped.repo_id, 0) AS repo_id,
       grouped.day,
       grouped.attempts,
       grouped.waits[1] AS wait_p50,
       grouped.waits[2] AS wait_p95,
       grouped.wait_max
FROM (
    SELECT w.repo_id,
           w.day,
           count(*) AS attempts,
           percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY w.wait) AS waits,
           max(w.wait) AS wait_max
    FROM (
        SELECT j.repo_id,
               (a.started_at AT TIME ZONE 'UTC')::date AS day,
               extract(epoch FROM a.started_at - coalesce(a.queued_at, j.created_at))::float8 AS wait
        FROM job_attempts a
        JOIN jobs j ON j.id = a.job_id
    ) w
    GROUP BY GROUPING SETS ((w.repo_id, w.day), (w.day))
) grouped
ORDER BY 1, 2;

CREATE UNIQUE INDEX mj_metrics_queue_wait_daily_key ON mj_metrics_queue_wait_daily (repo_id, day);

-- Throughput: jobs (plan jobs included) that ended succeeded, failed or
-- timed out, per repository (0: every repository) and UTC hour they ended.
CREATE MATERIALIZED VIEW mj_metrics_jobs_hourly AS
SELECT coalesce(f.repo_id, 0) AS repo_id,
       f.hour,
       count(*) AS jobs,
       count(*) FILTER (WHERE f.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE f.status IN ('failed', 'timed_out')) AS failed
FROM (
    SELECT j.repo_id, date_trunc('hour', j.finished_at, 'UTC') AS hour, j.status
    FROM jobs j
    WHERE j.status IN ('succeeded', 'failed', 'timed_out') AND j.finished_at IS NOT NULL
) f
GROUP BY GROUPING SETS ((f.repo_id, f.hour), (f.hour))
ORDER BY 1, 2;

CREATE UNIQUE INDEX mj_metrics_jobs_hourly_key ON mj_metrics_jobs_hourly (repo_id, hour);

-- Runs of the last 30 days per repository, counted as in
-- mj_metrics_runs_daily.
CREATE MATERIALIZED VIEW mj_metrics_repos AS
SELECT grouped.repo_id,
       grouped.runs,
       grouped.succeeded,
       grouped.failed,
       grouped.cancelled,
       grouped.durations[1] AS duration_p50,
       grouped.durations[2] AS duration_p95,
       grouped.last_run_at
FROM (
    SELECT pr.repo_id,
           count(*) AS runs,
           count(*) FILTER (WHERE pr.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE pr.status IN ('failed', 'timed_out')) AS failed,
           count(*) FILTER (WHERE pr.status = 'cancelled') AS cancelled,
           percentile_cont(ARRAY[0.5, 0.95]::float8[])
               WITHIN GROUP (ORDER BY extract(epoch FROM pr.finished_at - pr.started_at)::float8)
               FILTER (WHERE pr.status IN ('succeeded', 'failed', 'timed_out')) AS durations,
           max(pr.created_at) AS last_run_at
    FROM pipeline_runs pr
    WHERE pr.created_at >= now() - interval '30 days'
    GROUP BY pr.repo_id
) grouped;

CREATE UNIQUE INDEX mj_metrics_repos_key ON mj_metrics_repos (repo_id);

-- Pipeline jobs (plan jobs excluded) of the runs of the last 30 days, per
-- repository and job name. Counts and durations cover the attempts that
-- succeeded, failed or timed out.
--
-- Flakiness: a job key is flaky at a commit when one of its attempts at
-- that commit failed (or timed out) and a later one succeeded, whether the
-- later attempt was an automatic retry, a re-run or a new run of the same
-- commit. flakiness = flaky_commits / commits, both counted as (job key,
-- commit) pairs, so two matrix variants sharing a name are never compared.
CREATE MATERIALIZED VIEW mj_metrics_job_names AS
WITH attempts AS (
    SELECT j.repo_id, j.name, j.key, j.id AS job_id, pr.commit_sha, a.status, a.started_at,
           extract(epoch FROM a.finished_at - a.started_at)::float8 AS duration
    FROM pipeline_runs pr
    JOIN jobs j ON j.run_id = pr.id AND j.kind = 'script'
    JOIN job_attempts a ON a.job_id = j.id
    WHERE pr.created_at >= now() - interval '30 days'
      AND a.status IN ('succeeded', 'failed', 'timed_out')
),
per_commit AS (
    SELECT repo_id, name,
           max(started_at) FILTER (WHERE status = 'succeeded')
               > min(started_at) FILTER (WHERE status IN ('failed', 'timed_out')) AS flaky
    FROM attempts
    GROUP BY repo_id, name, key, commit_sha
),
per_name AS (
    SELECT repo_id, name,
           count(DISTINCT job_id) AS jobs,
           count(*) AS attempts,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed,
           percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY duration) AS durations
    FROM attempts
    GROUP BY repo_id, name
)
SELECT n.repo_id, n.name, n.jobs, n.attempts, n.succeeded, n.failed,
       n.durations[1] AS duration_p50,
       n.durations[2] AS duration_p95,
       c.commits,
       c.flaky_commits,
       c.flaky_commits::float8 / c.commits AS flakiness
FROM per_name n
JOIN (
    SELECT repo_id, name, count(*) AS commits, count(*) FILTER (WHERE flaky) AS flaky_commits
    FROM per_commit
    GROUP BY repo_id, name
) c ON c.repo_id = n.repo_id AND c.name = n.name;

CREATE UNIQUE INDEX mj_metrics_job_names_key ON mj_metrics_job_names (repo_id, name);

-- Queue wait of the attempts of the runs of the last 30 days (measured as
-- in mj_metrics_queue_wait_daily), per label set the job requires (as
-- stored: the planner sorts and de-duplicates runs-on).
CREATE MATERIALIZED VIEW mj_metrics_queue_wait_labels AS
SELECT grouped.labels,
       grouped.attempts,
       grouped.waits[1] AS wait_p50,
       grouped.waits[2] AS wait_p95,
       grouped.wait_max
FROM (
    SELECT w.labels,
           count(*) AS attempts,
           percentile_cont(ARRAY[0.5, 0.95]::float8[]) WITHIN GROUP (ORDER BY w.wait) AS waits,
           max(w.wait) AS wait_max
    FROM (
        SELECT j.labels,
               extract(epoch FROM a.started_at - coalesce(a.queued_at, j.created_at))::float8 AS wait
        FROM pipeline_runs pr
        JOIN jobs j ON j.run_id = pr.id
        JOIN job_attempts a ON a.job_id = j.id
        WHERE pr.created_at >= now() - interval '30 days'
    ) w
    GROUP BY w.labels
) grouped;

CREATE UNIQUE INDEX mj_metrics_queue_wait_labels_key ON mj_metrics_queue_wait_labels (labels);
