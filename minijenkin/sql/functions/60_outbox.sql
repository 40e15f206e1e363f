-- The notification outbox: enqueueing deliveries in the transaction of the
-- state change that causes them, claiming them for dispatchers, recording
-- outcomes, redelivery and the figures exported as metrics.
--
-- Events: run.succeeded, run.failed, run.fixed (a success after the
-- previous finished run of the same repository and ref failed),
-- run.cancelled, deploy.started, deploy.finished. A target that subscribes
-- to run.succeeded also receives run.fixed, which is a success too; a target
-- gets one row per event either way.

-- A timestamp as ISO 8601 text in UTC, whatever the session's TimeZone, so
-- that payloads built by different processes look alike.
CREATE OR REPLACE FUNCTION mj_outbox_time_text(p_time timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

CREATE OR REPLACE FUNCTION mj_outbox_seconds_between(p_start timestamptz, p_end timestamptz)
RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT round(extract(epoch FROM p_end - p_start)::numeric, 3)::double precision $$;

-- The facts about a run that every notification kind is rendered from:
-- repository, run, commit and the run's script jobs. Repository URLs are
-- left out because they may contain credentials.
CREATE OR REPLACE FUNCTION mj_outbox_run_facts_v1(p_run_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
        SELECT jsonb_build_object(
            'repository', jsonb_build_object('id', r.id, 'name', r.name),
            'run', jsonb_build_object(
                'id', pr.id,
                'status', pr.status,
                'trigger', pr.event,
                'ref', pr.ref,
                'branch', CASE WHEN pr.ref LIKE 'refs/heads/%' THEN substr(pr.ref, 12) END,
                'tag', CASE WHEN pr.ref LIKE 'refs/tags/%' THEN substr(pr.ref, 11) END,
                'reason', pr.reason,
                'created_at', mj_outbox_time_text(pr.created_at),
                'started_at', mj_outbox_time_text(pr.started_at),
                'finished_at', mj_outbox_time_text(pr.finished_at),
                'queued_seconds', mj_outbox_seconds_between(pr.created_at, pr.started_at),
                'duration_seconds', mj_outbox_seconds_between(pr.started_at, pr.finished_at)
            ),
            'commit', jsonb_build_object(
                'sha', pr.commit_sha,
                'before', pr.before_sha,
                'message', pr.message,
                'author', pr.author
            ),
            'jobs', coalesce((
                SELECT jsonb_agg(jsonb_build_object(
                           'id', j.id,
                           'key', j.key,
                           'name', j.name,
                           'status', j.status,
                           'attempt', j.attempt,
                           'exit_code', j.exit_code,
                           'reason', j.reason,
                           'started_at', mj_outbox_time_text(j.started_at),
                           'finished_at', mj_outbox_time_text(j.finished_at),
                           'duration_seconds', mj_outbox_seconds_between(j.started_at, j.finished_at)
                       ) ORDER BY j.id)
                FROM jobs j
                WHERE j.run_id = pr.id AND j.kind = 'script'
            ), '[]'::jsonb)
        )
        FROM pipeline_runs pr
        JOIN repositories r ON r.id = pr.repo_id
        WHERE pr.id = p_run_id
    $$;

-- Insert one outbox row per target of the repository that subscribes to
-- `p_event`, and wake the dispatchers. Returns the number of rows inserted.
CREATE OR REPLACE FUNCTION mj_outbox_insert_v1(
    p_repo_id bigint,
    p_run_id bigint,
    p_event text,
    p_payload jsonb,
    p_status_targets boolean
) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO outbox (target_id, repo_id, run_id, event, payload)
    SELECT t.id, t.repo_id, p_run_id, p_event, p_payload
    FROM notification_targets t
    WHERE t.repo_id = p_repo_id
      AND (p_event = ANY (t.events) OR (p_event = 'run.fixed' AND 'run.succeeded' = ANY (t.events)))
      AND (p_status_targets OR t.kind NOT IN ('github-status', 'gitlab-status'))
    ORDER BY t.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    IF v_count > 0 THEN
        -- One notification per transaction: identical payloads are merged.
        PERFORM pg_notify('mj_outbox_v1', '');
    END IF;
    RETURN v_count;
END;
$$;

-- Enqueue the notifications of a run that has just closed. Called by
-- mj_run_close_if_done_v1 in the transaction that closes the run, which
-- holds the run's row lock. Returns the number of rows inserted.
CREATE OR REPLACE FUNCTION mj_outbox_enqueue_run_v1(p_run_id bigint) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_run pipeline_runs%ROWTYPE;
    v_event text;
    v_previous text;
    v_payload jsonb;
BEGIN
    SELECT * INTO v_run FROM pipeline_runs WHERE id = p_run_id;
    -- Most repositories have no targets: skip building the payload for them.
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM notification_targets WHERE repo_id = v_run.repo_id) THEN
        RETURN 0;
    END IF;

    -- The previous verdict on the same ref; cancelled and skipped runs
    -- carry none, so they are passed over.
    -- NOTE: a re-run overwrites its run's earlier status, so a failed run
    -- that succeeds on re-run is compared with the runs before it, not with
    -- its own failure, and reports run.succeeded unless one of those failed.
    SELECT status INTO v_previous
    FROM pipeline_runs
    WHERE repo_id = v_run.repo_id
      AND ref = v_run.ref
      AND id <> p_run_id
      AND finished_at IS NOT NULL
      AND status IN ('succeeded', 'failed', 'timed_out')
    ORDER BY finished_at DESC, id DESC
    LIMIT 1;

    v_event := CASE
        WHEN v_run.status = 'succeeded' AND v_previous IN ('failed', 'timed_out') THEN 'run.fixed'
        WHEN v_run.status = 'succeeded' THEN 'run.succeeded'
        WHEN v_run.status IN ('failed', 'timed_out') THEN 'run.failed'
        WHEN v_run.status = 'cancelled' THEN 'run.cancelled'
    END;
    IF v_event IS NULL THEN
        -- A skipped run (no workflow matched the event) notifies nobody.
        RETURN 0;
    END IF;

    v_payload := mj_outbox_run_facts_v1(p_run_id)
        || jsonb_build_object('event', v_event, 'occurred_at', mj_outbox_time_text(now()),
                              'previous_status', v_previous);
    RETURN mj_outbox_insert_v1(v_run.repo_id, p_run_id, v_event, v_payload, true);
END;
$$;

-- Enqueue the notifications of a deploy: 'deploy.started' when the job that
-- holds the environment's lock starts, 'deploy.finished' when it ends, with
-- the job's status. Call it in the transaction that records that change.
-- Commit-status targets never receive deploy events. Returns the number of
-- rows inserted.
CREATE OR REPLACE FUNCTION mj_outbox_enqueue_deploy_v1(
    p_job_id bigint,
    p_environment text,
    p_event text,
    p_status text
) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
    v_payload jsonb;
BEGIN
    IF p_event IS NULL OR p_event NOT IN ('deploy.started', 'deploy.finished') THEN
        RAISE EXCEPTION 'invalid deploy event %: use deploy.started or deploy.finished',
            quote_nullable(p_event)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM notification_targets WHERE repo_id = v_job.repo_id) THEN
        RETURN 0;
    END IF;

    v_payload := mj_outbox_run_facts_v1(v_job.run_id)
        || jsonb_build_object(
            'event', p_event,
            'occurred_at', mj_outbox_time_text(now()),
            'deployment', jsonb_build_object(
                'environment', p_environment,
                'status', p_status,
                'job_id', v_job.id,
                'job_name', v_job.name,
                'started_at', mj_outbox_time_text(v_job.started_at),
                'finished_at', mj_outbox_time_text(v_job.finished_at)
            ));
    RETURN mj_outbox_insert_v1(v_job.repo_id, v_job.run_id, p_event, v_payload, false);
