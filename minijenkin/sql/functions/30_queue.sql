-- The job queue as seen by workers: register, heartbeat, claim, finish,
-- submit a plan, stop; and the reaper that recovers jobs of lost workers.
--
-- Fencing: each claim issues a fresh lease_token for the attempt. Every state
-- change a worker asks for names the job and its lease token, and is ignored
-- (returns 'stale') unless the job is still running under that token. A
-- worker that was presumed dead therefore cannot overwrite the outcome of the
-- attempt that replaced its own.

CREATE OR REPLACE FUNCTION mj_worker_register_v1(
    p_worker_id uuid,
    p_name text,
    p_hostname text,
    p_pid integer,
    p_labels text[],
    p_concurrency integer,
    p_version text
) RETURNS timestamptz
    LANGUAGE sql
    AS $$
        INSERT INTO workers (id, name, hostname, pid, labels, concurrency, version)
        VALUES (p_worker_id, p_name, p_hostname, p_pid, coalesce(p_labels, '{}'), p_concurrency, p_version)
        ON CONFLICT (id) DO UPDATE
            SET status = 'active', heartbeat_at = now(), labels = excluded.labels,
                concurrency = excluded.concurrency, stopped_at = NULL
        RETURNING started_at
    $$;

-- Put a running job of this worker back in the queue without counting the
-- attempt as a failure (it is recorded as handed_back). The attempt must
-- still belong to p_worker_id. Takes the run and job locks itself.
CREATE OR REPLACE FUNCTION mj_job_hand_back_v1(p_job_id bigint, p_worker_id uuid, p_reason text)
RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
BEGIN
    PERFORM 1 FROM pipeline_runs WHERE id = (SELECT j.run_id FROM jobs j WHERE j.id = p_job_id) FOR UPDATE;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.worker_id IS DISTINCT FROM p_worker_id THEN
        RETURN false;
    END IF;

    PERFORM mj_attempt_record_v1(v_job, 'handed_back', NULL, p_reason);

    IF v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM mj_job_close_v1(p_job_id, 'cancelled', NULL, coalesce(v_job.reason, 'cancelled'));
    ELSE
        UPDATE jobs
        SET status = 'queued', worker_id = NULL, lease_token = NULL, queued_at = now(), run_after = now()
        WHERE id = p_job_id;
        PERFORM pg_notify('mj_jobs_v1', v_job.run_id::text);
        PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
    END IF;
    RETURN true;
END;
$$;

-- Record that the worker is alive and tell it which of the jobs it holds it
-- must stop: 'cancel' (a cancel was requested) or 'abandon' (the lease is no
-- longer its own, e.g. the reaper gave the job to another worker while this
-- one was paused).
--
-- p_job_ids must list every job the worker runs: a running job assigned to
-- this worker but missing from the list is a claim whose result never
-- reached the worker (the connection broke mid-claim), and is handed back.
-- Workers therefore never heartbeat while a claim is in flight.
CREATE OR REPLACE FUNCTION mj_worker_heartbeat_v1(
    p_worker_id uuid,
    p_job_ids bigint[],
    p_lease_tokens uuid[]
) RETURNS TABLE (job_id bigint, action text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_orphan bigint;
BEGIN
    UPDATE workers
    SET heartbeat_at = now(),
        -- A worker declared lost that turns out to be alive comes back;
        -- its old jobs have been handed out again and are reported below.
        status = CASE WHEN status = 'lost' THEN 'active' ELSE status END
    WHERE id = p_worker_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not registered', p_worker_id USING ERRCODE = 'no_data_found';
    END IF;

    FOR v_orphan IN
        SELECT j.id
        FROM jobs j
        WHERE j.worker_id = p_worker_id AND j.status = 'running'
          AND NOT (j.id = ANY (coalesce(p_job_ids, '{}')))
        ORDER BY j.run_id, j.id
    LOOP
        PERFORM mj_job_hand_back_v1(v_orphan, p_worker_id, 'the claim did not reach the worker');
    END LOOP;

    RETURN QUERY
        SELECT held.job_id,
               CASE WHEN j.id IS NULL OR j.status <> 'running' OR j.lease_token IS DISTINCT FROM held.lease_token
                    THEN 'abandon' ELSE 'cancel' END
        FROM unnest(p_job_ids, p_lease_tokens) AS held (job_id, lease_token)
        LEFT JOIN jobs j ON j.id = held.job_id
        WHERE j.id IS NULL
           OR j.status <> 'running'
           OR j.lease_token IS DISTINCT FROM held.lease_token
           OR j.cancel_requested_at IS NOT NULL;
END;
$$;

-- Record the end of a job's current attempt, read from the job row, so
-- callers pass the row as it was before they change it. A running attempt
-- has no job_attempts row until it ends, so a claim writes one row rather
-- than two. The first record of an attempt wins: a later call for the same
-- attempt (a hand-back or reap followed by mj_job_close_v1) changes nothing.
-- Rows in status 'running' were written at claim time by earlier releases
-- of this function set, and are completed here.
CREATE OR REPLACE FUNCTION mj_attempt_record_v1(
    p_job jobs,
    p_status text,
    p_exit_code integer,
    p_reason text
) RETURNS void
    LANGUAGE sql
    AS $$
        INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, exit_code, reason,
                                  queued_at, started_at, finished_at)
        VALUES ((p_job).id, (p_job).attempt, (p_job).worker_id, (p_job).lease_token, p_status,
                p_exit_code, p_reason, (p_job).queued_at, (p_job).started_at, now())
        ON CONFLICT (job_id, attempt) DO UPDATE
            SET status = excluded.status, exit_code = excluded.exit_code, reason = excluded.reason,
                finished_at = excluded.finished_at
            WHERE job_attempts.status = 'running'
    $$;

