-- The values of a job's `outputs` after its last step, by output name (NULL
-- until the job's worker stores them). Jobs that need this one read them.
ALTER TABLE jobs ADD COLUMN outputs jsonb;
