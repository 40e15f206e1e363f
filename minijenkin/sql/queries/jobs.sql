-- name: job_attempts
-- List every attempt of a job with its worker, times and outcome. The running
-- attempt has no job_attempts row until it ends: it is read from the job.
SELECT a.attempt, a.worker_id, w.name AS worker_name, a.status, a.exit_code, a.reason,
       a.queued_at, a.started_at, a.finished_at
FROM job_attempts a
LEFT JOIN workers w ON w.id = a.worker_id
WHERE a.job_id = %(job_id)s::bigint
UNION ALL
SELECT j.attempt, j.worker_id, w.name, 'running', NULL, NULL, j.queued_at, j.started_at, NULL
FROM jobs j
LEFT JOIN workers w ON w.id = j.worker_id
WHERE j.id = %(job_id)s::bigint AND j.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = j.id AND a.attempt = j.attempt)
ORDER BY attempt;

-- name: job_cancel
-- Cancel one job: at once when it has not started, through its worker when it runs.
SELECT mj_job_cancel_v1(%(job_id)s::bigint, %(reason)s::text) AS outcome;

-- name: job_get
-- Fetch one job with its run's repository, and whether a live worker offers its labels.
SELECT j.id, j.run_id, j.repo_id, r.name AS repo_name, j.kind, j.key, j.name, j.status, j.attempt,
       j.max_attempts, j.exit_code, j.reason, j.labels, j.spec, j.timeout_seconds,
       j.continue_on_error, j.priority, j.run_after, j.worker_id, w.name AS worker_name,
       j.cancel_requested_at, j.created_at, j.queued_at, j.started_at, j.finished_at,
       EXISTS (SELECT 1 FROM workers lw
               WHERE lw.status = 'active' AND j.labels <@ lw.labels) AS has_capable_worker,
       coalesce((SELECT array_agg(n.key ORDER BY n.key)
                 FROM job_dependencies d JOIN jobs n ON n.id = d.needs_job_id
                 WHERE d.job_id = j.id), '{}') AS needs
FROM jobs j
JOIN repositories r ON r.id = j.repo_id
LEFT JOIN workers w ON w.id = j.worker_id
WHERE j.id = %(job_id)s::bigint;
