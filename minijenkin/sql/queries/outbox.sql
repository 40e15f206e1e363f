-- name: outbox_claim
-- Claim up to `limit` due deliveries for this dispatcher, each under a new lease, and at
-- most `per_target` in flight for one target.
SELECT id, target_id, run_id, event, payload, idempotency_key, attempts, lease_token, kind,
       url_encrypted, secret_encrypted, options, repo_name
FROM mj_outbox_claim_v2(%(dispatcher)s::text, %(limit)s::integer, %(lease_seconds)s::float8,
                        %(horizon_seconds)s::float8, %(per_target)s::integer);

-- name: outbox_enqueue_deploy
-- Enqueue deploy.started or deploy.finished for a deploy job's repository targets.
SELECT mj_outbox_enqueue_deploy_v1(%(job_id)s::bigint, %(environment)s::text, %(event)s::text,
                                   %(status)s::text) AS inserted;

-- name: outbox_get
-- Fetch one delivery with its target's kind.
SELECT o.id, o.target_id, t.kind, o.repo_id, o.run_id, o.event, o.idempotency_key, o.state,
       o.attempts, o.scheduled_at, o.next_attempt_at, o.dispatcher, o.last_attempt_at,
       o.last_status_code, o.last_error, o.delivered_at, o.dead_at, o.created_at
FROM outbox o
JOIN notification_targets t ON t.id = o.target_id
WHERE o.id = %(id)s::bigint;

-- name: outbox_list
-- List deliveries newest first, filtered by state and repository; keyset-paginated by id.
SELECT o.id, o.target_id, t.kind, o.repo_id, o.run_id, o.event, o.idempotency_key, o.state,
       o.attempts, o.scheduled_at, o.next_attempt_at, o.dispatcher, o.last_attempt_at,
       o.last_status_code, o.last_error, o.delivered_at, o.dead_at, o.created_at
FROM outbox o
JOIN notification_targets t ON t.id = o.target_id
WHERE (%(state)s::text IS NULL OR o.state = %(state)s::text)
  AND (%(repo_id)s::bigint IS NULL OR o.repo_id = %(repo_id)s::bigint)
  AND (%(before_id)s::bigint IS NULL OR o.id < %(before_id)s::bigint)
ORDER BY o.id DESC
LIMIT %(limit)s::integer;

-- name: outbox_redeliver
-- Schedule a delivery again now, with a fresh retry schedule and the same idempotency key.
SELECT mj_outbox_redeliver_v1(%(id)s::bigint) AS state;

-- name: outbox_report
-- Record the outcome of one attempt, fenced by its lease token; returns the new state or 'stale'.
SELECT mj_outbox_report_v1(%(id)s::bigint, %(lease_token)s::uuid, %(outcome)s::text,
                           %(status_code)s::integer, %(error)s::text,
                           %(retry_after_seconds)s::float8, %(backoff_base_seconds)s::float8,
                           %(backoff_max_seconds)s::float8, %(horizon_seconds)s::float8) AS state;

-- name: outbox_stats
-- Backlog (pending, delivering), dead letters and the age of the oldest due delivery.
SELECT pending, delivering, dead, oldest_due_seconds FROM mj_outbox_stats_v1();
