-- Core schema: repositories, runs, jobs and their attempts, workers, webhook
-- deliveries and the day-partitioned job log.
--
-- Statuses are text with CHECK constraints rather than enum types: adding a
-- value to a CHECK is one transactional statement, while ALTER TYPE ... ADD
-- VALUE cannot be used in the same transaction that adds it.

CREATE TABLE repositories (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL,
    url             text NOT NULL,
    webhook_secret  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT repositories_name_key UNIQUE (name),
    CONSTRAINT repositories_name_format CHECK (
        length(name) BETWEEN 1 AND 200
        AND name ~ '^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$'
    ),
    CONSTRAINT repositories_url_length CHECK (length(url) BETWEEN 1 AND 2048)
);

CREATE TABLE pipeline_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id      bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued',
    event        text NOT NULL,
    ref          text NOT NULL,
    commit_sha   text NOT NULL,
    before_sha   text,
    message      text,
    author       text,
    -- Where the run came from: forge, delivery id, sender, inputs.
    trigger      jsonb NOT NULL DEFAULT '{}',
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    CONSTRAINT pipeline_runs_status_check CHECK (status IN (
        'pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped', 'timed_out'
    )),
    CONSTRAINT pipeline_runs_event_check CHECK (event IN (
        'push', 'tag', 'pull_request', 'manual', 'schedule', 'api'
    )),
    CONSTRAINT pipeline_runs_commit_format CHECK (commit_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$')
);

CREATE INDEX pipeline_runs_repo_idx ON pipeline_runs (repo_id, id DESC);
CREATE INDEX pipeline_runs_active_idx ON pipeline_runs (id)
    WHERE status IN ('pending', 'queued', 'running');

CREATE TABLE workers (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    hostname      text NOT NULL,
    pid           integer,
    labels        text[] NOT NULL DEFAULT '{}',
    concurrency   integer NOT NULL,
    version       text,
    status        text NOT NULL DEFAULT 'active',
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz,
    CONSTRAINT workers_status_check CHECK (status IN ('active', 'stopping', 'stopped', 'lost')),
    CONSTRAINT workers_concurrency_check CHECK (concurrency >= 1)
);

CREATE INDEX workers_live_idx ON workers (heartbeat_at) WHERE status IN ('active', 'stopping');

CREATE TABLE jobs (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id               bigint NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    -- Copied from the run so that the fair claim can walk the queue per
    -- repository without a join.
    repo_id              bigint NOT NULL,
    kind                 text NOT NULL DEFAULT 'script',
    -- Unique within the run: the pipeline's job id plus matrix values.
    key                  text NOT NULL,
    name                 text NOT NULL,
    status               text NOT NULL DEFAULT 'pending',
    spec                 jsonb NOT NULL DEFAULT '{}',
    labels               text[] NOT NULL DEFAULT '{}',
    priority             smallint NOT NULL DEFAULT 0,
    -- Condition evaluated by the worker once every needed job has ended;
    -- NULL means the default: run only when all of them succeeded.
    condition            text,
    continue_on_error    boolean NOT NULL DEFAULT false,
    timeout_seconds      integer,
    attempt              integer NOT NULL DEFAULT 0,
    -- Attempts allowed after infrastructure failures (a lost worker).
    max_attempts         integer NOT NULL DEFAULT 3,
    -- Script-failure retry policy: {"max": N, "on": [...], "exit_codes": [...]}.
    retry                jsonb NOT NULL DEFAULT '{}',
    -- Attempt number before the latest manual re-run; retry budgets count
    -- attempts above it.
    attempt_base         integer NOT NULL DEFAULT 0,
    run_after            timestamptz NOT NULL DEFAULT now(),
    worker_id            uuid,
    lease_token          uuid,
    exit_code            integer,
    reason               text,
    cancel_requested_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    queued_at            timestamptz,
    started_at           timestamptz,
    finished_at          timestamptz,
    CONSTRAINT jobs_run_key_key UNIQUE (run_id, key),
    CONSTRAINT jobs_kind_check CHECK (kind IN ('plan', 'script')),
    CONSTRAINT jobs_status_check CHECK (status IN (
        'pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped', 'timed_out'
    )),
    CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    CONSTRAINT jobs_timeout_check CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    CONSTRAINT jobs_running_lease_check CHECK (
        status <> 'running' OR (worker_id IS NOT NULL AND lease_token IS NOT NULL)
    )
);

-- The claim path reads only queued rows, so finished history never slows it.
CREATE INDEX jobs_queue_idx ON jobs (repo_id, priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_running_worker_idx ON jobs (worker_id) WHERE status = 'running';
CREATE INDEX jobs_run_idx ON jobs (run_id);

CREATE TABLE job_dependencies (
    job_id        bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    needs_job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, needs_job_id),
    CONSTRAINT job_dependencies_not_self CHECK (job_id <> needs_job_id)
);

CREATE INDEX job_dependencies_needs_idx ON job_dependencies (needs_job_id);

-- One row per attempt, kept forever: who ran it, when, and how it ended.
CREATE TABLE job_attempts (
    job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    worker_id    uuid NOT NULL,
    lease_token  uuid NOT NULL,
    status       text NOT NULL DEFAULT 'running',
    exit_code    integer,
    reason       text,
    queued_at    timestamptz,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (job_id, attempt),
    CONSTRAINT job_attempts_status_check CHECK (status IN (
        'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost', 'handed_back', 'skipped'
    ))
);

CREATE INDEX job_attempts_worker_idx ON job_attempts (worker_id);

CREATE TABLE webhook_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    forge        text NOT NULL,
    delivery_id  text,
    -- True once the signature checked out; only accepted deliveries take
    -- part in de-duplication, so a forged request cannot block a real one.
    accepted     boolean NOT NULL DEFAULT false,
    repo_id      bigint REFERENCES repositories (id) ON DELETE SET NULL,
    event        text,
    headers      jsonb NOT NULL DEFAULT '{}',
    status_code  integer,
    outcome      text,
    message      text,
    run_id       bigint REFERENCES pipeline_runs (id) ON DELETE SET NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX webhook_deliveries_dedup_idx ON webhook_deliveries (forge, delivery_id)
    WHERE accepted AND delivery_id IS NOT NULL;
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at DESC);

-- Log lines, range-partitioned by the UTC day the attempt started, so that
-- every line of an attempt lands in one partition (a re-sent batch then hits
-- the same primary key) and retention drops whole partitions.
-- No foreign key to jobs: a per-row check would sit on the ingest path.
CREATE TABLE job_logs (
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    seq      integer NOT NULL,
    day      date NOT NULL,
    -- 1 stdout, 2 stderr, 3 Mini-Jenkin's own messages.
    stream   smallint NOT NULL,
    ts       timestamptz NOT NULL,
    line     text NOT NULL,
    PRIMARY KEY (job_id, attempt, seq, day)
) PARTITION BY RANGE (day);
