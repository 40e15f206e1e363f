-- name: repo_find_for_webhook
-- Find the repository a webhook is about: by name first, then by any of its clone URLs.
SELECT id, name, url, webhook_secret
FROM repositories
WHERE name = %(full_name)s::text OR url = ANY(%(urls)s::text[])
ORDER BY (name = %(full_name)s::text) DESC, id
LIMIT 1;

-- name: repo_get
-- Fetch one repository by id.
SELECT id, name, url, webhook_secret IS NOT NULL AS has_webhook_secret, created_at, updated_at
FROM repositories
WHERE id = %(id)s::bigint;

-- name: repo_get_by_name
-- Fetch one repository by its unique name.
SELECT id, name, url, webhook_secret IS NOT NULL AS has_webhook_secret, created_at, updated_at
FROM repositories
WHERE name = %(name)s::text;

-- name: repo_insert
-- Register a repository; fails with a unique violation when the name is taken.
INSERT INTO repositories (name, url, webhook_secret)
VALUES (%(name)s::text, %(url)s::text, %(webhook_secret)s::text)
RETURNING id, name, url, webhook_secret IS NOT NULL AS has_webhook_secret, created_at, updated_at;

-- name: repo_list
-- List repositories by name, with the status of their latest run.
SELECT r.id, r.name, r.url, r.webhook_secret IS NOT NULL AS has_webhook_secret,
       r.created_at, r.updated_at,
       latest.id AS last_run_id, latest.status AS last_run_status
FROM repositories r
LEFT JOIN LATERAL (
    SELECT pr.id, pr.status FROM pipeline_runs pr WHERE pr.repo_id = r.id ORDER BY pr.id DESC LIMIT 1
) latest ON true
ORDER BY r.name
LIMIT %(limit)s::integer OFFSET %(offset)s::integer;
