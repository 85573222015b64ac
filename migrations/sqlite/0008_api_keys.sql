-- API keys of service accounts: found by the SHA-256 of their secret (the secret is shown once
-- and never stored), listed by owner. Revoking sets revoked_at; rows are never deleted, so a
-- key's id keeps naming it in audit records. Permissions are a JSON array of names.
CREATE TABLE api_keys (
    id              blob    PRIMARY KEY,
    user_id         blob    NOT NULL REFERENCES users (id),
    name            text    NOT NULL,
    token_hash      blob    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    permissions     text    NOT NULL,
    rate_per_minute integer CHECK (rate_per_minute > 0),
    created_by      blob    NOT NULL,
    created_at      integer NOT NULL,
    expires_at      integer NOT NULL,
    revoked_at      integer
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, id);
