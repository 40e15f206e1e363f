-- Deployments: environments, their lock holders and history, and the job
-- states a deploy passes through before it runs.
--
-- A job with an `environment` (or a job-level `concurrency` group) runs only
-- while its worker holds a session advisory lock for that name on a
-- dedicated connection. A job that cannot take the lock is parked in
-- `waiting`; one whose environment requires approval is parked in
-- `awaiting_approval`; an older pending job of a `queue: latest` group ends
-- as `superseded`.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped', 'timed_out',
    'waiting', 'awaiting_approval', 'superseded'
));

-- Copied from the graph entry by mj_plan_submit_v1, so that the deploy
-- queue of a name can be read through an index.
ALTER TABLE jobs ADD COLUMN environment text;
ALTER TABLE jobs ADD COLUMN concurrency_group text;

-- Parked jobs are active (their run has not ended): widen the partial index
-- that serves mj_status_is_active, whose predicate must imply this one.
DROP INDEX IF EXISTS jobs_active_run_idx;
CREATE INDEX jobs_active_run_idx ON jobs (run_id, status)
    WHERE status IN ('pending', 'queued', 'running', 'waiting', 'awaiting_approval');

-- The deploy queue of an environment or group: jobs that have not started
-- yet, in id order.
CREATE INDEX jobs_environment_queue_idx ON jobs (environment, id)
    WHERE environment IS NOT NULL AND status IN ('queued', 'waiting', 'awaiting_approval');
CREATE INDEX jobs_concurrency_queue_idx ON jobs (concurrency_group, id)
    WHERE concurrency_group IS NOT NULL AND status IN ('queued', 'waiting', 'awaiting_approval');

-- Deployment environments, created on the first deploy to a name. The name
-- is global: two repositories that deploy to `production` share its lock.
CREATE TABLE environments (
    name               text PRIMARY KEY,
    requires_approval  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT environments_name_length CHECK (length(name) BETWEEN 1 AND 255)
);

-- One row per attempt of a deploy job to reach its environment, kept as
-- the environment's history. A re-run of the job starts a new row.
CREATE TABLE deployments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    run_id         bigint NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    environment    text NOT NULL REFERENCES environments (name),
    status         text NOT NULL,
    lock_failures  integer NOT NULL DEFAULT 0,
    -- approved or rejected, by whom and when; NULL while undecided.
    decision       text,
    decided_by     text,
    decided_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- When the job took the environment's lock.
    started_at     timestamptz,
    finished_at    timestamptz,
    CONSTRAINT deployments_status_check CHECK (status IN (
        'waiting', 'awaiting_approval', 'running', 'succeeded', 'failed', 'cancelled', 'skipped',
        'timed_out', 'superseded'
    )),
    CONSTRAINT deployments_decision_check CHECK (decision IS NULL OR decision IN ('approved', 'rejected'))
);

CREATE INDEX deployments_environment_idx ON deployments (environment, id DESC);
-- The deploy figures on /metrics read the last 30 days of ended deploys
-- through this index rather than scanning the history.
CREATE INDEX deployments_finished_idx ON deployments (finished_at) WHERE started_at IS NOT NULL;
CREATE UNIQUE INDEX deployments_open_job_idx ON deployments (job_id) WHERE finished_at IS NULL;

-- Failed pg_try_advisory_lock calls per lock name (`deploy:<environment>`
-- or `concurrency:<group>`): the contention figure.
CREATE TABLE deploy_lock_failures (
    name      text PRIMARY KEY,
    failures  bigint NOT NULL DEFAULT 0,
    last_at   timestamptz NOT NULL DEFAULT now()
);

-- Who holds each deploy lock, for display and for cancel-in-progress. The
-- advisory lock is the truth: a row whose lock is free (its worker died)
-- is stale and is replaced or removed.
CREATE TABLE deploy_locks (
    name         text PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    run_id       bigint NOT NULL,
    job_name     text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now()
);
