-- When a user last re-ran the run (NULL if never). A re-run plan job may
-- have no earlier attempt (the run was cancelled before a worker claimed
-- it), so its attempt numbers cannot tell a re-run from a first plan.
ALTER TABLE pipeline_runs ADD COLUMN rerun_at timestamptz;
