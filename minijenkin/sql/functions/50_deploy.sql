-- Deploy locks, the deploy queue, approvals and the deployment history.
--
-- A job with an environment holds the session advisory lock
-- `deploy:<environment>` for its whole run, a job with a concurrency group
-- holds `concurrency:<group>`. The worker takes them with
-- mj_deploy_acquire_v1 and gives them back with mj_deploy_release_v1, both
-- on a dedicated connection that lives as long as the job: a worker that
-- dies closes that connection and PostgreSQL releases its locks.
--
-- A job that cannot take its locks is parked in `waiting`, without a
-- worker. Releasing a lock moves the oldest waiting job of that name back
-- to `queued` and sends NOTIFY mj_jobs_v1. A lock released by a dying
-- session sends nothing, so the maintenance sweep (mj_deploy_sweep_v1)
-- wakes the queues whose lock is free.
--
-- Every change to the queue of a name happens under the transaction lock
-- `deploy_queue:<name>`, taken before any row lock and in name order, so a
-- release cannot run between a failed try and the parking of that job.

-- Lock names of a job, sorted: the order in which they are taken.
CREATE OR REPLACE FUNCTION mj_deploy_lock_names_v1(p_environment text, p_group text)
RETURNS text[]
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT coalesce(array_agg(n ORDER BY n), '{}')
        FROM unnest(ARRAY['deploy:' || p_environment, 'concurrency:' || p_group]) AS n
        WHERE n IS NOT NULL
    $$;