-- Claim up to p_limit queued jobs whose labels are a subset of p_labels.
--
-- Fairness: candidates are taken per repository (the first p_limit of each)
-- and ordered by the number of jobs their repository already runs plus their
-- rank within the repository; the running count is taken only when more
-- than one repository has candidates. A repository with 500 queued jobs and
-- some of them running therefore yields the next free slot to another
-- repository's single job. Ranking within candidates alone would not: its first job would
-- tie with the other repository's and win on its older id at every claim.
-- Priority still comes first across repositories.
--
-- Plans: a drain turns thousands of jobs from queued to running to
-- succeeded between two analyses, so the statistics of the queue's tables
-- are stale most of the time. Every statement after the choice of jobs
-- therefore reaches jobs, pipeline_runs and repositories by primary key,
-- through an id array or a correlated lookup. A join could become a
-- sequential scan, and a condition on status could select a partial index
-- full of dead entries (tests/integration/test_queue_plans.py).
--
-- Each row carries needs, the statuses of the jobs this job needs, by key
-- (NULL when it needs none, which spares decoding an empty object per job).
-- run_context (the repository and the run) is set on one row per run only.
-- The jobs of a run are usually claimed together, and building the same
-- object for each of them took about a quarter of the claim's time.
--
-- Every statement here has a plan that does not depend on its parameters,
-- so the function runs with generic plans: with custom plans, PostgreSQL
-- planned the choice of jobs again at every call, which cost more than
-- running it. A generic plan's cost assumes many repositories and an
-- unknown limit, so it can pass jit_above_cost. Compiling the choice of
-- jobs then took 10 ms per claim, so JIT is off as well.
CREATE OR REPLACE FUNCTION mj_job_claim_v2(p_worker_id uuid, p_labels text[], p_limit integer)
RETURNS TABLE (
    job_id bigint,
    run_id bigint,
    attempt integer,
    lease_token uuid,
    kind text,
    key text,
    name text,
    spec jsonb,
    condition text,
    timeout_seconds integer,
    needs jsonb,
    run_context jsonb
)
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET jit = off
    AS $$
DECLARE
    v_ids bigint[];
    v_plan_runs bigint[];
