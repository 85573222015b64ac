-- Password resets an administrator issued: at most one pending per user (a new one replaces it),
-- found by the SHA-256 of its token (the token itself is shown once and never stored). Redeeming
-- deletes the row in the transaction that sets the new password, so a token works once.
CREATE TABLE password_resets (
    user_id    uuid   PRIMARY KEY REFERENCES users (id),
    token_hash bytea  NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    issued_by  uuid   NOT NULL,
    expires_at bigint NOT NULL
);
