-- Runs of a pipeline-wide concurrency group start in the order they joined
-- its queue (when planned, or when re-run), which is not their id order.
ALTER TABLE pipeline_runs ADD COLUMN concurrency_entered_at timestamptz;