BEGIN
    IF p_limit < 1 THEN
        RETURN;
    END IF;
    -- A worker the reaper declared lost claims nothing until its heartbeat
    -- revives it, so its reaped jobs cannot flow straight back to it.
    PERFORM 1 FROM workers w WHERE w.id = p_worker_id AND w.status = 'active';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    WITH candidates AS (
        SELECT c.id, c.repo_id, c.priority, c.run_id, c.kind
        FROM repositories r
        CROSS JOIN LATERAL (
            SELECT q.id, q.repo_id, q.priority, q.run_id, q.kind
            FROM jobs q
            WHERE q.repo_id = r.id
              AND q.status = 'queued'
              AND q.run_after <= now()
              AND q.labels <@ coalesce(p_labels, '{}')
            ORDER BY q.priority DESC, q.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) c
    ),
    busy AS (
        -- Running jobs per candidate repository, counted only when several
        -- repositories compete: with one, the order is the queue order
        -- anyway. The count walks the repository's entries in
        -- jobs_running_repo_idx, which include dead ones until vacuum, so
        -- skipping it keeps a single busy repository's claims cheap.
        SELECT competing.repo_id,
               (SELECT count(*) FROM jobs rj
                WHERE rj.repo_id = competing.repo_id AND rj.status = 'running') AS running
        FROM (SELECT DISTINCT cand.repo_id FROM candidates cand) competing
        WHERE (SELECT count(DISTINCT cand.repo_id) FROM candidates cand) > 1
    ),
    chosen AS (
        SELECT ranked.id, ranked.run_id, ranked.kind
        FROM (
            SELECT cand.id, cand.priority, cand.run_id, cand.kind,
                   coalesce(busy.running, 0) + row_number() OVER (
                       PARTITION BY cand.repo_id ORDER BY cand.priority DESC, cand.id) AS share
            FROM candidates cand
            LEFT JOIN busy ON busy.repo_id = cand.repo_id
        ) ranked
        ORDER BY ranked.priority DESC, ranked.share, ranked.id
        LIMIT p_limit
    )
    SELECT array_agg(chosen.id), array_agg(chosen.run_id) FILTER (WHERE chosen.kind = 'plan')
    INTO v_ids, v_plan_runs
    FROM chosen;

    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    IF v_plan_runs IS NOT NULL THEN
        -- A plan job starts its queued run. SKIP LOCKED, because a run
        -- being cancelled or closed right now holds its row lock: waiting
        -- for it here could deadlock with that transaction, whose status
        -- wins anyway.
        UPDATE pipeline_runs pr
        SET status = 'running', started_at = coalesce(pr.started_at, now())
        WHERE pr.id = ANY (ARRAY(
            SELECT locked.id
            FROM pipeline_runs locked
            WHERE locked.id = ANY (v_plan_runs) AND locked.status = 'queued'
            FOR UPDATE SKIP LOCKED
        ));
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs j
        SET status = 'running',
            attempt = j.attempt + 1,
            worker_id = p_worker_id,
            lease_token = gen_random_uuid(),
            started_at = now(),
            finished_at = NULL,
            exit_code = NULL,
            reason = NULL,
            -- A new attempt's outputs replace the last one's, even when it sets none.
            outputs = NULL
        WHERE j.id = ANY (v_ids)
        RETURNING j.id, j.run_id, j.attempt, j.lease_token, j.kind, j.key, j.name, j.spec,
                  j.condition, j.timeout_seconds
    )
    SELECT c.id, c.run_id, c.attempt, c.lease_token, c.kind, c.key, c.name, c.spec, c.condition,
           c.timeout_seconds,
           (SELECT jsonb_object_agg(n.key, n.status)
            FROM job_dependencies d JOIN jobs n ON n.id = d.needs_job_id
            WHERE d.job_id = c.id),
           -- CASE evaluates the subquery for the first job of each run only.
           CASE WHEN c.id = min(c.id) OVER (PARTITION BY c.run_id) THEN (
               SELECT jsonb_build_object(
                          'repo', jsonb_build_object('id', r.id, 'name', r.name, 'url', r.url),
                          'run', jsonb_build_object(
                              'id', pr.id, 'event', pr.event, 'ref', pr.ref, 'commit', pr.commit_sha,
                              'before', pr.before_sha, 'message', pr.message, 'author', pr.author,
                              'trigger', pr.trigger))
               FROM pipeline_runs pr, repositories r
               WHERE pr.id = c.run_id AND r.id = pr.repo_id)
           END
    FROM claimed c
    ORDER BY c.id;
END;
$$;

-- The claim of workers released before mj_job_claim_v2: one context object
-- per job, holding the run's context and the job's needs.
CREATE OR REPLACE FUNCTION mj_job_claim_v1(p_worker_id uuid, p_labels text[], p_limit integer)
RETURNS TABLE (
    job_id bigint,
    run_id bigint,
    attempt integer,
    lease_token uuid,
    kind text,
    key text,
    name text,
    spec jsonb,
    condition text,
    timeout_seconds integer,
    context jsonb
)
    LANGUAGE sql
    AS $$
        SELECT c.job_id, c.run_id, c.attempt, c.lease_token, c.kind, c.key, c.name, c.spec,
               c.condition, c.timeout_seconds,
               first_value(c.run_context) OVER (PARTITION BY c.run_id ORDER BY c.job_id)
                   || jsonb_build_object('needs', coalesce(c.needs, '{}'))
        FROM mj_job_claim_v2(p_worker_id, p_labels, p_limit) c
        ORDER BY c.job_id
    $$;

-- Whether the retry policy of a job allows another attempt after a failure
-- of the given class ('script' or 'timeout'). p_failures counts the failed
-- or timed-out attempts since the last manual re-run, the current one
-- included; attempts lost with their worker or handed back do not count.
--
-- Policy (normalised by the pipeline parser): {"max": N} retries every
-- class; with "script"/"timeout" flags only those classes; "exit_codes"
-- restricts script retries to those exit codes.
CREATE OR REPLACE FUNCTION mj_retry_allows_v1(
    p_retry jsonb,
    p_class text,
    p_exit_code integer,
    p_failures integer
) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT p_failures <= coalesce((p_retry ->> 'max')::integer, 0)
           AND coalesce((p_retry ->> p_class)::boolean, true)
           AND (p_class <> 'script'
                OR jsonb_typeof(p_retry -> 'exit_codes') IS DISTINCT FROM 'array'
                OR (p_retry -> 'exit_codes') @> to_jsonb(p_exit_code))
    $$;

