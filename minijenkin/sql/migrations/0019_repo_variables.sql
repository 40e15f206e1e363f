-- Configuration variables of a repository, read by pipelines as
-- `${{ vars.NAME }}`. Unlike secrets, values are stored in clear, returned
-- by the API and not masked in logs.
CREATE TABLE repo_variables (
    repo_id     bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name        text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, name),
    CONSTRAINT repo_variables_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,99}$'),
    CONSTRAINT repo_variables_value_size CHECK (octet_length(value) <= 49152)
);
