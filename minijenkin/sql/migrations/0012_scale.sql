-- Autovacuum settings for the queue tables, chosen by measurement.
--
-- Every state change of a job is a non-HOT update (status is in the
-- predicates of the partial indexes), so it leaves a dead row version and a
-- new entry in every index of jobs. History is kept, so jobs only grows,
-- and PostgreSQL's default trigger (dead rows above 20% of the table) fires
-- ever more rarely: with 500,000 jobs of history it waits for 100,000 dead
-- rows. These tables are therefore vacuumed after a fixed number of dead
-- rows instead.
--
-- bench/churn.py (a compressed busy day of 20,000 jobs over 500,000 jobs of
-- history, PostgreSQL 18, autovacuum_naptime 1 s; figures in BENCHMARKS.md)
-- measured, against the defaults: peak dead rows in jobs 5,178 instead of
-- 55,983, and jobs_active_run_idx grew to 208 KiB instead of 320 KiB.
-- Claim latency stayed flat with both (last fifth of the day / first fifth:
-- 1.06 and 1.01). A fillfactor of 80 was measured too and rejected: it
-- left 20% of every history page empty (heap 25% larger) for rows that
-- never change again.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0
);

ALTER TABLE pipeline_runs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);

-- Every worker heartbeat rewrites its row (heartbeat_at is indexed).
ALTER TABLE workers SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0
);
