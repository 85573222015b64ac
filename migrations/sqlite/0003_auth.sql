-- Users, sessions, token signing keys, service secrets and the revocation list (SQLite).
-- Personal data (email, phone, tax id, the TOTP secret) is stored only as envelopes under the
-- user's data key, which is stored only wrapped by the master key; logins find a user by the
-- email's blind index. Refresh tokens are stored only as SHA-256 hashes; signing keys only
-- sealed under a data key of their own.

CREATE TABLE users (
    id             blob   PRIMARY KEY,
    email_index    blob   NOT NULL UNIQUE CHECK (length(email_index) = 32),
    email          blob   NOT NULL,
    phone          blob,
    tax_id         blob,
    password_hash  text   NOT NULL,
    roles          text   NOT NULL,
    dek_version    integer NOT NULL CHECK (dek_version >= 1),
    totp           blob,
    totp_confirmed integer NOT NULL DEFAULT 0,
    totp_last_step integer NOT NULL DEFAULT 0,
    created_at     integer NOT NULL,
    updated_at     integer NOT NULL
);

-- Each version of a user's data key, wrapped; deleting them all crypto-shreds the user's data.
CREATE TABLE user_keys (
    user_id     blob   NOT NULL REFERENCES users (id),
    version     integer NOT NULL CHECK (version >= 1),
    wrapped     blob   NOT NULL,
    kek_version integer NOT NULL,
    created_at  integer NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE INDEX user_keys_kek_version ON user_keys (kek_version);

-- One row per refresh token ever issued, until its family ends (purged after).
CREATE TABLE refresh_tokens (
    hash              blob   PRIMARY KEY CHECK (length(hash) = 32),
    family            blob   NOT NULL,
    user_id           blob   NOT NULL REFERENCES users (id),
    client_id         text   NOT NULL,
    amr               text   NOT NULL,
    family_expires_at integer NOT NULL,
    spent_at          integer,
    replaced_by       blob,
    revoked           integer NOT NULL DEFAULT 0,
    superseded        integer NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked = 0;
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);

CREATE TABLE signing_keys (
    kid         text   PRIMARY KEY,
    wrapped_dek blob   NOT NULL,
    kek_version integer NOT NULL,
    sealed      blob   NOT NULL,
    created_at  integer NOT NULL,
    retired_at  integer,
    dropped_at  integer
);
CREATE INDEX signing_keys_kek_version ON signing_keys (kek_version);
-- At most one key signs: two replicas starting (or rotating) at once cannot both make one.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- Data keys the service uses as secrets of its own (the email blind-index key), wrapped.
CREATE TABLE service_secrets (
    purpose     text   PRIMARY KEY,
    wrapped     blob   NOT NULL,
    kek_version integer NOT NULL,
    created_at  integer NOT NULL
);

-- The persistent revocation list: denylisted token ids until their tokens expire, and epochs
-- (`user:<id>`, `global`).
CREATE TABLE revoked_tokens (
    jti        text   PRIMARY KEY,
    expires_at integer NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE revocation_epochs (
    subject text   PRIMARY KEY,
    epoch   integer NOT NULL CHECK (epoch >= 1)
);
