-- A prototype of the queue with narrow tables, for bench/queue_layout.py only:
-- migrations never apply it. Queued jobs live in job_queue and running
-- attempts in job_leases. No index of jobs uses status in its key or
-- predicate, so the claim's and the finish's updates of a job row can be HOT
-- updates, which add no index entries. The two functions do what
-- mj_job_claim_v2 and mj_job_finish_many_v1 do for successes of script jobs,
-- without retries, deploys, outbox rows or run summaries, so the comparison
-- favours the prototype.

DROP INDEX jobs_queue_idx, jobs_running_worker_idx, jobs_active_run_idx, jobs_running_repo_idx;
ALTER TABLE jobs SET (fillfactor = 70);

CREATE TABLE job_queue (
    job_id     bigint PRIMARY KEY,
    repo_id    bigint NOT NULL,
    priority   smallint NOT NULL DEFAULT 0,
    labels     text[] NOT NULL DEFAULT '{}',
    run_after  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_queue_order_idx ON job_queue (repo_id, priority DESC, job_id);

CREATE TABLE job_leases (
    job_id       bigint PRIMARY KEY,
    worker_id    uuid NOT NULL,
    repo_id      bigint NOT NULL,
    lease_token  uuid NOT NULL
);
CREATE INDEX job_leases_worker_idx ON job_leases (worker_id);

CREATE FUNCTION layout_claim(p_worker_id uuid, p_labels text[], p_limit integer)
RETURNS TABLE (
    job_id bigint, run_id bigint, attempt integer, lease_token uuid, kind text, key text,
    name text, spec jsonb, condition text, timeout_seconds integer, needs jsonb,
    run_context jsonb
)
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET jit = off
    AS $$
DECLARE
    v_ids bigint[];
BEGIN
    PERFORM 1 FROM workers w WHERE w.id = p_worker_id AND w.status = 'active';
    IF NOT FOUND THEN
        RETURN;
    END IF;

    v_ids := ARRAY(
        SELECT q.job_id
        FROM repositories r
        CROSS JOIN LATERAL (
            SELECT q.job_id, q.priority
            FROM job_queue q
            WHERE q.repo_id = r.id AND q.run_after <= now()
              AND q.labels <@ coalesce(p_labels, '{}')
            ORDER BY q.priority DESC, q.job_id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ) q
        ORDER BY q.priority DESC, q.job_id
        LIMIT p_limit);
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH gone AS (
        DELETE FROM job_queue q WHERE q.job_id = ANY (v_ids) RETURNING q.job_id, q.repo_id
    ),
    leased AS (
        INSERT INTO job_leases (job_id, worker_id, repo_id, lease_token)
        SELECT gone.job_id, p_worker_id, gone.repo_id, gen_random_uuid() FROM gone
        RETURNING job_leases.job_id, job_leases.lease_token
    ),
    claimed AS (
        UPDATE jobs j
        SET status = 'running', attempt = j.attempt + 1, worker_id = p_worker_id,
            lease_token = leased.lease_token, started_at = now(), finished_at = NULL,
            exit_code = NULL, reason = NULL
        FROM leased
        WHERE j.id = leased.job_id
        RETURNING j.id, j.run_id, j.attempt, j.lease_token, j.kind, j.key, j.name, j.spec,
                  j.condition, j.timeout_seconds
    )
    SELECT c.id, c.run_id, c.attempt, c.lease_token, c.kind, c.key, c.name, c.spec, c.condition,
           c.timeout_seconds,
           (SELECT jsonb_object_agg(n.key, n.status)
            FROM job_dependencies d JOIN jobs n ON n.id = d.needs_job_id
            WHERE d.job_id = c.id),
           CASE WHEN c.id = min(c.id) OVER (PARTITION BY c.run_id) THEN (
               SELECT jsonb_build_object(
                          'repo', jsonb_build_object('id', r.id, 'name', r.name, 'url', r.url),
                          'run', jsonb_build_object(
                              'id', pr.id, 'event', pr.event, 'ref', pr.ref,
                              'commit', pr.commit_sha, 'before', pr.before_sha,
                              'message', pr.message, 'author', pr.author,
                              'trigger', pr.trigger))
               FROM pipeline_runs pr, repositories r
               WHERE pr.id = c.run_id AND r.id = pr.repo_id)
           END
    FROM claimed c
    ORDER BY c.id;
END;
$$;

CREATE FUNCTION layout_finish(
    p_job_ids bigint[],
    p_lease_tokens uuid[],
    p_statuses text[],
    p_exit_codes integer[],
    p_reasons text[]
) RETURNS TABLE (job_id bigint, outcome text)
    LANGUAGE plpgsql
    SET plan_cache_mode = force_generic_plan
    SET jit = off
    AS $$
#variable_conflict use_column
DECLARE
    v_closed bigint[];
    v_runs bigint[];
BEGIN
    PERFORM 1
    FROM pipeline_runs pr
    WHERE pr.id = ANY (ARRAY(SELECT j.run_id FROM jobs j WHERE j.id = ANY (p_job_ids)))
    ORDER BY pr.id
    FOR UPDATE;

    WITH item AS (
        SELECT *
        FROM unnest(p_job_ids, p_lease_tokens, p_statuses, p_exit_codes, p_reasons)
             AS given (job_id, lease_token, status, exit_code, reason)
    ),
    gone AS (
        DELETE FROM job_leases l
        USING item
        WHERE l.job_id = item.job_id AND l.lease_token = item.lease_token
        RETURNING l.job_id
    ),
    closed AS (
        UPDATE jobs j
        SET status = item.status, exit_code = item.exit_code, reason = item.reason,
            lease_token = NULL, finished_at = now()
        FROM item, gone
        WHERE gone.job_id = item.job_id AND j.id = gone.job_id
        RETURNING j.id, j.run_id, j.attempt, j.worker_id, item.lease_token, j.status,
                  j.exit_code, j.reason, j.queued_at, j.started_at, j.finished_at
    ),
    recorded AS (
        INSERT INTO job_attempts (job_id, attempt, worker_id, lease_token, status, exit_code,
                                  reason, queued_at, started_at, finished_at)
        SELECT closed.id, closed.attempt, closed.worker_id, closed.lease_token, closed.status,
               closed.exit_code, closed.reason, closed.queued_at, closed.started_at,
               closed.finished_at
        FROM closed
    )
    SELECT coalesce(array_agg(closed.id), '{}'), coalesce(array_agg(DISTINCT closed.run_id), '{}')
    INTO v_closed, v_runs
    FROM closed;

    PERFORM pg_notify('mj_runs_v1', closing.id::text) FROM unnest(v_runs) AS closing (id);
    UPDATE pipeline_runs pr
    SET status = 'succeeded', finished_at = now()
    WHERE pr.id = ANY (v_runs)
      AND NOT EXISTS (SELECT 1 FROM jobs j
                      WHERE j.run_id = pr.id
                        AND j.status IN ('pending', 'queued', 'running', 'waiting',
                                         'awaiting_approval'));

    RETURN QUERY
        SELECT given.id, CASE WHEN given.id = ANY (v_closed) THEN 'finished' ELSE 'stale' END
        FROM unnest(p_job_ids) AS given (id);
END;
$$;