-- Store the values of a job's `outputs` (a JSON object of strings) for the
-- jobs that need it. The worker calls this after the job's last step and
-- before it reports the end. Returns false when the lease is no longer
-- valid (nothing is stored).
CREATE OR REPLACE FUNCTION mj_job_outputs_set_v1(p_job_id bigint, p_lease_token uuid, p_outputs jsonb)
RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF jsonb_typeof(p_outputs) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'job outputs must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(p_outputs::text) > 1048576 THEN
        RAISE EXCEPTION 'job outputs of job % exceed 1 MiB', p_job_id
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    UPDATE jobs
    SET outputs = p_outputs
    WHERE id = p_job_id AND status = 'running' AND lease_token = p_lease_token;
    RETURN FOUND;
END;
$$;

-- The row of a job running under p_lease_token, for the functions through
-- which a worker reads what its attempt needs. Raises
-- object_not_in_prerequisite_state otherwise, which workers read as "the
-- lease moved on".
CREATE OR REPLACE FUNCTION mj_job_leased_v1(p_job_id bigint, p_lease_token uuid) RETURNS jobs
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM jobs j WHERE j.id = p_job_id;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.lease_token IS DISTINCT FROM p_lease_token THEN
        RAISE EXCEPTION 'job % is not running under this lease', p_job_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN v_job;
END;
$$;