-- The display form of a lock name in messages: `production`, `concurrency group web`.
CREATE OR REPLACE FUNCTION mj_deploy_lock_label(p_name text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN p_name LIKE 'deploy:%' THEN substr(p_name, 8)
                    ELSE 'concurrency group ' || substr(p_name, 13) END
    $$;

-- Take the queue locks of these names (transaction locks, in name order).
CREATE OR REPLACE FUNCTION mj_deploy_queue_lock_v1(p_names text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN SELECT n FROM unnest(p_names) AS n ORDER BY n LOOP
        PERFORM mj_lock_xact_v1('deploy_queue:' || v_name);
    END LOOP;
END;
$$;

-- The jobs in the queue of one lock name (not started yet, or parked).
CREATE OR REPLACE FUNCTION mj_deploy_queue_v1(p_name text, p_statuses text[])
RETURNS SETOF jobs
    LANGUAGE sql STABLE
    AS $$
        SELECT * FROM jobs j
        WHERE p_name LIKE 'deploy:%' AND j.environment = substr(p_name, 8)
          AND j.status = ANY (p_statuses)
        UNION ALL
        SELECT * FROM jobs j
        WHERE p_name LIKE 'concurrency:%' AND j.concurrency_group = substr(p_name, 13)
          AND j.status = ANY (p_statuses)
    $$;

-- Take a running job off its worker and park it in `waiting` or
-- `awaiting_approval`. The attempt never started its steps, so it is
-- forgotten rather than recorded (attempts get their job_attempts row when
-- they end). The caller holds the run and job locks.
CREATE OR REPLACE FUNCTION mj_deploy_park_v1(p_job_id bigint, p_status text, p_reason text)
RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id;
    UPDATE jobs
    SET status = p_status, attempt = greatest(attempt - 1, 0), worker_id = NULL, lease_token = NULL,
        started_at = NULL, reason = p_reason, run_after = now()
    WHERE id = p_job_id;
    UPDATE deployments SET status = p_status WHERE job_id = p_job_id AND finished_at IS NULL;
    PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
END;
$$;

-- Move the oldest waiting job of a lock name back to the queue and wake the
-- workers. Returns its id, or NULL. The caller holds the name's queue lock.
CREATE OR REPLACE FUNCTION mj_deploy_wake_v1(p_name text) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_head record;
BEGIN
    SELECT q.id, q.run_id INTO v_head
    FROM mj_deploy_queue_v1(p_name, ARRAY['waiting']) q
    ORDER BY q.id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    PERFORM 1 FROM pipeline_runs WHERE id = v_head.run_id FOR UPDATE;
    UPDATE jobs SET status = 'queued', run_after = now() WHERE id = v_head.id AND status = 'waiting';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('mj_jobs_v1', v_head.run_id::text);
    PERFORM pg_notify('mj_runs_v1', v_head.run_id::text);
    RETURN v_head.id;
END;
$$;

-- Lock the runs of the oldest waiting job of each name, in run id order as
-- every transaction that locks several runs does, before any of them is
-- woken: waking name by name would lock them in name order. The caller
-- holds the names' queue locks, so these jobs stay the oldest.
CREATE OR REPLACE FUNCTION mj_deploy_lock_head_runs_v1(p_names text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1
    FROM pipeline_runs pr
    WHERE pr.id IN (SELECT head.run_id
                    FROM unnest(p_names) AS n (name)
                    CROSS JOIN LATERAL (SELECT q.run_id
                                        FROM mj_deploy_queue_v1(n.name, ARRAY['waiting']) q
                                        ORDER BY q.id
                                        LIMIT 1) head)
    ORDER BY pr.id
    FOR UPDATE;
END;
$$;

-- Close the open deployment row of a job that is no longer running: with
-- the job's final status, or `failed` when the job was queued for another
-- attempt. Sends deploy.finished for a deploy that had started. Returns
-- whether a row was closed.
CREATE OR REPLACE FUNCTION mj_deploy_record_end_v1(p_job_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_row record;
BEGIN
    UPDATE deployments d
    SET status = CASE WHEN mj_status_is_active(j.status) THEN 'failed' ELSE j.status END,
        finished_at = coalesce(j.finished_at, now())
    FROM jobs j
    WHERE d.job_id = p_job_id AND j.id = d.job_id AND d.finished_at IS NULL
      AND (NOT mj_status_is_active(j.status) OR (d.status = 'running' AND j.status <> 'running'))
    RETURNING d.environment, d.status, d.started_at INTO v_row;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF v_row.started_at IS NOT NULL THEN
        PERFORM mj_outbox_enqueue_deploy_v1(p_job_id, v_row.environment, 'deploy.finished', v_row.status);
    END IF;
    RETURN true;
END;
$$;

-- Take the deploy locks of a running job, or park it. Called by the worker
-- that holds the lease, on the connection that will hold the locks; the
-- session locks outlive this transaction.
--
-- outcome: 'acquired' means run the job, then call mj_deploy_release_v1.
-- 'waiting' and 'awaiting_approval' mean the job is parked and the worker
-- lets it go. 'cancelled' means a cancel arrived first, 'stale' that the
-- lease is not valid.
-- reason: why the job is parked, e.g. "waiting for production, held by
-- run 41 job deploy".
--
-- Order: jobs of a name start in id order. A job waits while an older job
-- of the same name is queued or waiting, unless `concurrency.queue` is
-- `latest`: then the older ones that have not started end as superseded.
-- With `concurrency.cancel-in-progress`, the job that holds the group's
-- lock is cancelled and this one waits for it to stop.
CREATE OR REPLACE FUNCTION mj_deploy_acquire_v1(p_job_id bigint, p_lease_token uuid)
RETURNS TABLE (outcome text, reason text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_job jobs%ROWTYPE;
    v_names text[];
    v_name text;
    v_taken text[] := '{}';
    v_failed text;
    v_queue text;
    v_cancel boolean;
    v_group_holder deploy_locks%ROWTYPE;
    v_holder deploy_locks%ROWTYPE;
    v_deployment_id bigint;
    v_decision text;
    v_requires boolean := false;
    v_ahead record;
    v_run_ids bigint[];
    v_other bigint;
BEGIN
    SELECT * INTO v_job FROM jobs j WHERE j.id = p_job_id;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.lease_token IS DISTINCT FROM p_lease_token THEN
        outcome := 'stale';
        RETURN NEXT;
        RETURN;
    END IF;
    v_names := mj_deploy_lock_names_v1(v_job.environment, v_job.concurrency_group);
    IF cardinality(v_names) = 0 THEN
        outcome := 'acquired';
        RETURN NEXT;
        RETURN;
    END IF;
    v_queue := coalesce(v_job.spec -> 'concurrency' ->> 'queue', 'all');
    v_cancel := coalesce((v_job.spec -> 'concurrency' ->> 'cancel_in_progress')::boolean, false);

    PERFORM mj_deploy_queue_lock_v1(v_names);

    -- Every run whose rows this call may change is locked now, in id order:
    -- this job's, those of the older jobs a `queue: latest` supersedes, and
    -- that of the group's holder for cancel-in-progress.
    IF v_job.concurrency_group IS NOT NULL THEN
        SELECT * INTO v_group_holder FROM deploy_locks l
        WHERE l.name = 'concurrency:' || v_job.concurrency_group AND l.job_id <> p_job_id;
    END IF;
    v_run_ids := ARRAY(
        SELECT DISTINCT r FROM unnest(
            ARRAY[v_job.run_id, CASE WHEN v_cancel THEN v_group_holder.run_id END]
            || ARRAY(SELECT o.run_id
                     FROM mj_deploy_queue_v1('concurrency:' || v_job.concurrency_group,
                                             ARRAY['queued', 'waiting', 'awaiting_approval']) o
                     WHERE v_queue = 'latest' AND o.id < p_job_id)) AS r
        WHERE r IS NOT NULL);
    PERFORM 1 FROM pipeline_runs pr WHERE pr.id = ANY (v_run_ids) ORDER BY pr.id FOR UPDATE;
    SELECT * INTO v_job FROM jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF v_job.status <> 'running' OR v_job.lease_token IS DISTINCT FROM p_lease_token THEN
        outcome := 'stale';
        RETURN NEXT;
        RETURN;
    END IF;
    IF v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM mj_job_close_v1(p_job_id, 'cancelled', NULL, coalesce(v_job.reason, 'cancelled'));
        PERFORM mj_deploy_record_end_v1(p_job_id);
        outcome := 'cancelled';
        RETURN NEXT;
        RETURN;
    END IF;

    IF v_queue = 'latest' AND v_job.concurrency_group IS NOT NULL THEN
        FOR v_other IN
            SELECT o.id FROM jobs o
            WHERE o.concurrency_group = v_job.concurrency_group AND o.id < p_job_id
              AND o.status IN ('queued', 'waiting', 'awaiting_approval')
              AND o.run_id = ANY (v_run_ids)
            ORDER BY o.id
            FOR UPDATE
        LOOP
            PERFORM mj_job_close_v1(v_other, 'superseded', NULL,
                format('superseded by run %s job %s', v_job.run_id, v_job.name));
            PERFORM mj_deploy_record_end_v1(v_other);
        END LOOP;
    END IF;

    IF v_job.environment IS NOT NULL THEN
        INSERT INTO environments (name) VALUES (v_job.environment) ON CONFLICT (name) DO NOTHING;
        SELECT e.requires_approval INTO v_requires FROM environments e WHERE e.name = v_job.environment;
        SELECT d.id, d.decision INTO v_deployment_id, v_decision
        FROM deployments d WHERE d.job_id = p_job_id AND d.finished_at IS NULL;
        IF v_deployment_id IS NULL THEN
            INSERT INTO deployments (job_id, run_id, environment, status)
            VALUES (p_job_id, v_job.run_id, v_job.environment, 'waiting')
            RETURNING id INTO v_deployment_id;
        END IF;
        IF v_requires AND v_decision IS NULL THEN
            outcome := 'awaiting_approval';
            reason := format('waiting for approval to deploy to %s', v_job.environment);
            PERFORM mj_deploy_park_v1(p_job_id, outcome, reason);
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    SELECT o.id, o.run_id, o.name,
           CASE WHEN o.environment = v_job.environment THEN 'deploy:' || o.environment
                ELSE 'concurrency:' || o.concurrency_group END AS lock_name
    INTO v_ahead
    FROM jobs o
    WHERE o.id < p_job_id AND o.status IN ('queued', 'waiting')
      AND (o.environment = v_job.environment OR o.concurrency_group = v_job.concurrency_group)
    ORDER BY o.id
    LIMIT 1;
    IF FOUND THEN
        outcome := 'waiting';
        reason := format('waiting for %s, queued behind run %s job %s',
                         mj_deploy_lock_label(v_ahead.lock_name), v_ahead.run_id, v_ahead.name);
        PERFORM mj_deploy_park_v1(p_job_id, outcome, reason);
        RETURN NEXT;
        RETURN;
    END IF;

    FOREACH v_name IN ARRAY v_names LOOP
        IF pg_try_advisory_lock(mj_lock_namespace(), mj_lock_key(v_name)) THEN
            v_taken := v_taken || v_name;
        ELSE
            v_failed := v_name;
            EXIT;
        END IF;
    END LOOP;

    IF v_failed IS NOT NULL THEN
        FOREACH v_name IN ARRAY v_taken LOOP
            PERFORM pg_advisory_unlock(mj_lock_namespace(), mj_lock_key(v_name));
        END LOOP;
        INSERT INTO deploy_lock_failures AS f (name, failures) VALUES (v_failed, 1)
        ON CONFLICT (name) DO UPDATE SET failures = f.failures + 1, last_at = now();
        UPDATE deployments d SET lock_failures = d.lock_failures + 1 WHERE d.id = v_deployment_id;

        SELECT * INTO v_holder FROM deploy_locks l WHERE l.name = v_failed;
        outcome := 'waiting';
        reason := CASE WHEN v_holder.job_id IS NULL
                       THEN format('waiting for %s', mj_deploy_lock_label(v_failed))
                       ELSE format('waiting for %s, held by run %s job %s',
                                   mj_deploy_lock_label(v_failed), v_holder.run_id, v_holder.job_name)
                  END;
        IF v_cancel AND v_failed = 'concurrency:' || v_job.concurrency_group
           AND v_holder.job_id IS NOT NULL AND v_holder.run_id = ANY (v_run_ids) THEN
            PERFORM mj_job_cancel_v1(v_holder.job_id,
                format('cancelled in progress by run %s job %s', v_job.run_id, v_job.name));
        END IF;
        PERFORM mj_deploy_park_v1(p_job_id, outcome, reason);
        RETURN NEXT;
        RETURN;
    END IF;

    FOREACH v_name IN ARRAY v_names LOOP
        INSERT INTO deploy_locks AS l (name, job_id, run_id, job_name)
        VALUES (v_name, p_job_id, v_job.run_id, v_job.name)
        ON CONFLICT (name) DO UPDATE
            SET job_id = excluded.job_id, run_id = excluded.run_id, job_name = excluded.job_name,
                acquired_at = now();
    END LOOP;
    IF v_deployment_id IS NOT NULL THEN
        UPDATE deployments d SET status = 'running', started_at = now() WHERE d.id = v_deployment_id;
        PERFORM mj_outbox_enqueue_deploy_v1(p_job_id, v_job.environment, 'deploy.started', 'running');
    END IF;
    outcome := 'acquired';
    RETURN NEXT;
END;
$$;

-- Give back the deploy locks of a job on the connection that took them,
-- record the end of its deployment and wake the next waiting job of each
-- name. Call it after the job's result is stored, so that the next deploy
-- starts after this one ended. Returns the number of jobs woken.
CREATE OR REPLACE FUNCTION mj_deploy_release_v1(p_job_id bigint) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
    v_names text[];
    v_name text;
    v_woken integer := 0;
    v_held boolean := false;
BEGIN
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    v_names := mj_deploy_lock_names_v1(v_job.environment, v_job.concurrency_group);
    PERFORM mj_deploy_queue_lock_v1(v_names);

    FOREACH v_name IN ARRAY v_names LOOP
        IF pg_advisory_unlock(mj_lock_namespace(), mj_lock_key(v_name)) THEN
            v_held := true;
        END IF;
    END LOOP;
    -- Only the session that holds the job's locks may end its deploy: a
    -- call from any other session (another worker's, or a hostile step
    -- with a worker role) changes nothing.
    IF NOT v_held THEN
        RETURN 0;
    END IF;
    DELETE FROM deploy_locks WHERE name = ANY (v_names) AND job_id = p_job_id;
    PERFORM mj_deploy_record_end_v1(p_job_id);

    PERFORM mj_deploy_lock_head_runs_v1(v_names);
    FOREACH v_name IN ARRAY v_names LOOP
        IF mj_deploy_wake_v1(v_name) IS NOT NULL THEN
            v_woken := v_woken + 1;
        END IF;
    END LOOP;
    RETURN v_woken;
END;
$$;

-- Approve or reject a job that awaits approval. Approval queues it again
-- (it still waits for the environment's lock); rejection skips it and the
-- jobs that need it. Returns 'approved', 'rejected' or the job's status
-- when it is not awaiting approval.
CREATE OR REPLACE FUNCTION mj_deploy_decide_v1(p_job_id bigint, p_approve boolean, p_by text)
RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
BEGIN
    PERFORM 1 FROM pipeline_runs WHERE id = (SELECT j.run_id FROM jobs j WHERE j.id = p_job_id) FOR UPDATE;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_job.status <> 'awaiting_approval' THEN
        RETURN v_job.status;
    END IF;

    UPDATE deployments
    SET decision = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END,
        decided_by = p_by, decided_at = now()
    WHERE job_id = p_job_id AND finished_at IS NULL;

    IF p_approve THEN
        UPDATE jobs SET status = 'queued', run_after = now(), reason = NULL WHERE id = p_job_id;
        PERFORM pg_notify('mj_jobs_v1', v_job.run_id::text);
        PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
        RETURN 'approved';
    END IF;
    PERFORM mj_job_close_v1(p_job_id, 'skipped', NULL,
        format('deploy to %s rejected by %s', v_job.environment, p_by));
    PERFORM mj_deploy_record_end_v1(p_job_id);
    RETURN 'rejected';
END;
$$;

-- Maintenance: close deployment rows whose job ended without a release,
-- e.g. after a lost worker or a cancelled waiting job. Then wake the queue
-- of every name whose lock is free while its oldest job still waits, which
-- happens when the holder died and no release ran. Also drops holder rows
-- of free locks. Run by the maintenance leader. Returns one row per job woken.
CREATE OR REPLACE FUNCTION mj_deploy_sweep_v1()
RETURNS TABLE (job_id bigint, run_id bigint, lock_name text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_ended bigint;
    v_names text[];
    v_name text;
    v_free text[] := '{}';
    v_woken bigint;
BEGIN
    -- Queue locks first, as everywhere: a release holds its queue lock
    -- while it closes the same deployment rows this sweep closes.
    v_names := ARRAY(
        SELECT n FROM (
            SELECT 'deploy:' || d.environment AS n
            FROM deployments d JOIN jobs j ON j.id = d.job_id
            WHERE d.finished_at IS NULL
              AND (NOT mj_status_is_active(j.status) OR (d.status = 'running' AND j.status <> 'running'))
            UNION
            SELECT 'deploy:' || j.environment FROM jobs j
            WHERE j.environment IS NOT NULL AND j.status = 'waiting'
            UNION
            SELECT 'concurrency:' || j.concurrency_group FROM jobs j
            WHERE j.concurrency_group IS NOT NULL AND j.status = 'waiting'
            UNION
            SELECT l.name FROM deploy_locks l
        ) names
        ORDER BY n);
    PERFORM mj_deploy_queue_lock_v1(v_names);

    FOR v_ended IN
        SELECT d.job_id FROM deployments d JOIN jobs j ON j.id = d.job_id
        WHERE d.finished_at IS NULL
          AND 'deploy:' || d.environment = ANY (v_names)
          AND (NOT mj_status_is_active(j.status) OR (d.status = 'running' AND j.status <> 'running'))
        ORDER BY d.job_id
    LOOP
        PERFORM mj_deploy_record_end_v1(v_ended);
    END LOOP;

    FOREACH v_name IN ARRAY v_names LOOP
        -- A queued job of the name tries the lock itself once claimed.
        CONTINUE WHEN EXISTS (SELECT 1 FROM mj_deploy_queue_v1(v_name, ARRAY['queued']));
        -- The lock is free when a transaction lock on its key can be taken.
        -- That lock lasts until this tick commits, which is also when the
        -- woken job becomes visible to the workers.
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(mj_lock_namespace(), mj_lock_key(v_name));
        v_free := v_free || v_name;
    END LOOP;

    PERFORM mj_deploy_lock_head_runs_v1(v_free);
    FOREACH v_name IN ARRAY v_free LOOP
        DELETE FROM deploy_locks l WHERE l.name = v_name;
        v_woken := mj_deploy_wake_v1(v_name);
        IF v_woken IS NOT NULL THEN
            job_id := v_woken;
            run_id := (SELECT j.run_id FROM jobs j WHERE j.id = v_woken);
            lock_name := v_name;
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;
