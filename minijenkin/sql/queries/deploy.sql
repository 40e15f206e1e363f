-- name: deploy_decide
-- Approve or reject a job that awaits approval; returns the outcome.
SELECT mj_deploy_decide_v1(%(job_id)s::bigint, %(approve)s::boolean, %(by)s::text) AS outcome;

-- name: deploy_environment_get
-- One environment with its lock holder, queue length and contention count.
SELECT e.name, e.requires_approval, e.created_at, e.updated_at,
       coalesce(f.failures, 0) AS lock_failures,
       l.job_id AS holder_job_id, l.run_id AS holder_run_id, l.job_name AS holder_job_name,
       l.acquired_at AS holder_since,
       (SELECT count(*) FROM jobs j
        WHERE j.environment = e.name AND j.status = 'waiting') AS waiting,
       (SELECT count(*) FROM jobs j
        WHERE j.environment = e.name AND j.status = 'awaiting_approval') AS awaiting_approval
FROM environments e
LEFT JOIN deploy_lock_failures f ON f.name = 'deploy:' || e.name
LEFT JOIN deploy_locks l ON l.name = 'deploy:' || e.name
WHERE e.name = %(name)s::text;

-- name: deploy_environment_list
-- Every environment with its lock holder, queue length and contention count, by name.
SELECT e.name, e.requires_approval, e.created_at, e.updated_at,
       coalesce(f.failures, 0) AS lock_failures,
       l.job_id AS holder_job_id, l.run_id AS holder_run_id, l.job_name AS holder_job_name,
       l.acquired_at AS holder_since,
       (SELECT count(*) FROM jobs j
        WHERE j.environment = e.name AND j.status = 'waiting') AS waiting,
       (SELECT count(*) FROM jobs j
        WHERE j.environment = e.name AND j.status = 'awaiting_approval') AS awaiting_approval
FROM environments e
LEFT JOIN deploy_lock_failures f ON f.name = 'deploy:' || e.name
LEFT JOIN deploy_locks l ON l.name = 'deploy:' || e.name
ORDER BY e.name;

-- name: deploy_environment_put
-- Create or update an environment's settings.
INSERT INTO environments (name, requires_approval)
VALUES (%(name)s::text, %(requires_approval)s::boolean)
ON CONFLICT (name) DO UPDATE
    SET requires_approval = excluded.requires_approval, updated_at = now()
RETURNING name;

-- name: deploy_history
-- Deployments of one environment, newest first, with run, commit, trigger and decision.
SELECT d.id, d.job_id, d.run_id, j.name AS job_name, j.status AS job_status, d.status,
       d.lock_failures, d.decision, d.decided_by, d.decided_at, d.created_at, d.started_at,
       d.finished_at, j.reason, pr.ref, pr.commit_sha, pr.event, pr.trigger, r.name AS repo
FROM deployments d
JOIN jobs j ON j.id = d.job_id
JOIN pipeline_runs pr ON pr.id = d.run_id
JOIN repositories r ON r.id = pr.repo_id
WHERE d.environment = %(name)s::text
  AND (%(before)s::bigint IS NULL OR d.id < %(before)s::bigint)
ORDER BY d.id DESC
LIMIT %(limit)s::integer;

-- name: deploy_lock_acquire
-- Take a running job's deploy locks on this connection, or park the job.
SELECT outcome, reason FROM mj_deploy_acquire_v1(%(job_id)s::bigint, %(lease_token)s::uuid);

-- name: deploy_lock_release
-- Give back a job's deploy locks on this connection and wake the next waiting job.
SELECT mj_deploy_release_v1(%(job_id)s::bigint) AS woken;

-- name: deploy_queue
-- Jobs of one environment that wait for its lock or for approval, oldest first.
SELECT j.id AS job_id, j.run_id, j.name AS job_name, j.status, j.reason, j.created_at,
       pr.ref, pr.commit_sha, r.name AS repo
FROM jobs j
JOIN pipeline_runs pr ON pr.id = j.run_id
JOIN repositories r ON r.id = pr.repo_id
WHERE j.environment = %(name)s::text AND j.status IN ('queued', 'waiting', 'awaiting_approval')
ORDER BY j.id;

-- name: deploy_sweep
-- Close deployments of ended jobs and wake queues whose lock holder died.
SELECT job_id, run_id, lock_name FROM mj_deploy_sweep_v1();
