-- name: webhook_delivery_find_accepted
-- Fetch the accepted delivery with this forge delivery id (the original of a replay).
SELECT id, run_id, outcome, status_code, message
FROM webhook_deliveries
WHERE forge = %(forge)s::text AND delivery_id = %(delivery_id)s::text AND accepted;

-- name: webhook_delivery_insert_accepted
-- Record a delivery whose signature checked out; returns nothing when it is a replay.
INSERT INTO webhook_deliveries (forge, delivery_id, accepted, repo_id, event, headers, status_code,
                                outcome, message)
VALUES (%(forge)s::text, %(delivery_id)s::text, true, %(repo_id)s::bigint, %(event)s::text,
        %(headers)s::jsonb, %(status_code)s::integer, %(outcome)s::text, %(message)s::text)
ON CONFLICT (forge, delivery_id) WHERE accepted AND delivery_id IS NOT NULL DO NOTHING
RETURNING id;

-- name: webhook_delivery_insert_rejected
-- Record a delivery that was rejected (bad signature, unknown repository, invalid body).
INSERT INTO webhook_deliveries (forge, delivery_id, accepted, repo_id, event, headers, status_code,
                                outcome, message)
VALUES (%(forge)s::text, %(delivery_id)s::text, false, %(repo_id)s::bigint, %(event)s::text,
        %(headers)s::jsonb, %(status_code)s::integer, 'rejected', %(message)s::text)
RETURNING id;

-- name: webhook_delivery_set_result
-- Link an accepted delivery to its run and store its final status and outcome.
UPDATE webhook_deliveries
SET run_id = %(run_id)s::bigint, status_code = %(status_code)s::integer,
    outcome = %(outcome)s::text, message = %(message)s::text
WHERE id = %(id)s::bigint;

-- name: webhook_delivery_get
-- Fetch one recorded delivery with its headers.
SELECT d.id, d.forge, d.delivery_id, d.accepted, d.repo_id, r.name AS repo_name, d.event,
       d.headers, d.status_code, d.outcome, d.message, d.run_id, d.received_at
FROM webhook_deliveries d
LEFT JOIN repositories r ON r.id = d.repo_id
WHERE d.id = %(id)s::bigint;

-- name: webhook_delivery_list
-- List recorded deliveries newest first, filtered by forge, repository and outcome; keyset-paginated.
SELECT d.id, d.forge, d.delivery_id, d.accepted, d.repo_id, r.name AS repo_name, d.event,
       d.status_code, d.outcome, d.message, d.run_id, d.received_at
FROM webhook_deliveries d
LEFT JOIN repositories r ON r.id = d.repo_id
WHERE (%(forge)s::text IS NULL OR d.forge = %(forge)s::text)
  AND (%(repo)s::text IS NULL OR r.name = %(repo)s::text)
  AND (%(outcome)s::text IS NULL OR d.outcome = %(outcome)s::text)
  AND (%(before_id)s::bigint IS NULL OR d.id < %(before_id)s::bigint)
ORDER BY d.id DESC
LIMIT %(limit)s::integer;
