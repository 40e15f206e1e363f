-- Triggers beyond the GitHub push webhook, and secrets encrypted at rest:
-- encrypted webhook secrets, polling, cron schedules, the heads that
-- automatic triggers have built, and per-repository and per-environment
-- secrets.

-- Webhook secrets move to `webhook_secret_encrypted` (AES-GCM, see
-- minijenkin/crypto.py). The plaintext column stays for rows written before
-- this migration: the API encrypts and clears them at start-up and on first
-- use, because only the application holds the key.
ALTER TABLE repositories
    ADD COLUMN webhook_secret_encrypted text,
    ADD COLUMN default_branch text NOT NULL DEFAULT 'main',
    -- Seconds between `git ls-remote` polls; NULL means no polling.
    ADD COLUMN poll_interval_seconds integer,
    ADD COLUMN next_poll_at timestamptz,
    ADD COLUMN polled_at timestamptz,
    ADD COLUMN poll_error text,
    -- The default-branch commit whose pipeline file defined the schedules,
    -- and the newer head whose plan job is to read them again.
    ADD COLUMN schedules_commit text,
    ADD COLUMN schedules_sync_commit text,
    ADD COLUMN schedules_synced_at timestamptz,
    ADD COLUMN schedules_error text,
    ADD CONSTRAINT repositories_poll_interval_check
        CHECK (poll_interval_seconds IS NULL OR poll_interval_seconds BETWEEN 5 AND 604800),
    ADD CONSTRAINT repositories_default_branch_length CHECK (length(default_branch) BETWEEN 1 AND 255);

CREATE INDEX repositories_poll_due_idx ON repositories (next_poll_at)
    WHERE poll_interval_seconds IS NOT NULL;

-- Every (ref, commit) that a push webhook or a poll started a run for. A
-- head is built once whichever trigger sees it first; the other finds the
-- row and creates nothing. Rows are kept so that a late webhook for an old
-- head cannot start it again.
CREATE TABLE ref_heads (
    repo_id     bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    ref         text NOT NULL,
    commit_sha  text NOT NULL,
    run_id      bigint REFERENCES pipeline_runs (id) ON DELETE SET NULL,
    -- Which trigger saw the head first: 'webhook' or 'poll'.
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, ref, commit_sha),
    CONSTRAINT ref_heads_source_check CHECK (source IN ('webhook', 'poll'))
);

CREATE INDEX ref_heads_latest_idx ON ref_heads (repo_id, ref, created_at DESC);

-- Cron schedules read from `on.schedule` of the pipeline file on the
-- default branch, by the plan job of each new head there. next_run_at is
-- the next tick to fire (NULL until the cron loop computes the first one);
-- firing moves it forward with a compare-and-set, so one tick fires at most
-- once however many API processes look at it.
CREATE TABLE schedules (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id      bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    cron         text NOT NULL,
    timezone     text NOT NULL DEFAULT 'UTC',
    -- Where runs start: the default branch and its commit at the last sync.
    ref          text NOT NULL,
    commit_sha   text NOT NULL,
    next_run_at  timestamptz,
    last_tick_at timestamptz,
    last_run_id  bigint REFERENCES pipeline_runs (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_repo_cron_key UNIQUE (repo_id, cron, timezone),
    CONSTRAINT schedules_commit_format CHECK (commit_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$')
);

CREATE INDEX schedules_due_idx ON schedules (next_run_at);
CREATE INDEX schedules_pending_idx ON schedules (id) WHERE next_run_at IS NULL;

-- Secrets of a repository (environment NULL) or of one of its deployment
-- environments. Only the AES-GCM ciphertext is stored; the API never
-- returns it, and workers get it only for jobs that reference the name.
CREATE TABLE secrets (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id          bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    environment      text,
    name             text NOT NULL,
    value_encrypted  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT secrets_repo_environment_name_key UNIQUE NULLS NOT DISTINCT (repo_id, environment, name),
    CONSTRAINT secrets_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,99}$'),
    CONSTRAINT secrets_environment_length CHECK (environment IS NULL OR length(environment) BETWEEN 1 AND 255)
);

-- Deliveries are listed newest first, optionally per repository.
CREATE INDEX webhook_deliveries_repo_idx ON webhook_deliveries (repo_id, id DESC);
