-- Dashboard: samples of the queue for the "queue depth over time" chart.
--
-- Queue depth is a live figure (jobs in status queued right now), so the
-- history behind its chart has to be recorded as it happens: the
-- `queue_sample` maintenance loop stores one row per tick. Counting uses the
-- partial indexes on queued and running jobs, so a sample costs the same
-- however long the history is.
CREATE TABLE metrics_queue_samples (
    sampled_at  timestamptz PRIMARY KEY,
    queued      integer NOT NULL,
    running     integer NOT NULL,
    CONSTRAINT metrics_queue_samples_counts_check CHECK (queued >= 0 AND running >= 0)
);
