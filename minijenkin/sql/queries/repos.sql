-- name: repo_find_for_webhook
-- Find the repository a webhook is about: by name first, then by any of its clone URLs.
-- Forges compare repository names case-insensitively, and a payload carries
-- the canonical casing, which may differ from the registered name. An exact
-- name wins, then a clone URL, then a name that differs in case only.
-- %(urls)s are lower-cased.
SELECT id, name, url, default_branch, webhook_secret_encrypted,
       webhook_secret AS webhook_secret_legacy
FROM repositories
WHERE lower(name) = lower(%(full_name)s::text) OR lower(url) = ANY(%(urls)s::text[])
ORDER BY (name = %(full_name)s::text) DESC, (lower(url) = ANY(%(urls)s::text[])) DESC, id
LIMIT 1;

-- name: repo_find_for_owner_webhook
-- The repositories of an owner (organization or user), for a webhook of the
-- owner that names no repository, such as the ping of a GitHub organization
-- webhook. Matched case-insensitively, as forges compare names.
SELECT id, name, url, default_branch, webhook_secret_encrypted,
       webhook_secret AS webhook_secret_legacy
FROM repositories
WHERE lower(split_part(name, '/', 1)) = lower(%(owner)s::text) AND name LIKE '%%/%%'
ORDER BY id
LIMIT 200;

-- name: repo_get
-- Fetch one repository by id or by its unique name (pass the other as NULL),
-- with its latest run as repo_list has it.
SELECT r.id, r.name, r.url,
       (r.webhook_secret_encrypted IS NOT NULL OR r.webhook_secret IS NOT NULL) AS has_webhook_secret,
       r.default_branch, r.poll_interval_seconds, r.polled_at, r.poll_error, r.schedules_commit,
       r.schedules_synced_at, r.schedules_error, r.created_at, r.updated_at,
       latest.id AS last_run_id, latest.status AS last_run_status
FROM repositories r
LEFT JOIN LATERAL (
    SELECT pr.id, pr.status FROM pipeline_runs pr WHERE pr.repo_id = r.id ORDER BY pr.id DESC LIMIT 1
) latest ON true
WHERE r.id = %(id)s::bigint OR r.name = %(name)s::text;

-- name: repo_insert
-- Register a repository; fails with a unique violation when the name is taken.
INSERT INTO repositories (name, url, default_branch, poll_interval_seconds, next_poll_at)
VALUES (%(name)s::text, %(url)s::text, %(default_branch)s::text,
        %(poll_interval_seconds)s::integer,
        CASE WHEN %(poll_interval_seconds)s::integer IS NOT NULL THEN now() END)
RETURNING id;

-- name: repo_list
-- List repositories by name, with the status of their latest run.
SELECT r.id, r.name, r.url,
       (r.webhook_secret_encrypted IS NOT NULL OR r.webhook_secret IS NOT NULL) AS has_webhook_secret,
       r.default_branch, r.poll_interval_seconds, r.polled_at, r.poll_error, r.schedules_commit,
       r.schedules_synced_at, r.schedules_error, r.created_at, r.updated_at,
       latest.id AS last_run_id, latest.status AS last_run_status
FROM repositories r
LEFT JOIN LATERAL (
    SELECT pr.id, pr.status FROM pipeline_runs pr WHERE pr.repo_id = r.id ORDER BY pr.id DESC LIMIT 1
) latest ON true
ORDER BY r.name
LIMIT %(limit)s::integer OFFSET %(offset)s::integer;

-- name: repo_list_legacy_webhook_secrets
-- List repositories whose webhook secret is still stored in clear (rows older than encryption).
SELECT id, webhook_secret
FROM repositories
WHERE webhook_secret IS NOT NULL
ORDER BY id
LIMIT %(limit)s::integer;

-- name: repo_list_webhook_secrets_encrypted
-- List encrypted webhook secrets after an id, for re-encryption with a new key.
SELECT id, webhook_secret_encrypted
FROM repositories
WHERE webhook_secret_encrypted IS NOT NULL AND id > %(after_id)s::bigint
ORDER BY id
LIMIT %(limit)s::integer;

-- name: repo_poll_request
-- Make a repository's next poll due now; returns nothing when it does not poll.
UPDATE repositories SET next_poll_at = now()
WHERE id = %(id)s::bigint AND poll_interval_seconds IS NOT NULL
RETURNING id, next_poll_at;

-- name: repo_set_webhook_secret_encrypted
-- Store a repository's encrypted webhook secret and clear any copy in clear text.
UPDATE repositories
SET webhook_secret_encrypted = %(webhook_secret_encrypted)s::text, webhook_secret = NULL,
    updated_at = now()
WHERE id = %(id)s::bigint;

-- name: repo_update_settings
-- Change the default branch and polling interval; NULL arguments keep the current value.
UPDATE repositories
SET default_branch = coalesce(%(default_branch)s::text, default_branch),
    poll_interval_seconds = CASE WHEN %(clear_poll)s::boolean THEN NULL
                                 ELSE coalesce(%(poll_interval_seconds)s::integer,
                                               poll_interval_seconds) END,
    next_poll_at = CASE WHEN %(poll_interval_seconds)s::integer IS NOT NULL THEN now()
                        WHEN %(clear_poll)s::boolean THEN NULL
                        ELSE next_poll_at END,
    updated_at = now()
WHERE id = %(id)s::bigint
RETURNING id;
