-- API tokens: only a SHA-256 hash of each token is stored. Tokens are 256-bit
-- random values, so a fast hash is enough (there is nothing to brute-force).

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    token_hash    bytea NOT NULL,
    scope         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT api_tokens_hash_key UNIQUE (token_hash),
    CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'trigger', 'admin')),
    CONSTRAINT api_tokens_name_length CHECK (length(name) BETWEEN 1 AND 200)
);