-- The outputs of the jobs that a running job needs, by job key, those that
-- finished last coming last (for a matrix, the last one's values win).
-- Raises unless the caller holds the job's lease.
CREATE OR REPLACE FUNCTION mj_job_needs_outputs_v1(p_job_id bigint, p_lease_token uuid)
RETURNS TABLE (key text, outputs jsonb)
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM mj_job_leased_v1(p_job_id, p_lease_token);
    RETURN QUERY
        SELECT n.key, n.outputs
        FROM job_dependencies d
        JOIN jobs n ON n.id = d.needs_job_id
        WHERE d.job_id = p_job_id AND n.outputs IS NOT NULL
        ORDER BY n.finished_at NULLS FIRST, n.id;
END;
$$;

-- The statuses of the jobs of a running job's run named by p_keys, and
-- whether each continues on error. failure() in a job's `if:` looks at every
-- ancestor, while the claim returns the direct needs only. Raises unless
-- the caller holds the job's lease.
CREATE OR REPLACE FUNCTION mj_job_ancestor_statuses_v1(p_job_id bigint, p_lease_token uuid, p_keys text[])
RETURNS TABLE (key text, status text, continue_on_error boolean)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_run_id bigint := (mj_job_leased_v1(p_job_id, p_lease_token)).run_id;
BEGIN
    RETURN QUERY
        SELECT a.key, a.status, a.continue_on_error
        FROM jobs a
        WHERE a.run_id = v_run_id AND a.key = ANY (p_keys)
        ORDER BY a.id;
END;
$$;

-- The configuration variables of a running job's repository, for the plan
-- job to evaluate `${{ vars.NAME }}`. Raises unless the caller holds the
-- job's lease.
CREATE OR REPLACE FUNCTION mj_job_variables_v1(p_job_id bigint, p_lease_token uuid)
RETURNS TABLE (name text, value text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_repo_id bigint := (mj_job_leased_v1(p_job_id, p_lease_token)).repo_id;
BEGIN
    RETURN QUERY
        SELECT v.name, v.value FROM repo_variables v WHERE v.repo_id = v_repo_id ORDER BY v.name;
END;
$$;

-- Report the end of an attempt. p_status is the attempt's outcome:
-- succeeded, failed, timed_out, cancelled or skipped (condition false).
-- Returns 'finished', 'retrying' (queued again after a backoff) or 'stale'
-- (the lease is no longer valid; nothing was changed).
CREATE OR REPLACE FUNCTION mj_job_finish_v1(
    p_job_id bigint,
    p_lease_token uuid,
    p_status text,
    p_exit_code integer,
    p_reason text,
    p_backoff_base_seconds double precision,
    p_backoff_max_seconds double precision
) RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
    v_class text;
    v_failures integer;
    v_reason text := p_reason;
BEGIN
    IF p_status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped') THEN
        RAISE EXCEPTION 'invalid final status "%"', p_status USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM 1 FROM pipeline_runs WHERE id = (SELECT j.run_id FROM jobs j WHERE j.id = p_job_id) FOR UPDATE;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR v_job.status <> 'running' OR v_job.lease_token IS DISTINCT FROM p_lease_token THEN
        RETURN 'stale';
    END IF;
    -- A cancelled job keeps the reason given with the cancel request (who
    -- cancelled it) rather than the worker's generic one.
    IF p_status = 'cancelled' AND v_job.cancel_requested_at IS NOT NULL THEN
        v_reason := coalesce(v_job.reason, p_reason);
    END IF;

    PERFORM mj_attempt_record_v1(v_job, p_status, p_exit_code, v_reason);

    v_class := CASE p_status WHEN 'failed' THEN 'script' WHEN 'timed_out' THEN 'timeout' END;
    IF v_class IS NOT NULL AND v_job.cancel_requested_at IS NULL THEN
        SELECT count(*) INTO v_failures
        FROM job_attempts
        WHERE job_id = p_job_id AND attempt > v_job.attempt_base AND status IN ('failed', 'timed_out');

        IF mj_retry_allows_v1(v_job.retry, v_class, p_exit_code, v_failures) THEN
            UPDATE jobs
            SET status = 'queued', worker_id = NULL, lease_token = NULL, exit_code = p_exit_code,
                reason = p_reason, queued_at = now(),
                run_after = now() + mj_backoff_v1(v_failures, p_backoff_base_seconds,
                                                  p_backoff_max_seconds)
            WHERE id = p_job_id;
            PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
            RETURN 'retrying';
        END IF;
    END IF;

    PERFORM mj_job_close_v1(p_job_id, p_status, p_exit_code, v_reason);
    RETURN 'finished';
END;
$$;

-- Store the job graph computed by a plan job and finish the plan. p_jobs is
-- a JSON array of objects with key, name, needs (keys), labels, spec,
-- condition, continue_on_error, timeout_seconds, max_attempts, retry,
-- priority, environment (a name) and concurrency ({"group": ...}). Returns 'finished', 'cancelled' or 'stale'.
CREATE OR REPLACE FUNCTION mj_plan_submit_v1(p_job_id bigint, p_lease_token uuid, p_jobs jsonb)
RETURNS text
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job jobs%ROWTYPE;
    v_missing text;
    v_concurrency jsonb;
    v_run_id bigint;
BEGIN
    -- The pipeline-wide concurrency group, copied into every job's spec by
    -- the planner. It applies only when every job carries the same one: the
    -- jobs of a run can come from several workflow files.
    SELECT CASE WHEN count(DISTINCT coalesce(e -> 'spec' -> 'workflow_concurrency', 'null')) = 1
                THEN (array_agg(e -> 'spec' -> 'workflow_concurrency'))[1] END
    INTO v_concurrency
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p_jobs) = 'array' THEN p_jobs ELSE '[]' END) AS e;
    -- A stale submission ends here, before it takes the group's lock,
    -- because a re-run of its run may hold the run's row while it waits for
    -- that lock. The lease is checked again below, under the row locks.
    SELECT j.run_id INTO v_run_id
    FROM jobs j
    WHERE j.id = p_job_id AND j.kind = 'plan' AND j.status = 'running'
      AND j.lease_token = p_lease_token;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    -- With a group, its lock and the rows of the runs this one replaces come
    -- first, in run id order (20_runs.sql). This run's row is among them.
    PERFORM mj_run_group_lock_runs_v1(v_run_id, v_concurrency);
    PERFORM 1 FROM pipeline_runs WHERE id = v_run_id FOR UPDATE;
    SELECT * INTO v_job FROM jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR v_job.kind <> 'plan' OR v_job.status <> 'running'
       OR v_job.lease_token IS DISTINCT FROM p_lease_token THEN
        RETURN 'stale';
    END IF;
    IF v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM mj_job_close_v1(p_job_id, 'cancelled', NULL, v_job.reason);
        RETURN 'cancelled';
    END IF;
    IF jsonb_typeof(p_jobs) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'the job graph must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO jobs (run_id, repo_id, kind, key, name, status, spec, labels, priority, condition,
                      continue_on_error, timeout_seconds, max_attempts, retry, environment,
                      concurrency_group)
    SELECT v_job.run_id, v_job.repo_id, 'script', e ->> 'key', coalesce(e ->> 'name', e ->> 'key'),
           'pending', coalesce(e -> 'spec', '{}'),
           coalesce(ARRAY(SELECT jsonb_array_elements_text(e -> 'labels')), '{}'),
           coalesce((e ->> 'priority')::smallint, 0),
           e ->> 'condition',
           coalesce((e ->> 'continue_on_error')::boolean, false),
           (e ->> 'timeout_seconds')::integer,
           coalesce((e ->> 'max_attempts')::integer, 3),
           coalesce(e -> 'retry', '{}'),
           nullif(e ->> 'environment', ''),
           nullif(e -> 'concurrency' ->> 'group', '')
    FROM jsonb_array_elements(p_jobs) AS e;

    SELECT need.key INTO v_missing
    FROM jsonb_array_elements(p_jobs) AS e
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(e -> 'needs', '[]')) AS need (key)
    WHERE NOT EXISTS (SELECT 1 FROM jobs n WHERE n.run_id = v_job.run_id AND n.key = need.key AND n.kind = 'script')
    LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'the job graph needs unknown job "%"', v_missing USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO job_dependencies (job_id, needs_job_id)
    SELECT j.id, n.id
    FROM jsonb_array_elements(p_jobs) AS e
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(e -> 'needs', '[]')) AS need (key)
    JOIN jobs j ON j.run_id = v_job.run_id AND j.key = e ->> 'key'
    JOIN jobs n ON n.run_id = v_job.run_id AND n.key = need.key;

    -- The run may have to wait for another run of its group. A plan job
    -- cancelled before any claim has attempt_base 0 after a re-run too, so
    -- the run's rerun_at records whether a user re-ran it. attempt_base
    -- still counts for runs re-run before rerun_at existed.
    PERFORM mj_run_group_enter_v1(v_job.run_id, v_concurrency,
        v_job.attempt_base > 0
        OR (SELECT pr.rerun_at IS NOT NULL FROM pipeline_runs pr WHERE pr.id = v_job.run_id));

    PERFORM mj_job_close_v1(p_job_id, 'succeeded', 0,
        CASE WHEN jsonb_array_length(p_jobs) = 0 THEN 'no workflow matches this event' END);
    -- The new jobs do not need the plan job, so closing it did not look at
    -- them: queue the ones without needs now.
    PERFORM mj_run_advance_v1(v_job.run_id);
    RETURN 'finished';
