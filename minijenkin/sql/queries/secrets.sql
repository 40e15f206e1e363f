-- name: job_secrets
-- Fetch the encrypted secrets a running job references, fenced by its lease token.
SELECT name, environment, repo_id, value_encrypted
FROM mj_job_secrets_v1(%(job_id)s::bigint, %(lease_token)s::uuid);

-- name: secret_delete
-- Delete one secret of a repository (environment NULL) or of one of its environments.
DELETE FROM secrets
WHERE repo_id = %(repo_id)s::bigint AND name = %(name)s::text
  AND environment IS NOT DISTINCT FROM %(environment)s::text
RETURNING id;

-- name: secret_list
-- List a repository's secrets without their values.
SELECT id, repo_id, environment, name, created_at, updated_at
FROM secrets
WHERE repo_id = %(repo_id)s::bigint
ORDER BY environment NULLS FIRST, name;

-- name: secret_list_encrypted
-- List encrypted secrets after an id, for re-encryption with a new key.
SELECT id, repo_id, environment, name, value_encrypted
FROM secrets
WHERE id > %(after_id)s::bigint
ORDER BY id
LIMIT %(limit)s::integer;

-- name: secret_set_encrypted
-- Replace the ciphertext of one secret (key rotation).
UPDATE secrets SET value_encrypted = %(value_encrypted)s::text
WHERE id = %(id)s::bigint;

-- name: secret_upsert
-- Create or replace a secret's encrypted value.
INSERT INTO secrets (repo_id, environment, name, value_encrypted)
VALUES (%(repo_id)s::bigint, %(environment)s::text, %(name)s::text, %(value_encrypted)s::text)
ON CONFLICT (repo_id, environment, name) DO UPDATE
SET value_encrypted = excluded.value_encrypted, updated_at = now()
RETURNING id, repo_id, environment, name, created_at, updated_at,
          (xmax = 0) AS created;
