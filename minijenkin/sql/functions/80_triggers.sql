-- Triggers (webhook and poll heads, cron schedules) and the secrets a job
-- may read.

-- Start a run for a pushed head unless a webhook or a poll already started
-- one for the same (repository, ref, commit), or a webhook moved the ref
-- back to that commit (see below). Returns the run's id and
-- whether this call created it. Two callers racing on one head serialise on
-- the ref_heads primary key: the second finds the first's row once it
-- commits and creates nothing.
CREATE OR REPLACE FUNCTION mj_run_create_for_head_v1(
    p_repo_id bigint,
    p_event text,
    p_ref text,
    p_commit_sha text,
    p_before_sha text,
    p_message text,
    p_author text,
    p_trigger jsonb,
    p_source text
) RETURNS TABLE (run_id bigint, created boolean)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_run_id bigint;
BEGIN
    INSERT INTO ref_heads (repo_id, ref, commit_sha, source)
    VALUES (p_repo_id, p_ref, p_commit_sha, p_source)
    ON CONFLICT DO NOTHING;

    IF NOT FOUND THEN
        -- Locked first, so that a second delivery of the same push waits
        -- here and then finds this head as the ref's latest.
        SELECT h.run_id INTO v_run_id
        FROM ref_heads h
        WHERE h.repo_id = p_repo_id AND h.ref = p_ref AND h.commit_sha = p_commit_sha
        FOR UPDATE;
        -- A webhook whose `before` is the ref's latest head moved the ref
        -- back to a commit built earlier (a force-push or a reset, often a
        -- rollback): a new push, built again. Polls list heads without a
        -- reliable `before`, so for them a known head stays known.
        IF p_source = 'webhook' AND p_before_sha IS NOT NULL AND p_before_sha <> p_commit_sha
           AND p_before_sha = (SELECT latest.commit_sha
                               FROM ref_heads latest
                               WHERE latest.repo_id = p_repo_id AND latest.ref = p_ref
                               ORDER BY latest.created_at DESC
                               LIMIT 1) THEN
            UPDATE ref_heads h SET created_at = clock_timestamp(), source = p_source
            WHERE h.repo_id = p_repo_id AND h.ref = p_ref AND h.commit_sha = p_commit_sha;
        ELSE
            run_id := v_run_id;
            created := false;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    v_run_id := mj_run_create_v1(p_repo_id, p_event, p_ref, p_commit_sha, p_before_sha, p_message,
                                 p_author, p_trigger);
    UPDATE ref_heads h SET run_id = v_run_id
    WHERE h.repo_id = p_repo_id AND h.ref = p_ref AND h.commit_sha = p_commit_sha;

    -- A new head of the default branch may change `on.schedule`: its plan
    -- job reads the schedules (mj_schedules_replace_v1).
    UPDATE repositories r SET schedules_sync_commit = p_commit_sha
    WHERE r.id = p_repo_id AND p_ref = 'refs/heads/' || r.default_branch;

    run_id := v_run_id;
    created := true;
    RETURN NEXT;
END;
$$;

-- Fire one schedule tick: when next_run_at still equals p_expected (the
-- tick the caller computed from), move it to p_next_run_at and start a run
-- at the schedule's commit. Returns the new run's id, or NULL when another
-- process fired this tick first or the schedule is gone.
CREATE OR REPLACE FUNCTION mj_schedule_fire_v1(
    p_schedule_id bigint,
    p_expected timestamptz,
    p_tick timestamptz,
    p_next_run_at timestamptz
) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_schedule schedules%ROWTYPE;
    v_run_id bigint;
BEGIN
    UPDATE schedules s
    SET next_run_at = p_next_run_at, last_tick_at = p_tick, updated_at = now()
    WHERE s.id = p_schedule_id AND s.next_run_at = p_expected
    RETURNING * INTO v_schedule;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    v_run_id := mj_run_create_v1(
        v_schedule.repo_id, 'schedule', v_schedule.ref, v_schedule.commit_sha, NULL,
        format('schedule %s (%s)', v_schedule.cron, v_schedule.timezone), NULL,
        jsonb_build_object(
            'source', 'schedule',
            'branch', substring(v_schedule.ref from 12),
            'schedule', jsonb_build_object('id', v_schedule.id, 'cron', v_schedule.cron,
                                           'timezone', v_schedule.timezone, 'tick', p_tick)));
    UPDATE schedules s SET last_run_id = v_run_id WHERE s.id = p_schedule_id;
    RETURN v_run_id;
END;
$$;

-- Whether the plan job p_job_id (running under p_lease_token) plans the
-- newest head of its repository's default branch, whose pipeline file
-- defines the repository's cron schedules.
CREATE OR REPLACE FUNCTION mj_schedules_sync_wanted_v1(p_job_id bigint, p_lease_token uuid)
RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
        SELECT EXISTS (
            SELECT 1
            FROM jobs j
            JOIN pipeline_runs pr ON pr.id = j.run_id
            JOIN repositories r ON r.id = j.repo_id
            WHERE j.id = p_job_id AND j.kind = 'plan' AND j.status = 'running'
              AND j.lease_token = p_lease_token
              AND pr.ref = 'refs/heads/' || r.default_branch
              AND pr.commit_sha = r.schedules_sync_commit)
    $$;

