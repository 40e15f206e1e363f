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
-- measured, against the defaults: peak dead rows in jobs 4,889 instead of
-- 56,102, and jobs_active_run_idx grew to 160 KiB instead of 272 KiB. Claim
-- latency did not rise over the day with either. A fillfactor of 80 was
-- measured too and is not set: claim latency did not need it, and it left
-- 20% of every page of the bulk-loaded history empty (heap 25% larger).
-- Analyze thresholds keep their defaults (50 rows plus 10% of the table),
-- so that a new installation's small tables get planner statistics early.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 20000,
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
