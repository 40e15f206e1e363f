-- Pipeline-wide concurrency groups (the top-level `concurrency` of a
-- pipeline file). The plan job stores the evaluated group on its run; the
-- functions in 20_runs.sql let one run of a group be active at a time and
-- keep the others as pending runs, in order of run id.
ALTER TABLE pipeline_runs ADD COLUMN concurrency_group text;

-- The active runs of a group: its holder and the runs waiting behind it.
CREATE INDEX pipeline_runs_concurrency_idx ON pipeline_runs (repo_id, concurrency_group, id)
    WHERE concurrency_group IS NOT NULL AND status IN ('pending', 'queued', 'running');