END;
$$;

-- Claim up to p_limit due deliveries for one dispatcher: pending rows whose
-- next attempt is due, and rows whose previous dispatcher's lease ran out
-- (it died or lost the database mid-delivery). Each claimed row gets a new
-- lease token and is due again when the lease ends.
--
-- A claim takes no more rows of a target than p_per_target minus the
-- target's deliveries in flight (under a lease that has not ended, on any
-- dispatcher). A receiver that hangs until the request times out therefore
-- occupies about that many sending slots, and the other targets'
-- notifications go out meanwhile. NOTE: two dispatchers claiming at the
-- same moment may each take up to the limit. Within the limit the oldest
-- due rows go first.
--
-- A row whose lease ran out after its dead-letter horizon passed goes to
-- the dead letter instead, so a delivery that kills every dispatcher that
-- tries it cannot loop forever.
CREATE OR REPLACE FUNCTION mj_outbox_claim_v2(
    p_dispatcher text,
    p_limit integer,
    p_lease_seconds double precision,
    p_horizon_seconds double precision,
    p_per_target integer
) RETURNS TABLE (
    id bigint,
    target_id bigint,
    run_id bigint,
    event text,
    payload jsonb,
    idempotency_key uuid,
    attempts integer,
    lease_token uuid,
    kind text,
    url_encrypted text,
    secret_encrypted text,
    options jsonb,
    repo_name text
)
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_limit < 1 OR p_per_target < 1 THEN
        RETURN;
    END IF;

    UPDATE outbox o
    SET state = 'dead', dead_at = now(), lease_token = NULL,
        last_error = 'the dispatcher stopped during the last attempt, and the retry schedule has ended'
    WHERE o.id IN (
        SELECT c.id
        FROM outbox c
        WHERE c.state = 'delivering'
          AND c.next_attempt_at <= now()
          AND c.scheduled_at + make_interval(secs => p_horizon_seconds) <= now()
        FOR UPDATE SKIP LOCKED
    );

    RETURN QUERY
    WITH due AS (
        SELECT picked.id, picked.next_attempt_at
        FROM notification_targets t
        CROSS JOIN LATERAL (
            SELECT c.id, c.next_attempt_at
            FROM outbox c
            WHERE c.target_id = t.id
              AND c.state IN ('pending', 'delivering')
              AND c.next_attempt_at <= now()
            ORDER BY c.next_attempt_at, c.id
            LIMIT greatest(0, p_per_target - (
                SELECT count(*)
                FROM outbox f
                WHERE f.target_id = t.id AND f.state = 'delivering' AND f.next_attempt_at > now()))
        ) picked
    ),
    -- Only the rows this claim takes are locked, so a concurrent claim can
    -- take the other due rows. The conditions are checked again on the
    -- locked row, which another dispatcher may have claimed meanwhile.
    chosen AS (
        SELECT locked.id
        FROM outbox locked
        WHERE locked.id = ANY (ARRAY(SELECT due.id FROM due
                                     ORDER BY due.next_attempt_at, due.id LIMIT p_limit))
          AND locked.state IN ('pending', 'delivering')
          AND locked.next_attempt_at <= now()
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE outbox o
        SET state = 'delivering',
            lease_token = gen_random_uuid(),
            dispatcher = p_dispatcher,
            attempts = o.attempts + 1,
            last_attempt_at = now(),
            next_attempt_at = now() + make_interval(secs => p_lease_seconds)
        FROM chosen
        WHERE o.id = chosen.id
        RETURNING o.*
    )
    SELECT c.id, c.target_id, c.run_id, c.event, c.payload, c.idempotency_key, c.attempts,
           c.lease_token, t.kind, t.url_encrypted, t.secret_encrypted, t.options, r.name
    FROM claimed c
    JOIN notification_targets t ON t.id = c.target_id
    JOIN repositories r ON r.id = t.repo_id
    ORDER BY c.id;
