-- name: notification_target_delete
-- Delete one target of a repository, with its deliveries; returns nothing for an unknown pair.
DELETE FROM notification_targets
WHERE id = %(id)s::bigint AND repo_id = %(repo_id)s::bigint
RETURNING id;

-- name: notification_target_insert
-- Store a target whose id was allocated by notification_target_next_id.
INSERT INTO notification_targets (id, repo_id, kind, url_encrypted, secret_encrypted, url_display,
                                  events, options)
VALUES (%(id)s::bigint, %(repo_id)s::bigint, %(kind)s::text, %(url_encrypted)s::text,
        %(secret_encrypted)s::text, %(url_display)s::text, %(events)s::text[], %(options)s::jsonb)
RETURNING id, repo_id, kind, url_display, secret_encrypted IS NOT NULL AS has_secret, events,
          options, created_at;

-- name: notification_target_list
-- List a repository's targets in creation order, without their URLs and secrets.
SELECT id, repo_id, kind, url_display, secret_encrypted IS NOT NULL AS has_secret, events, options,
       created_at
FROM notification_targets
WHERE repo_id = %(repo_id)s::bigint
ORDER BY id;

-- name: notification_target_next_id
-- Allocate the id of a new target, which its encrypted fields are bound to.
SELECT nextval(pg_get_serial_sequence('notification_targets', 'id')) AS id;
