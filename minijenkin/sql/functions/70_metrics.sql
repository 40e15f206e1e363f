-- Metrics upkeep: refreshing the materialized views and sampling the log
-- ingest counters. Both run in the leader-elected maintenance loops
-- (maintenance:metrics_refresh, maintenance:log_ingest_sample), so one
-- process at a time does the work.

-- Refresh every metrics view CONCURRENTLY (readers keep reading the previous
-- contents) when the oldest refresh is at least p_min_interval_seconds old
-- or a view was never refreshed; otherwise do nothing. Several API
-- processes tick the loop, and this check keeps the interval the same
-- however many there are. Returns one row per refreshed view with the
-- database clock at its start and end.
--
-- The history views scan jobs, job_attempts and pipeline_runs whole and sort
-- about a row per job. work_mem is raised for this function only, so those
-- sorts stay in memory instead of spilling to temporary files; one process
-- refreshes at a time, so the memory is bounded.
CREATE OR REPLACE FUNCTION mj_metrics_refresh_v1(p_min_interval_seconds double precision)
RETURNS TABLE (view_name text, started_at timestamptz, finished_at timestamptz)
    LANGUAGE plpgsql
    SET work_mem = '64MB'
    AS $$
#variable_conflict use_column
DECLARE
    -- Keep in step with the views of migration 0008_metrics.sql.
    v_views constant text[] := ARRAY[
        'mj_metrics_runs_daily', 'mj_metrics_queue_wait_daily', 'mj_metrics_jobs_hourly',
        'mj_metrics_repos', 'mj_metrics_job_names', 'mj_metrics_queue_wait_labels'];
    v_view text;
    v_started timestamptz;
    v_finished timestamptz;
BEGIN
    IF (SELECT count(*) FROM metrics_refreshes r WHERE r.view_name = ANY (v_views)) = cardinality(v_views)
       AND (SELECT min(r.refreshed_at) FROM metrics_refreshes r WHERE r.view_name = ANY (v_views))
           > now() - make_interval(secs => p_min_interval_seconds) THEN
        RETURN;
    END IF;

    FOREACH v_view IN ARRAY v_views LOOP
        v_started := clock_timestamp();
        EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v_view);
        v_finished := clock_timestamp();

        INSERT INTO metrics_refreshes AS r (view_name, refreshed_at, duration_seconds)
        VALUES (v_view, v_started, extract(epoch FROM v_finished - v_started)::float8)
        ON CONFLICT (view_name) DO UPDATE
            SET refreshed_at = excluded.refreshed_at, duration_seconds = excluded.duration_seconds;

        view_name := v_view;
        started_at := v_started;
        finished_at := v_finished;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Store the current insert counter of every job_logs partition (what
-- pg_stat_user_tables shows as n_tup_ins, read with the function behind it
-- so that only the partitions are looked at) and delete samples older than
-- p_keep_seconds. PostgreSQL's cumulative statistics maintain the counters
-- anyway, so the ingest path does no extra work. Returns the number of
-- partitions sampled.
CREATE OR REPLACE FUNCTION mj_metrics_log_ingest_sample_v1(p_keep_seconds double precision)
RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_counters jsonb;
BEGIN
    SELECT coalesce(jsonb_object_agg(i.inhrelid::text, pg_stat_get_tuples_inserted(i.inhrelid)), '{}')
    INTO v_counters
    FROM pg_inherits i
    WHERE i.inhparent = 'job_logs'::regclass;

    INSERT INTO metrics_log_ingest_samples (sampled_at, counters)
    VALUES (now(), v_counters)
    ON CONFLICT (sampled_at) DO NOTHING;

    DELETE FROM metrics_log_ingest_samples
    WHERE sampled_at < now() - make_interval(secs => p_keep_seconds);

    RETURN (SELECT count(*) FROM jsonb_object_keys(v_counters));
END;
$$;