END;
$$;

-- Stop a worker: hand its running jobs back to the queue at once and mark
-- the worker stopped. Returns the ids of the jobs handed back.
CREATE OR REPLACE FUNCTION mj_worker_stop_v1(p_worker_id uuid) RETURNS SETOF bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_job_id bigint;
BEGIN
    UPDATE workers SET status = 'stopped', stopped_at = now() WHERE id = p_worker_id;

    FOR v_job_id IN
        SELECT id FROM jobs WHERE worker_id = p_worker_id AND status = 'running' ORDER BY run_id, id
    LOOP
        IF mj_job_hand_back_v1(v_job_id, p_worker_id, 'worker stopped') THEN
            RETURN NEXT v_job_id;
        END IF;
    END LOOP;
END;
$$;

-- Declare workers lost whose last heartbeat is older than the lease, and
-- recover their running jobs: a new attempt after a backoff while fewer than
-- max_attempts attempts (since the last manual re-run) were lost with their
-- worker and the retry policy does not exclude infrastructure failures
-- ("infra": false), otherwise failed with the reason "worker lost". A job
-- with an environment is retried only when its policy sets "infra": true.
-- Run by the maintenance leader only.
CREATE OR REPLACE FUNCTION mj_reap_v1(
    p_lease_seconds double precision,
    p_backoff_base_seconds double precision,
    p_backoff_max_seconds double precision
) RETURNS TABLE (job_id bigint, run_id bigint, worker_id uuid, attempt integer, outcome text)
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_candidate record;
    v_job jobs%ROWTYPE;
    v_lost integer;
BEGIN
    UPDATE workers w
    SET status = 'lost'
    WHERE w.status IN ('active', 'stopping')
      AND w.heartbeat_at < now() - make_interval(secs => p_lease_seconds);

    FOR v_candidate IN
        SELECT j.id, j.run_id
        FROM jobs j
        LEFT JOIN workers w ON w.id = j.worker_id
        WHERE j.status = 'running' AND (w.id IS NULL OR w.status IN ('lost', 'stopped'))
        ORDER BY j.run_id, j.id
    LOOP
        PERFORM 1 FROM pipeline_runs pr WHERE pr.id = v_candidate.run_id FOR UPDATE;
        SELECT * INTO v_job FROM jobs j WHERE j.id = v_candidate.id FOR UPDATE;
        CONTINUE WHEN v_job.status <> 'running';
        -- The worker may have come back between the scan and the lock.
        PERFORM 1 FROM workers w WHERE w.id = v_job.worker_id AND w.status IN ('active', 'stopping');
        CONTINUE WHEN FOUND;

        job_id := v_job.id;
        run_id := v_job.run_id;
        worker_id := v_job.worker_id;
        attempt := v_job.attempt;

        PERFORM mj_attempt_record_v1(v_job, 'lost', NULL, 'worker lost');

        SELECT count(*) INTO v_lost
        FROM job_attempts a
        WHERE a.job_id = v_job.id AND a.attempt > v_job.attempt_base AND a.status = 'lost';

        IF v_job.cancel_requested_at IS NOT NULL THEN
            PERFORM mj_job_close_v1(v_job.id, 'cancelled', NULL, coalesce(v_job.reason, 'cancelled'));
            outcome := 'cancelled';
        -- A deploy is retried only when its retry policy names infra
        -- failures: a half-applied deploy run again can do harm.
        ELSIF v_lost < v_job.max_attempts
              AND coalesce((v_job.retry ->> 'infra')::boolean, v_job.environment IS NULL) THEN
            UPDATE jobs j
            SET status = 'queued', worker_id = NULL, lease_token = NULL, reason = 'worker lost',
                queued_at = now(),
                run_after = now() + mj_backoff_v1(v_lost, p_backoff_base_seconds, p_backoff_max_seconds)
            WHERE j.id = v_job.id;
            PERFORM pg_notify('mj_runs_v1', v_job.run_id::text);
            outcome := 'retrying';
        ELSE
            PERFORM mj_job_close_v1(v_job.id, 'failed', NULL, 'worker lost');
            outcome := 'failed';
        END IF;
        IF v_job.environment IS NOT NULL THEN
            -- Defined in 50_deploy.sql: the deployment history shows the
            -- end in the same transaction.
            PERFORM mj_deploy_record_end_v1(v_job.id);
        END IF;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Report the ends of several attempts in one transaction (one commit).