END;
$$;

-- The claim of dispatchers released before mj_outbox_claim_v2, which had no
-- limit per target.
CREATE OR REPLACE FUNCTION mj_outbox_claim_v1(
    p_dispatcher text,
    p_limit integer,
    p_lease_seconds double precision,
    p_horizon_seconds double precision
) RETURNS TABLE (
    id bigint,
    target_id bigint,
    run_id bigint,
    event text,
    payload jsonb,
    idempotency_key uuid,
    attempts integer,
    lease_token uuid,
    kind text,
    url_encrypted text,
    secret_encrypted text,
    options jsonb,
    repo_name text
)
    LANGUAGE sql
    AS $$
        SELECT * FROM mj_outbox_claim_v2(p_dispatcher, p_limit, p_lease_seconds, p_horizon_seconds,
                                         2147483647)
    $$;

-- Record the outcome of one attempt, fenced by its lease token.
--
-- p_outcome: 'delivered'; 'retry' (schedule the next attempt after
-- p_retry_after_seconds when the receiver named a delay, else after an
-- exponential backoff with jitter); 'failed' (permanent: dead letter now).
-- A retry that would fall after the dead-letter horizon, counted from
-- scheduled_at, goes to the dead letter instead. A receiver's delay also
-- holds back the target's other pending rows, so they do not hit a rate
-- limit that is known to be in force.
--
-- Returns the new state, or 'stale' when the lease is no longer current
-- (another dispatcher claimed the row after this one's lease ran out).
CREATE OR REPLACE FUNCTION mj_outbox_report_v1(
    p_id bigint,
    p_lease_token uuid,
    p_outcome text,
    p_status_code integer,
    p_error text,
    p_retry_after_seconds double precision,
    p_backoff_base_seconds double precision,
    p_backoff_max_seconds double precision,
    p_horizon_seconds double precision
) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_row outbox%ROWTYPE;
    v_next timestamptz;
BEGIN
    SELECT * INTO v_row FROM outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR v_row.state <> 'delivering' OR v_row.lease_token IS DISTINCT FROM p_lease_token THEN
        RETURN 'stale';
    END IF;

    IF p_outcome = 'delivered' THEN
        UPDATE outbox
        SET state = 'delivered', delivered_at = now(), lease_token = NULL,
            last_status_code = p_status_code, last_error = NULL
        WHERE id = p_id;
        RETURN 'delivered';
    ELSIF p_outcome = 'retry' THEN
        IF p_retry_after_seconds IS NOT NULL THEN
            -- A delay past the horizon sends the row to the dead letter below
            -- either way. Capping it there keeps a huge Retry-After from
            -- overflowing the timestamp, which would fail this function.
            v_next := now() + make_interval(
                secs => least(greatest(p_retry_after_seconds, 0), p_horizon_seconds));
        ELSE
            v_next := now() + mj_backoff_v1(v_row.attempts, p_backoff_base_seconds, p_backoff_max_seconds);
        END IF;

        IF v_next > v_row.scheduled_at + make_interval(secs => p_horizon_seconds) THEN
            UPDATE outbox
            SET state = 'dead', dead_at = now(), lease_token = NULL,
                last_status_code = p_status_code,
                last_error = p_error || ' (retry schedule ended after ' || v_row.attempts || ' attempts)'
            WHERE id = p_id;
            RETURN 'dead';
        END IF;

        UPDATE outbox
        SET state = 'pending', next_attempt_at = v_next, lease_token = NULL,
            last_status_code = p_status_code, last_error = p_error
        WHERE id = p_id;
        IF p_retry_after_seconds IS NOT NULL THEN
            UPDATE outbox
            SET next_attempt_at = v_next
            WHERE target_id = v_row.target_id AND state = 'pending' AND next_attempt_at < v_next;
        END IF;
        RETURN 'pending';
    ELSIF p_outcome = 'failed' THEN
        UPDATE outbox
        SET state = 'dead', dead_at = now(), lease_token = NULL,
            last_status_code = p_status_code, last_error = p_error
        WHERE id = p_id;
        RETURN 'dead';
    END IF;
    RAISE EXCEPTION 'invalid delivery outcome %: use delivered, retry or failed', p_outcome
        USING ERRCODE = 'invalid_parameter_value';
END;
$$;

-- Schedule a delivery again, now, with a fresh retry schedule and the same
-- idempotency key. Works on dead, delivered and pending rows; a row being
-- delivered is refused. Returns the row's new state.
CREATE OR REPLACE FUNCTION mj_outbox_redeliver_v1(p_id bigint) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_state = 'delivering' THEN
        RAISE EXCEPTION 'delivery % is being delivered right now; try again once it ends', p_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    UPDATE outbox
    SET state = 'pending', attempts = 0, scheduled_at = now(), next_attempt_at = now(),
        delivered_at = NULL, dead_at = NULL
    WHERE id = p_id;
    PERFORM pg_notify('mj_outbox_v1', '');
    RETURN 'pending';
END;
$$;

-- Figures for monitoring: the backlog (rows still to deliver, split into
-- waiting and in flight), the dead letters, and how long the oldest due
-- row has waited (0 when none is due).
CREATE OR REPLACE FUNCTION mj_outbox_stats_v1() RETURNS TABLE (
    pending bigint,
    delivering bigint,
    dead bigint,
    oldest_due_seconds double precision
)
    LANGUAGE sql STABLE
    AS $$
        SELECT
            (SELECT count(*) FROM outbox WHERE state = 'pending'),
            (SELECT count(*) FROM outbox WHERE state = 'delivering'),
            (SELECT count(*) FROM outbox WHERE state = 'dead'),
            coalesce((SELECT extract(epoch FROM now() - min(next_attempt_at))::double precision
                      FROM outbox
                      WHERE state = 'pending' AND next_attempt_at <= now()), 0)
    $$;
