-- name: job_variables
-- The variables of a running job's repository, fenced by its lease token.
SELECT name, value FROM mj_job_variables_v1(%(job_id)s::bigint, %(lease_token)s::uuid);

-- name: variable_delete
-- Delete one variable of a repository.
DELETE FROM repo_variables
WHERE repo_id = %(repo_id)s::bigint AND name = %(name)s::text
RETURNING name;

-- name: variable_list
-- List a repository's variables with their values.
SELECT repo_id, name, value, created_at, updated_at
FROM repo_variables
WHERE repo_id = %(repo_id)s::bigint
ORDER BY name;

-- name: variable_upsert
-- Create or replace a variable's value.
INSERT INTO repo_variables (repo_id, name, value)
VALUES (%(repo_id)s::bigint, %(name)s::text, %(value)s::text)
ON CONFLICT (repo_id, name) DO UPDATE
SET value = excluded.value, updated_at = now()
RETURNING repo_id, name, value, created_at, updated_at, (xmax = 0) AS created;