-- Outcomes are those of mj_job_finish_v1. Failures whose job has a retry
-- policy go through mj_job_finish_v1 one by one; every other result is
-- applied set-wise (one UPDATE of jobs and one INSERT into job_attempts for
-- the batch), and each affected run is advanced or closed once. Runs are
-- locked in id order first, so two batches cannot deadlock. Returns one
-- outcome per job id.
--
-- As in mj_job_claim_v2, this function's own statements reach jobs and
-- pipeline_runs by primary key. Job states are read in the select list of a
-- lookup by id rather than in a WHERE clause, where a stale estimate of
-- running jobs could select jobs_running_repo_idx and walk its dead entries.
CREATE OR REPLACE FUNCTION mj_job_finish_many_v1(
    p_job_ids bigint[],
    p_lease_tokens uuid[],
    p_statuses text[],
    p_exit_codes integer[],
    p_reasons text[],
    p_backoff_base_seconds double precision,
    p_backoff_max_seconds double precision
) RETURNS TABLE (job_id bigint, outcome text)
    LANGUAGE plpgsql
    -- As in mj_job_claim_v2; the setting also holds for the functions this
    -- one calls (advancing and closing runs).
    SET plan_cache_mode = force_generic_plan
    SET jit = off
    AS $$
#variable_conflict use_column
DECLARE
    v_item record;
    v_retried bigint[] := '{}';
    v_current bigint[];
    v_closed bigint[];
    v_closed_runs bigint[];
    v_deploys bigint[];
    v_run record;
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_statuses) AS given (status)
               WHERE given.status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')) THEN
        RAISE EXCEPTION 'invalid final status in %', p_statuses USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM 1
    FROM pipeline_runs pr
    WHERE pr.id = ANY (ARRAY(SELECT j.run_id FROM jobs j WHERE j.id = ANY (p_job_ids)))
    ORDER BY pr.id
    FOR UPDATE;

    -- Failures that a retry policy may requeue: the policy needs the job's
    -- failure count, so these take the single-result path.
    IF 'failed' = ANY (p_statuses) OR 'timed_out' = ANY (p_statuses) THEN
        FOR v_item IN
            SELECT item.job_id, item.lease_token, item.status, item.exit_code, item.reason
            FROM unnest(p_job_ids, p_lease_tokens, p_statuses, p_exit_codes, p_reasons)
                 AS item (job_id, lease_token, status, exit_code, reason)
            WHERE item.status IN ('failed', 'timed_out')
              AND (SELECT j.retry <> '{}'::jsonb FROM jobs j WHERE j.id = item.job_id)
            ORDER BY item.job_id
        LOOP
            job_id := v_item.job_id;
            outcome := mj_job_finish_v1(v_item.job_id, v_item.lease_token, v_item.status,
                                        v_item.exit_code, v_item.reason,
                                        p_backoff_base_seconds, p_backoff_max_seconds);
            v_retried := v_retried || v_item.job_id;
            RETURN NEXT;
        END LOOP;
    END IF;

    -- The attempts this batch still holds. The run locks taken above keep
    -- these rows as they are until the end of the transaction.
    v_current := ARRAY(
        SELECT item.job_id
        FROM unnest(p_job_ids, p_lease_tokens) AS item (job_id, lease_token)
        WHERE NOT (item.job_id = ANY (v_retried))
          AND (SELECT j.status = 'running' AND j.lease_token = item.lease_token
               FROM jobs j WHERE j.id = item.job_id));

    WITH item AS (
        SELECT given.job_id, given.lease_token, given.status, given.exit_code, given.reason
        FROM unnest(p_job_ids, p_lease_tokens, p_statuses, p_exit_codes, p_reasons)
             AS given (job_id, lease_token, status, exit_code, reason)
        WHERE given.job_id = ANY (v_current)
    ),
    closed AS (
        UPDATE jobs j
        SET status = item.status,
            exit_code = item.exit_code,
            -- A cancelled job keeps the reason given with the cancel request.
            reason = CASE WHEN item.status = 'cancelled' AND j.cancel_requested_at IS NOT NULL
                          THEN coalesce(j.reason, item.reason) ELSE item.reason END,
            lease_token = NULL,
            finished_at = now()
        FROM item
        -- The lease token fences the update itself too: it is cleared
        -- whenever a job stops running, and no index has it as a key.
        WHERE j.id = ANY (v_current) AND j.id = item.job_id AND j.lease_token = item.lease_token
        RETURNING j.id, j.run_id, j.attempt, j.worker_id, item.lease_token, j.status, j.exit_code,
                  j.reason, j.queued_at, j.started_at, j.finished_at, j.environment
    ),
    recorded AS (
        INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, exit_code, reason,
                                  queued_at, started_at, finished_at)
        SELECT closed.id, closed.attempt, closed.worker_id, closed.lease_token, closed.status,
               closed.exit_code, closed.reason, closed.queued_at, closed.started_at,
               closed.finished_at
        FROM closed
        -- As in mj_attempt_record_v1.
        ON CONFLICT (job_id, attempt) DO UPDATE
            SET status = excluded.status, exit_code = excluded.exit_code, reason = excluded.reason,
                finished_at = excluded.finished_at
            WHERE job_attempts.status = 'running'
    )
    SELECT coalesce(array_agg(closed.id ORDER BY closed.id), '{}'),
           coalesce(array_agg(closed.run_id ORDER BY closed.id), '{}'),
           coalesce(array_agg(closed.id ORDER BY closed.id)
                        FILTER (WHERE closed.environment IS NOT NULL), '{}')
    INTO v_closed, v_closed_runs, v_deploys
    FROM closed;

    -- Deploys record their end in the same transaction (50_deploy.sql).
    PERFORM mj_deploy_record_end_v1(deploy.id) FROM unnest(v_deploys) AS deploy (id);

    -- Each run once: advance it when a closed job has dependents (they may
    -- be ready now), otherwise only check whether the run has ended.
    FOR v_run IN
        SELECT closing.run_id,
               bool_or(EXISTS (SELECT 1 FROM job_dependencies d WHERE d.needs_job_id = closing.id))
                   AS has_dependents
        FROM unnest(v_closed, v_closed_runs) AS closing (id, run_id)
        GROUP BY closing.run_id
        ORDER BY closing.run_id
    LOOP
        PERFORM pg_notify('mj_runs_v1', v_run.run_id::text);
        IF v_run.has_dependents THEN
            PERFORM mj_run_advance_v1(v_run.run_id);
        ELSE
            PERFORM mj_run_close_if_done_v1(v_run.run_id);
        END IF;
    END LOOP;

    RETURN QUERY
        SELECT item.job_id, CASE WHEN item.job_id = ANY (v_closed) THEN 'finished' ELSE 'stale' END
        FROM unnest(p_job_ids) AS item (job_id)
        WHERE NOT (item.job_id = ANY (v_retried));
