-- name: ref_head_latest
-- Fetch the commit of the newest run-starting head seen on a ref (the `before` of the next one).
SELECT commit_sha
FROM ref_heads
WHERE repo_id = %(repo_id)s::bigint AND ref = %(ref)s::text
ORDER BY created_at DESC
LIMIT 1;

-- name: ref_heads_record
-- Record heads as seen without starting runs (the baseline of a repository's first poll).
INSERT INTO ref_heads (repo_id, ref, commit_sha, source)
SELECT %(repo_id)s::bigint, candidate.ref, candidate.commit_sha, 'poll'
FROM unnest(%(refs)s::text[], %(commits)s::text[]) AS candidate (ref, commit_sha)
ON CONFLICT DO NOTHING;

-- name: ref_heads_unknown
-- Filter (ref, commit) pairs down to the ones no webhook or poll has started a run for.
SELECT candidate.ref, candidate.commit_sha
FROM unnest(%(refs)s::text[], %(commits)s::text[]) AS candidate (ref, commit_sha)
WHERE NOT EXISTS (
    SELECT 1 FROM ref_heads h
    WHERE h.repo_id = %(repo_id)s::bigint AND h.ref = candidate.ref
      AND h.commit_sha = candidate.commit_sha
);

-- name: repo_poll_due
-- List repositories whose poll is due, oldest first.
SELECT id, name, url, default_branch, poll_interval_seconds, polled_at, poll_error
FROM repositories
WHERE poll_interval_seconds IS NOT NULL AND coalesce(next_poll_at, '-infinity') <= now()
ORDER BY next_poll_at NULLS FIRST, id
LIMIT %(limit)s::integer;

-- name: repo_poll_record
-- Record a finished poll and schedule the next one; a failed poll keeps polled_at.
UPDATE repositories
SET polled_at = CASE WHEN %(error)s::text IS NULL THEN now() ELSE polled_at END,
    poll_error = %(error)s::text,
    next_poll_at = now() + make_interval(secs => poll_interval_seconds)
WHERE id = %(id)s::bigint;

-- name: run_create_for_head
-- Start a run for a pushed head unless a webhook or poll already did; returns (run_id, created).
SELECT run_id, created
FROM mj_run_create_for_head_v1(%(repo_id)s::bigint, %(event)s::text, %(ref)s::text,
                               %(commit_sha)s::text, %(before_sha)s::text, %(message)s::text,
                               %(author)s::text, %(trigger)s::jsonb, %(source)s::text);

-- name: schedule_due
-- List schedules whose next tick has come, in tick order.
SELECT s.id, s.repo_id, s.cron, s.timezone, s.next_run_at, now() AS now
FROM schedules s
WHERE s.next_run_at <= now()
ORDER BY s.next_run_at, s.id
LIMIT %(limit)s::integer;

-- name: schedule_fire
-- Fire one tick if no other process fired it; returns the run id or NULL.
SELECT mj_schedule_fire_v1(%(id)s::bigint, %(expected)s::timestamptz, %(tick)s::timestamptz,
                           %(next_run_at)s::timestamptz) AS run_id;

-- name: schedule_list
-- List schedules, optionally of one repository, with their repository's name.
SELECT s.id, s.repo_id, r.name AS repo_name, s.cron, s.timezone, s.ref, s.commit_sha,
       s.next_run_at, s.last_tick_at, s.last_run_id, s.created_at, s.updated_at
FROM schedules s
JOIN repositories r ON r.id = s.repo_id
WHERE %(repo_id)s::bigint IS NULL OR s.repo_id = %(repo_id)s::bigint
ORDER BY r.name, s.id;

-- name: schedule_pending
-- List schedules whose first tick is not computed yet, with the database clock.
SELECT id, repo_id, cron, timezone, now() AS now
FROM schedules
WHERE next_run_at IS NULL
ORDER BY id
LIMIT %(limit)s::integer;

-- name: schedule_replace
-- Store the schedules a plan job read from the default branch, fenced by its lease token.
SELECT mj_schedules_replace_v1(%(job_id)s::bigint, %(lease_token)s::uuid, %(commit_sha)s::text,
                               %(schedules)s::jsonb, %(error)s::text) AS outcome;

-- name: schedule_set_first_tick
-- Store a new schedule's first tick (once: another process may have done it).
UPDATE schedules SET next_run_at = %(next_run_at)s::timestamptz, updated_at = now()
WHERE id = %(id)s::bigint AND next_run_at IS NULL;

-- name: schedule_sync_wanted
-- Whether a plan job plans the newest default-branch head, whose file defines the schedules.
SELECT mj_schedules_sync_wanted_v1(%(job_id)s::bigint, %(lease_token)s::uuid) AS wanted;
