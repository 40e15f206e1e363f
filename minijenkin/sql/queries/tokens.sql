-- name: token_find_by_hash
-- Look up a usable (not revoked, not expired) token by the hash of its value.
SELECT id, name, scope, last_used_at
FROM api_tokens
WHERE token_hash = %(token_hash)s::bytea
  AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now());

-- name: token_insert
-- Store a new token's hash; the value itself is shown once and never stored.
INSERT INTO api_tokens (name, token_hash, scope, expires_at)
VALUES (%(name)s::text, %(token_hash)s::bytea, %(scope)s::text, %(expires_at)s::timestamptz)
RETURNING id, name, scope, created_at, expires_at;

-- name: token_list
-- List tokens, newest first, without their hashes.
SELECT id, name, scope, created_at, last_used_at, expires_at, revoked_at
FROM api_tokens
ORDER BY id DESC;

-- name: token_revoke
-- Revoke a token; it stops working at once.
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s::bigint
RETURNING id;

-- name: token_touch
-- Record that a token was used (at most once a minute, to spare writes).
UPDATE api_tokens SET last_used_at = now()
WHERE id = %(id)s::bigint AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