END;
$$;

-- Report the ends of attempts and claim new jobs in one transaction: a
-- worker's cycle, whose slots free up as its jobs end, then costs one call
-- and one commit instead of two. The results are applied first, so the
-- claim can take jobs they have just queued. Rows with an outcome are the
-- results of p_job_ids (as from mj_job_finish_many_v1); rows without one
-- are the claimed jobs (as from mj_job_claim_v2).
CREATE OR REPLACE FUNCTION mj_job_finish_and_claim_v1(
    p_worker_id uuid,
    p_labels text[],
    p_limit integer,
    p_job_ids bigint[],
    p_lease_tokens uuid[],
    p_statuses text[],
    p_exit_codes integer[],
    p_reasons text[],
    p_backoff_base_seconds double precision,
    p_backoff_max_seconds double precision
) RETURNS TABLE (
    job_id bigint,
    outcome text,
    run_id bigint,
    attempt integer,
    lease_token uuid,
    kind text,
    key text,
    name text,
    spec jsonb,
    condition text,
    timeout_seconds integer,
    needs jsonb,
    run_context jsonb
)
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET jit = off
    AS $$
BEGIN
    IF cardinality(p_job_ids) > 0 THEN
        RETURN QUERY
            SELECT reported.job_id, reported.outcome, NULL::bigint, NULL::integer, NULL::uuid,
                   NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::integer,
                   NULL::jsonb, NULL::jsonb
            FROM mj_job_finish_many_v1(p_job_ids, p_lease_tokens, p_statuses, p_exit_codes,
                                       p_reasons, p_backoff_base_seconds,
                                       p_backoff_max_seconds) AS reported;
    END IF;
    RETURN QUERY
        SELECT claimed.job_id, NULL::text, claimed.run_id, claimed.attempt, claimed.lease_token,
               claimed.kind, claimed.key, claimed.name, claimed.spec, claimed.condition,
               claimed.timeout_seconds, claimed.needs, claimed.run_context
        FROM mj_job_claim_v2(p_worker_id, p_labels, p_limit) AS claimed;
END;
$$;
