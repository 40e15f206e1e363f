-- name: run_cancel
-- Cancel every active job of a run; returns the number of jobs affected.
SELECT mj_run_cancel_v1(%(run_id)s::bigint, %(reason)s::text) AS affected;

-- name: run_create
-- Create a run with its plan job and wake the workers.
SELECT mj_run_create_v1(%(repo_id)s::bigint, %(event)s::text, %(ref)s::text, %(commit_sha)s::text,
                        %(before_sha)s::text, %(message)s::text, %(author)s::text,
                        %(trigger)s::jsonb) AS id;

-- name: run_get
-- Fetch one run with its repository name.
SELECT pr.id, pr.repo_id, r.name AS repo_name, pr.status, pr.event, pr.ref, pr.commit_sha,
       pr.before_sha, pr.message, pr.author, pr.trigger, pr.reason, pr.concurrency_group,
       pr.created_at, pr.started_at, pr.finished_at
FROM pipeline_runs pr
JOIN repositories r ON r.id = pr.repo_id
WHERE pr.id = %(run_id)s::bigint;

-- name: run_jobs
-- List the jobs of a run in creation order, with the keys of the jobs each one needs
-- and whether a live worker offers their labels.
SELECT j.id, j.run_id, j.kind, j.key, j.name, j.status, j.attempt, j.exit_code, j.reason,
       j.labels, j.created_at, j.queued_at, j.started_at, j.finished_at, j.worker_id,
       EXISTS (SELECT 1 FROM workers lw
               WHERE lw.status = 'active' AND j.labels <@ lw.labels) AS has_capable_worker,
       coalesce((SELECT array_agg(n.key ORDER BY n.key)
                 FROM job_dependencies d JOIN jobs n ON n.id = d.needs_job_id
                 WHERE d.job_id = j.id), '{}') AS needs
FROM jobs j
WHERE j.run_id = %(run_id)s::bigint
ORDER BY j.id;

-- name: run_list
-- List runs newest first, filtered by repository, status, event and branch; keyset-paginated by id.
SELECT pr.id, pr.repo_id, r.name AS repo_name, pr.status, pr.event, pr.ref, pr.commit_sha,
       pr.message, pr.author, pr.reason, pr.created_at, pr.started_at, pr.finished_at
FROM pipeline_runs pr
JOIN repositories r ON r.id = pr.repo_id
WHERE (%(repo)s::text IS NULL OR r.name = %(repo)s::text)
  AND (%(status)s::text IS NULL OR pr.status = %(status)s::text)
  AND (%(event)s::text IS NULL OR pr.event = %(event)s::text)
  AND (%(ref)s::text IS NULL OR pr.ref = %(ref)s::text)
  AND (%(before_id)s::bigint IS NULL OR pr.id < %(before_id)s::bigint)
ORDER BY pr.id DESC
LIMIT %(limit)s::integer;

-- name: run_rerun
-- Re-run a finished run's jobs (all, or the failed ones and their dependents).
SELECT mj_run_rerun_v1(%(run_id)s::bigint, %(failed_only)s::boolean) AS reset;

-- name: run_group_sweep
-- Start waiting runs of concurrency groups that have no active run; one row per run started.
SELECT run_id, repo_id, concurrency_group FROM mj_run_group_sweep_v1();