-- Replace a repository's schedules with those read by a plan job from the
-- pipeline file at p_commit_sha. p_schedules is a JSON array of
-- {"cron": ..., "timezone": ...}; with p_error set the stored schedules stay
-- and the error is recorded. A schedule kept from before keeps its next
-- tick. A new one starts with next_run_at NULL, which the cron loop replaces
-- with a tick computed from the database clock. Returns 'stored', or 'stale' when the lease is
-- gone or a newer head of the default branch arrived meanwhile.
CREATE OR REPLACE FUNCTION mj_schedules_replace_v1(
    p_job_id bigint,
    p_lease_token uuid,
    p_commit_sha text,
    p_schedules jsonb,
    p_error text
) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_repo repositories%ROWTYPE;
BEGIN
    SELECT r.* INTO v_repo
    FROM repositories r
    WHERE r.id = (SELECT j.repo_id FROM jobs j WHERE j.id = p_job_id)
    FOR UPDATE;
    IF NOT mj_schedules_sync_wanted_v1(p_job_id, p_lease_token)
       OR v_repo.schedules_sync_commit IS DISTINCT FROM p_commit_sha THEN
        RETURN 'stale';
    END IF;

    IF p_error IS NULL THEN
        DELETE FROM schedules s
        WHERE s.repo_id = v_repo.id
          AND (s.cron, s.timezone) NOT IN (
              SELECT e ->> 'cron', coalesce(e ->> 'timezone', 'UTC')
              FROM jsonb_array_elements(p_schedules) AS e);

        INSERT INTO schedules (repo_id, cron, timezone, ref, commit_sha)
        SELECT v_repo.id, e ->> 'cron', coalesce(e ->> 'timezone', 'UTC'),
               'refs/heads/' || v_repo.default_branch, p_commit_sha
        FROM jsonb_array_elements(p_schedules) AS e
        ON CONFLICT (repo_id, cron, timezone) DO UPDATE
        SET ref = excluded.ref, commit_sha = excluded.commit_sha, updated_at = now();
    END IF;

    UPDATE repositories r
    SET schedules_commit = p_commit_sha, schedules_sync_commit = NULL,
        schedules_synced_at = now(), schedules_error = p_error
    WHERE r.id = v_repo.id;
    RETURN 'stored';
END;
$$;

-- Names of the secrets a job spec references as ${{ secrets.NAME }} or
-- ${{ secrets['NAME'] }}, anywhere inside an expression. The spec is
-- searched as JSON text, where a double quote appears as \".
CREATE OR REPLACE FUNCTION mj_secret_references(p_spec jsonb) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT DISTINCT coalesce(ref[1], ref[2])
        FROM regexp_matches(p_spec::text, '\$\{\{(.*?)\}\}', 'g') AS expression (parts)
        CROSS JOIN LATERAL regexp_matches(
            expression.parts[1],
            'secrets\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:''|\\")([A-Za-z_][A-Za-z0-9_]*)(?:''|\\")\s*\])',
            'g') AS ref
    $$;

-- The encrypted secrets that a running job may read: only the names its
-- spec references, the job environment's value winning over the
-- repository's. The environment is spec.environment (a name, or an object
-- with a name). Runs of pull requests from forks get none, because their
-- pipeline file was written by someone outside the repository. Raises
-- object_not_in_prerequisite_state when the job is not running under
-- p_lease_token.
CREATE OR REPLACE FUNCTION mj_job_secrets_v1(p_job_id bigint, p_lease_token uuid)
RETURNS TABLE (name text, environment text, repo_id bigint, value_encrypted text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_job jobs%ROWTYPE;
    v_trigger jsonb;
    v_environment text;
BEGIN
    v_job := mj_job_leased_v1(p_job_id, p_lease_token);

    SELECT pr.trigger INTO v_trigger FROM pipeline_runs pr WHERE pr.id = v_job.run_id;
    IF coalesce((v_trigger -> 'pull_request' ->> 'fork')::boolean, false) THEN
        RETURN;
    END IF;

    v_environment := CASE jsonb_typeof(v_job.spec -> 'environment')
                         WHEN 'string' THEN v_job.spec ->> 'environment'
                         WHEN 'object' THEN v_job.spec -> 'environment' ->> 'name'
                     END;

    RETURN QUERY
    SELECT DISTINCT ON (s.name) s.name, s.environment, s.repo_id, s.value_encrypted
    FROM secrets s
    WHERE s.repo_id = v_job.repo_id
      AND (s.environment IS NULL OR s.environment = v_environment)
      AND s.name IN (SELECT mj_secret_references(v_job.spec))
    ORDER BY s.name, (s.environment IS NULL);
END;
$$;
