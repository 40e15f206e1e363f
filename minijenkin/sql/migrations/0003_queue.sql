-- Indexes for the queue's run bookkeeping and fair claiming.
--
-- Every finished job looks for the pending jobs of its run that it may
-- unblock (mj_run_advance_v1) and for any job of the run still active
-- (mj_run_close_if_done_v1). With only jobs_run_idx, both visit every job of
-- the run, so finishing a run of N jobs costs O(N^2) row visits. Both
-- predicates (status = 'pending', mj_status_is_active(status)) imply this
-- index's predicate, so the planner can use it for either.
CREATE INDEX jobs_active_run_idx ON jobs (run_id, status)
    WHERE status IN ('pending', 'queued', 'running');

-- The fair claim counts each candidate repository's running jobs.
CREATE INDEX jobs_running_repo_idx ON jobs (repo_id) WHERE status = 'running';
