-- Trust on a network: API tokens (stored hashed) and each host's own identity.

-- One row per token ever issued. The secret is never stored: only its SHA-256.
-- Roles: admin, operator, viewer for people and scripts; host for an enrolled agent,
-- bound to its server (server_id).
CREATE TABLE api_tokens (
    token_id      bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (name <> ''),
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'host')),
    secret_sha256 bytea NOT NULL UNIQUE,
    server_id     bigint REFERENCES servers (server_id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    CHECK ((role = 'host') = (server_id IS NOT NULL))
);
-- A name is reusable once its token is revoked.
CREATE UNIQUE INDEX api_tokens_active_name_idx ON api_tokens (name) WHERE revoked_at IS NULL;

-- `manman host add` sets a one-time enrollment secret (hashed); enrollment clears it.
ALTER TABLE servers
    ADD COLUMN enrollment_sha256 bytea,
    ADD COLUMN enrollment_expires_at timestamptz;
