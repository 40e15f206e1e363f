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

-- name: webhook_delivery_set_run
-- Link an accepted delivery to the run it created.
UPDATE webhook_deliveries SET run_id = %(run_id)s::bigint WHERE id = %(id)s::bigint;
