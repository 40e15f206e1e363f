-- Run bookkeeping: moving jobs along the `needs` graph, closing runs,
-- cancelling and re-running.
--
-- Locking order, everywhere: the pipeline_runs row first (FOR UPDATE), then
-- job rows. Two jobs of one run that finish at once are thereby serialised,
-- so exactly one of them sees the run's last active job end and closes it.
--
-- Pipeline-wide concurrency groups (a pipeline's top-level `concurrency`)
-- are scoped to their repository. At most one run of a group is active. The
-- others wait as `pending` runs whose jobs stay pending, and they start in
-- the order they entered the group.
--
-- Which run is active is decided under the transaction lock
-- `run_group:<repo>:<group>`. Deadlocks are avoided as follows:
-- - A plan submission checks its lease, takes the lock before any row lock,
--   then locks the runs it replaces and its own run in id order, as every
--   transaction that locks several runs does.
-- - A re-run takes the lock holding only its own run, which has ended.
-- - Any other transaction that holds rows of the group's runs never waits
--   for the lock: a run that ends starts the next one only at commit (a
--   deferred trigger), which merely tries the lock and uses SKIP LOCKED.
-- What a busy lock or row leaves undone, mj_run_group_sweep_v1 does within
-- one maintenance interval.

-- Queue or skip every pending job whose needed jobs have all ended, repeat
-- until nothing changes (a skip can unblock further jobs), then close the run
-- if no job is active. The caller holds the run's row lock.
CREATE OR REPLACE FUNCTION mj_run_advance_v1(p_run_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_changed integer;
    v_queued integer := 0;
    v_count integer;
BEGIN
    -- A run waiting for its concurrency group queues nothing; it can still
    -- end, when all of its jobs are cancelled.
    IF EXISTS (SELECT 1 FROM pipeline_runs
               WHERE id = p_run_id AND status = 'pending' AND concurrency_group IS NOT NULL) THEN
        PERFORM mj_run_close_if_done_v1(p_run_id);
        RETURN;
    END IF;

    LOOP
        WITH ready AS (
            SELECT j.id,
                   -- A job with its own condition is queued whatever its needs
                   -- did; the worker evaluates the condition. Without one, a
                   -- job runs only when every needed job succeeded.
                   (j.condition IS NOT NULL OR unmet.reason IS NULL) AS runnable,
                   unmet.reason
            FROM jobs j
            -- Every needed job that did not succeed, e.g. "needed job lint failed".
            CROSS JOIN LATERAL (
                SELECT string_agg(format('needed job %s %s', n.name, CASE n.status
                                      WHEN 'failed' THEN 'failed'
                                      WHEN 'timed_out' THEN 'timed out'
                                      ELSE 'was ' || n.status END),
                                  ', ' ORDER BY n.id) AS reason
                FROM job_dependencies d
                JOIN jobs n ON n.id = d.needs_job_id
                WHERE d.job_id = j.id
                  AND NOT (n.status = 'succeeded'
                           OR (n.continue_on_error AND n.status IN ('failed', 'timed_out')))
            ) unmet
            WHERE j.run_id = p_run_id
              AND j.status = 'pending'
              AND NOT EXISTS (
                    SELECT 1
                    FROM job_dependencies d
                    JOIN jobs n ON n.id = d.needs_job_id
                    WHERE d.job_id = j.id AND mj_status_is_active(n.status)
              )
        ),
        changed AS (
            UPDATE jobs j
            SET status = CASE WHEN r.runnable THEN 'queued' ELSE 'skipped' END,
                queued_at = CASE WHEN r.runnable THEN now() ELSE j.queued_at END,
                run_after = now(),
                finished_at = CASE WHEN r.runnable THEN NULL ELSE now() END,
                reason = CASE WHEN r.runnable THEN NULL ELSE 'skipped: ' || r.reason END
            FROM ready r
            WHERE j.id = r.id
            RETURNING j.status
        )
        SELECT count(*), count(*) FILTER (WHERE status = 'queued') INTO v_changed, v_count FROM changed;

        v_queued := v_queued + v_count;
        EXIT WHEN v_changed = 0;
    END LOOP;

    IF v_queued > 0 THEN
        PERFORM pg_notify('mj_jobs_v1', p_run_id::text);
    END IF;

    PERFORM mj_run_close_if_done_v1(p_run_id);
END;
$$;

-- Set the run's final status once none of its jobs is active. The caller
-- holds the run's row lock.
CREATE OR REPLACE FUNCTION mj_run_close_if_done_v1(p_run_id bigint) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_status text;
    v_reason text;
BEGIN
    IF EXISTS (SELECT 1 FROM jobs WHERE run_id = p_run_id AND mj_status_is_active(status)) THEN
        RETURN;
    END IF;

    SELECT CASE
               WHEN bool_or(status = 'cancelled') THEN 'cancelled'
               WHEN bool_or(status IN ('failed', 'timed_out') AND NOT continue_on_error) THEN 'failed'
               -- Only the plan job exists: no workflow matched the event.
               WHEN bool_and(kind = 'plan') THEN 'skipped'
               ELSE 'succeeded'
           END
    INTO v_status
    FROM jobs
    WHERE run_id = p_run_id;

    -- The first job that ended badly explains the run's outcome.
    SELECT CASE WHEN kind = 'plan' THEN reason ELSE format('job %s %s', name, replace(status, '_', ' ')) END
    INTO v_reason
    FROM jobs
    WHERE run_id = p_run_id
      AND ((v_status = 'failed' AND status IN ('failed', 'timed_out') AND NOT continue_on_error)
           OR (v_status = 'cancelled' AND status = 'cancelled')
           OR (v_status = 'skipped' AND kind = 'plan'))
    ORDER BY finished_at NULLS LAST, id
    LIMIT 1;

    UPDATE pipeline_runs
    SET status = coalesce(v_status, 'succeeded'),
        reason = v_reason,
        started_at = coalesce(started_at, now()),
        finished_at = now()
    WHERE id = p_run_id AND mj_status_is_active(status);

    -- A run of a concurrency group that ends here starts the next one at
    -- commit (trigger pipeline_runs_group_next).
    IF FOUND THEN
        PERFORM pg_notify('mj_runs_v1', p_run_id::text);
        PERFORM mj_outbox_enqueue_run_v1(p_run_id);
    END IF;
END;
$$;

-- Record the end of a job's current attempt and move its run along. The
-- caller holds the run and job row locks and has checked the lease.
CREATE OR REPLACE FUNCTION mj_job_close_v1(
    p_job_id bigint,
    p_status text,
    p_exit_code integer,
    p_reason text
) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
    v_run_id bigint;
    v_environment text;
BEGIN
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id;
    IF v_job.status = 'running' THEN
        -- Defined in 30_queue.sql; a no-op when the caller recorded the
        -- attempt already (a hand-back or a lost worker).
        PERFORM mj_attempt_record_v1(v_job, p_status, p_exit_code, p_reason);
    END IF;

    UPDATE jobs
    SET status = p_status,
        exit_code = p_exit_code,
        reason = p_reason,
        lease_token = NULL,
        finished_at = now()
    WHERE id = p_job_id
    RETURNING run_id, environment INTO v_run_id, v_environment;

    IF v_environment IS NOT NULL THEN
        -- Defined in 50_deploy.sql: the deployment history and the
        -- deploy.finished notification change with the job.
        PERFORM mj_deploy_record_end_v1(p_job_id);
    END IF;

    PERFORM pg_notify('mj_runs_v1', v_run_id::text);
    -- Only jobs that need this one can become ready now; without any, the
    -- run can at most be closed, which skips the scan of pending jobs.
    IF EXISTS (SELECT 1 FROM job_dependencies d WHERE d.needs_job_id = p_job_id) THEN
        PERFORM mj_run_advance_v1(v_run_id);
    ELSE
        PERFORM mj_run_close_if_done_v1(v_run_id);
    END IF;
END;
$$;

-- Cancel one job. A pending or queued job ends at once; a running one is
-- flagged and its worker is told through NOTIFY (the heartbeat reply repeats
-- the request in case the notification is lost). Returns 'cancelled',
-- 'cancel_requested' or 'already_finished'.
CREATE OR REPLACE FUNCTION mj_job_cancel_v1(p_job_id bigint, p_reason text) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
BEGIN
    PERFORM 1 FROM pipeline_runs WHERE id = (SELECT run_id FROM jobs WHERE id = p_job_id) FOR UPDATE;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;

    IF v_job.status IN ('pending', 'queued', 'waiting', 'awaiting_approval') THEN
        UPDATE jobs
        SET status = 'cancelled', reason = p_reason, finished_at = now(), cancel_requested_at = now()
        WHERE id = p_job_id;
        PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
        PERFORM mj_run_advance_v1(v_job.run_id);
        RETURN 'cancelled';
    ELSIF v_job.status = 'running' THEN
        UPDATE jobs
        SET cancel_requested_at = coalesce(cancel_requested_at, now()),
            reason = coalesce(reason, p_reason)
        WHERE id = p_job_id;
        PERFORM pg_notify('mj_cancel_v1', p_job_id::text);
        RETURN 'cancel_requested';
    END IF;
    RETURN 'already_finished';
END;
$$;

-- Cancel every active job of a run. Returns the number of jobs affected.
CREATE OR REPLACE FUNCTION mj_run_cancel_v1(p_run_id bigint, p_reason text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_ended integer;
    v_job_id bigint;
    v_flagged integer := 0;
BEGIN
    PERFORM 1 FROM pipeline_runs WHERE id = p_run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', p_run_id USING ERRCODE = 'no_data_found';
    END IF;

    UPDATE jobs
    SET status = 'cancelled', reason = p_reason, finished_at = now(), cancel_requested_at = now()
    WHERE run_id = p_run_id AND status IN ('pending', 'queued', 'waiting', 'awaiting_approval');
    GET DIAGNOSTICS v_ended = ROW_COUNT;

    FOR v_job_id IN
        UPDATE jobs
        SET cancel_requested_at = now(), reason = coalesce(reason, p_reason)
        WHERE run_id = p_run_id AND status = 'running' AND cancel_requested_at IS NULL
        RETURNING id
    LOOP
        PERFORM pg_notify('mj_cancel_v1', v_job_id::text);
        v_flagged := v_flagged + 1;
    END LOOP;

    PERFORM pg_notify('mj_runs_v1', p_run_id::text);
    PERFORM mj_run_advance_v1(p_run_id);
    RETURN v_ended + v_flagged;
END;
$$;

-- Re-run a finished run: all of its jobs, or with p_failed_only the jobs that
-- did not succeed plus everything that depends on them. Each gets a new
-- attempt with a fresh retry budget. Returns the number of jobs reset.
CREATE OR REPLACE FUNCTION mj_run_rerun_v1(p_run_id bigint, p_failed_only boolean) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_count integer;
    v_plan_status text;
    v_repo_id bigint;
    v_group text;
BEGIN
    PERFORM 1 FROM pipeline_runs WHERE id = p_run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', p_run_id USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM jobs WHERE run_id = p_run_id AND mj_status_is_active(status)) THEN
        RAISE EXCEPTION 'run % is still active; cancel it or wait for it to finish', p_run_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    SELECT status INTO v_plan_status FROM jobs WHERE run_id = p_run_id AND kind = 'plan';

    IF v_plan_status IS DISTINCT FROM 'succeeded' THEN
        -- The job graph was never built: plan again.
        UPDATE jobs
        SET status = 'queued', queued_at = now(), run_after = now(), attempt_base = attempt,
            exit_code = NULL, reason = NULL, started_at = NULL, finished_at = NULL,
            cancel_requested_at = NULL, worker_id = NULL, lease_token = NULL
        WHERE run_id = p_run_id AND kind = 'plan';
        GET DIAGNOSTICS v_count = ROW_COUNT;
        PERFORM pg_notify('mj_jobs_v1', p_run_id::text);
    ELSE
        WITH RECURSIVE target AS (
            SELECT id
            FROM jobs
            WHERE run_id = p_run_id
              AND kind = 'script'
              AND (NOT p_failed_only OR status <> 'succeeded')
            UNION
            SELECT d.job_id
            FROM job_dependencies d
            JOIN target t ON d.needs_job_id = t.id
        )
        UPDATE jobs
        SET status = 'pending', attempt_base = attempt, exit_code = NULL, reason = NULL,
            queued_at = NULL, started_at = NULL, finished_at = NULL, cancel_requested_at = NULL,
            worker_id = NULL, lease_token = NULL,
            -- A job that this run skips without a claim must not pass on
            -- the outputs of the run before.
            outputs = NULL
        WHERE id IN (SELECT id FROM target);
        GET DIAGNOSTICS v_count = ROW_COUNT;
    END IF;

    IF v_count > 0 THEN
        -- A run of a concurrency group queues behind the group's active run
        -- again; it starts at once when there is none.
        SELECT repo_id, concurrency_group INTO v_repo_id, v_group FROM pipeline_runs WHERE id = p_run_id;
        IF v_plan_status <> 'succeeded' THEN
            v_group := NULL;
        END IF;
        IF v_group IS NOT NULL THEN
            PERFORM mj_lock_xact_v1(mj_run_group_lock_name(v_repo_id, v_group));
        END IF;
        UPDATE pipeline_runs
        SET status = CASE WHEN v_group IS NOT NULL THEN 'pending' ELSE 'running' END,
            concurrency_entered_at = CASE WHEN v_group IS NOT NULL THEN clock_timestamp()
                                          ELSE concurrency_entered_at END,
            reason = NULL, finished_at = NULL, rerun_at = now()
        WHERE id = p_run_id;
        PERFORM pg_notify('mj_runs_v1', p_run_id::text);
        IF v_group IS NOT NULL THEN
            PERFORM mj_run_group_start_next_v1(v_repo_id, v_group, true);
            PERFORM mj_run_group_explain_wait_v1(v_repo_id, v_group);
        ELSE
            PERFORM mj_run_advance_v1(p_run_id);
        END IF;
    END IF;
    RETURN v_count;
END;
$$;

-- Create a run and its plan job in one statement, and wake the workers.
-- Every trigger (webhook, manual, API, schedule, poll) enters here.
CREATE OR REPLACE FUNCTION mj_run_create_v1(
    p_repo_id bigint,
    p_event text,
    p_ref text,
    p_commit_sha text,
    p_before_sha text,
    p_message text,
    p_author text,
    p_trigger jsonb
) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_run_id bigint;
BEGIN
    INSERT INTO pipeline_runs (repo_id, status, event, ref, commit_sha, before_sha, message, author, trigger)
    VALUES (p_repo_id, 'queued', p_event, p_ref, p_commit_sha, p_before_sha, p_message, p_author,
            coalesce(p_trigger, '{}'))
    RETURNING id INTO v_run_id;

    INSERT INTO jobs (run_id, repo_id, kind, key, name, status, queued_at, max_attempts)
    VALUES (v_run_id, p_repo_id, 'plan', 'plan', 'plan', 'queued', now(), 3);

    PERFORM pg_notify('mj_jobs_v1', v_run_id::text);
    PERFORM pg_notify('mj_runs_v1', v_run_id::text);
    RETURN v_run_id;
END;
$$;

-- The name of the lock under which a concurrency group's active run is chosen.
CREATE OR REPLACE FUNCTION mj_run_group_lock_name(p_repo_id bigint, p_group text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT format('run_group:%s:%s', p_repo_id, p_group) $$;

-- Start the group's waiting run that entered first, if none of the group's
-- runs is active. With p_wait false the group's lock is only tried, because
-- a transaction that holds it is deciding for the group. Rows are taken with
-- SKIP LOCKED, or under the started run's own row lock. Returns the run
-- started, or NULL.
CREATE OR REPLACE FUNCTION mj_run_group_start_next_v1(p_repo_id bigint, p_group text, p_wait boolean)
RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_lock text := mj_run_group_lock_name(p_repo_id, p_group);
    v_next bigint;
BEGIN
    IF p_wait THEN
        PERFORM mj_lock_xact_v1(v_lock);
    ELSIF NOT mj_lock_try_xact_v1(v_lock) THEN
        RETURN NULL;
    END IF;

    IF EXISTS (SELECT 1 FROM pipeline_runs
               WHERE repo_id = p_repo_id AND concurrency_group = p_group
                 AND status IN ('queued', 'running')) THEN
        RETURN NULL;
    END IF;
    SELECT id INTO v_next
    FROM pipeline_runs
    WHERE repo_id = p_repo_id AND concurrency_group = p_group AND status = 'pending'
    ORDER BY concurrency_entered_at, id
    LIMIT 1;
    IF v_next IS NULL THEN
        RETURN NULL;
    END IF;
    -- The run being cancelled or re-run right now holds its row lock; its
    -- own transaction, or the sweep, starts the next run afterwards.
    PERFORM 1 FROM pipeline_runs WHERE id = v_next AND status = 'pending' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    UPDATE pipeline_runs SET status = 'running', reason = NULL WHERE id = v_next;
    PERFORM pg_notify('mj_runs_v1', v_next::text);
    PERFORM mj_run_advance_v1(v_next);
    PERFORM mj_run_group_explain_wait_v1(p_repo_id, p_group);
    RETURN v_next;
END;
$$;

-- Tell every waiting run of a group which run it waits for: the active one,
-- or else the waiting run that entered first. A run whose row is locked
-- keeps its reason until the next change of the group.
CREATE OR REPLACE FUNCTION mj_run_group_explain_wait_v1(p_repo_id bigint, p_group text) RETURNS void
    LANGUAGE sql
    AS $$
        UPDATE pipeline_runs w
        SET reason = ahead.reason
        FROM (SELECT o.id, format('waiting for run %s of concurrency group "%s"', o.id, p_group) AS reason
              FROM pipeline_runs o
              WHERE o.repo_id = p_repo_id AND o.concurrency_group = p_group
                AND o.status IN ('pending', 'queued', 'running')
              ORDER BY o.status = 'pending', o.concurrency_entered_at, o.id
              LIMIT 1) ahead
        WHERE w.id IN (SELECT l.id FROM pipeline_runs l
                       WHERE l.repo_id = p_repo_id AND l.concurrency_group = p_group
                         AND l.status = 'pending'
                       FOR UPDATE SKIP LOCKED)
          AND w.id <> ahead.id
          AND w.reason IS DISTINCT FROM ahead.reason
    $$;

-- The runs of a group that a run entering it replaces: with
-- cancel_in_progress every active or waiting run of an older push (lower
-- id), with queue "latest" the waiting ones. The caller holds the group's
-- lock, so no run joins the group meanwhile.
CREATE OR REPLACE FUNCTION mj_run_group_replaced_v1(p_run_id bigint, p_concurrency jsonb)
RETURNS SETOF bigint
    LANGUAGE sql STABLE
    AS $$
        SELECT o.id
        FROM pipeline_runs me
        JOIN pipeline_runs o ON o.repo_id = me.repo_id
                            AND o.concurrency_group = nullif(p_concurrency ->> 'group', '')
        WHERE me.id = p_run_id AND o.id < p_run_id
          AND o.status IN ('pending', 'queued', 'running')
          AND (coalesce((p_concurrency ->> 'cancel_in_progress')::boolean, false)
               OR (p_concurrency ->> 'queue' = 'latest' AND o.status = 'pending'))
        ORDER BY o.id
    $$;

-- Before a plan submission locks its own run: take the group's lock, then
-- the rows of the runs it will replace and of its own run. The rows are
-- locked in id order, as the finish, the reaper and a worker's stop lock
-- several runs. Locking its own run first and then older runs could
-- deadlock with those. Does nothing without a group.
CREATE OR REPLACE FUNCTION mj_run_group_lock_runs_v1(p_run_id bigint, p_concurrency jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_group text := nullif(p_concurrency ->> 'group', '');
BEGIN
    IF v_group IS NULL OR p_run_id IS NULL THEN
        RETURN;
    END IF;
    PERFORM mj_lock_xact_v1(mj_run_group_lock_name(
        (SELECT repo_id FROM pipeline_runs WHERE id = p_run_id), v_group));
    PERFORM 1
    FROM pipeline_runs pr
    WHERE pr.id = p_run_id
       OR pr.id IN (SELECT replaced.id FROM mj_run_group_replaced_v1(p_run_id, p_concurrency) AS replaced (id))
    ORDER BY pr.id
    FOR UPDATE;
END;
$$;

-- Put a run that its plan job has just planned into its pipeline-wide
-- concurrency group, p_concurrency being {"group", "cancel_in_progress",
-- "queue"} as the planner evaluated it, p_rerun whether a user re-ran the
-- run (its plan job runs again). The caller has taken the group's lock and
-- the rows with mj_run_group_lock_runs_v1.
-- With cancel_in_progress the group's active runs are cancelled; with queue
-- "latest" its waiting runs are. Those runs come from older commits (lower
-- ids); a run whose group a newer run has entered already is superseded
-- itself instead. The run then starts at once if no other run of the group
-- is active, and waits as `pending` otherwise.
DROP FUNCTION IF EXISTS mj_run_group_enter_v1(bigint, jsonb);
CREATE OR REPLACE FUNCTION mj_run_group_enter_v1(p_run_id bigint, p_concurrency jsonb, p_rerun boolean)
RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_group text := nullif(p_concurrency ->> 'group', '');
    v_cancel boolean := coalesce((p_concurrency ->> 'cancel_in_progress')::boolean, false);
    v_latest boolean := coalesce(p_concurrency ->> 'queue' = 'latest', false);
    v_repo_id bigint;
    v_other bigint;
BEGIN
    IF v_group IS NULL THEN
        RETURN;
    END IF;
    SELECT repo_id INTO v_repo_id FROM pipeline_runs WHERE id = p_run_id;

    -- A run cancelled here starts the next one only at commit.
    FOR v_other IN SELECT replaced.id FROM mj_run_group_replaced_v1(p_run_id, p_concurrency) AS replaced (id)
    LOOP
        -- The same wording as for job-level groups (50_deploy.sql).
        PERFORM mj_run_cancel_v1(v_other, format(
            CASE WHEN v_cancel THEN 'cancelled in progress by run %s' ELSE 'superseded by run %s' END,
            p_run_id));
    END LOOP;

    UPDATE pipeline_runs
    SET concurrency_group = v_group, concurrency_entered_at = clock_timestamp()
    WHERE id = p_run_id;

    IF (v_cancel OR v_latest) AND NOT p_rerun THEN
        -- Planned after a newer run of the group (its plan took longer): the
        -- older commit gives way. A run that a user re-runs goes ahead.
        SELECT o.id INTO v_other FROM pipeline_runs o
        WHERE o.repo_id = v_repo_id AND o.concurrency_group = v_group AND o.id > p_run_id
        ORDER BY o.id DESC
        LIMIT 1;
        IF v_other IS NOT NULL THEN
            PERFORM mj_run_cancel_v1(p_run_id, format('superseded by run %s', v_other));
            RETURN;
        END IF;
    END IF;

    UPDATE pipeline_runs pr
    SET status = 'pending'
    WHERE pr.id = p_run_id
      AND EXISTS (SELECT 1 FROM pipeline_runs o
                  WHERE o.repo_id = v_repo_id AND o.concurrency_group = v_group
                    AND o.id <> p_run_id AND o.status IN ('pending', 'queued', 'running'));
    PERFORM mj_run_group_explain_wait_v1(v_repo_id, v_group);
END;
$$;

-- At the commit of a transaction that ended a run of a concurrency group,
-- start the group's next run. Deferred to the commit, so that no row lock
-- is waited for after the group's lock has been taken. SECURITY DEFINER
-- (90_security.sql): it runs after the worker function that ended the run
-- has returned, with the worker role's privileges otherwise.
CREATE OR REPLACE FUNCTION mj_run_group_closed_v1() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM mj_run_group_start_next_v1(NEW.repo_id, NEW.concurrency_group, false);
    RETURN NULL;
END;
$$;

-- Constraint triggers have no OR REPLACE.
DROP TRIGGER IF EXISTS pipeline_runs_group_next ON pipeline_runs;
CREATE CONSTRAINT TRIGGER pipeline_runs_group_next
    AFTER UPDATE OF status ON pipeline_runs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.concurrency_group IS NOT NULL AND mj_status_is_active(OLD.status)
          AND NOT mj_status_is_active(NEW.status))
    EXECUTE FUNCTION mj_run_group_closed_v1();

-- Maintenance: start the next run of every concurrency group that has
-- waiting runs and no active one, which a closing run leaves undone when
-- another transaction held the group's lock or the next run's row at that
-- moment. Run by the maintenance leader. Returns one row per run started.
CREATE OR REPLACE FUNCTION mj_run_group_sweep_v1()
RETURNS TABLE (run_id bigint, repo_id bigint, concurrency_group text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    v_group record;
BEGIN
    FOR v_group IN
        SELECT DISTINCT w.repo_id, w.concurrency_group
        FROM pipeline_runs w
        WHERE w.status = 'pending' AND w.concurrency_group IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM pipeline_runs h
                          WHERE h.repo_id = w.repo_id AND h.concurrency_group = w.concurrency_group
                            AND h.status IN ('queued', 'running'))
        ORDER BY w.repo_id, w.concurrency_group
    LOOP
        run_id := mj_run_group_start_next_v1(v_group.repo_id, v_group.concurrency_group, false);
        CONTINUE WHEN run_id IS NULL;
        repo_id := v_group.repo_id;
        concurrency_group := v_group.concurrency_group;
        RETURN NEXT;
    END LOOP;
END;
$$;
