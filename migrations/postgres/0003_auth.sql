-- Users, sessions, token signing keys, service secrets and the revocation list (Postgres).
-- Personal data (email, phone, tax id, the TOTP secret) is stored only as envelopes under the
-- user's data key, which is stored only wrapped by the master key; logins find a user by the
-- email's blind index. Refresh tokens are stored only as SHA-256 hashes; signing keys only
-- sealed under a data key of their own.

CREATE TABLE users (
    id             uuid   PRIMARY KEY,
    email_index    bytea  NOT NULL UNIQUE CHECK (length(email_index) = 32),
    email          bytea  NOT NULL,
    phone          bytea,
    tax_id         bytea,
    password_hash  text   NOT NULL,
    roles          text   NOT NULL,
    dek_version    bigint NOT NULL CHECK (dek_version >= 1),
    totp           bytea,
    totp_confirmed boolean NOT NULL DEFAULT false,
    totp_last_step bigint NOT NULL DEFAULT 0,
    created_at     bigint NOT NULL,
    updated_at     bigint NOT NULL
);

-- Each version of a user's data key, wrapped; deleting them all crypto-shreds the user's data.
CREATE TABLE user_keys (
    user_id     uuid   NOT NULL REFERENCES users (id),
    version     bigint NOT NULL CHECK (version >= 1),
    wrapped     bytea  NOT NULL,
    kek_version bigint NOT NULL,
    created_at  bigint NOT NULL,
    PRIMARY KEY (user_id, version)
);
CREATE INDEX user_keys_kek_version ON user_keys (kek_version);

-- One row per refresh token ever issued, until its family ends (purged after).
CREATE TABLE refresh_tokens (
    hash              bytea  PRIMARY KEY CHECK (length(hash) = 32),
    family            uuid   NOT NULL,
    user_id           uuid   NOT NULL REFERENCES users (id),
    client_id         text   NOT NULL,
    amr               text   NOT NULL,
    family_expires_at bigint NOT NULL,
    spent_at          bigint,
    replaced_by       bytea,
    revoked           boolean NOT NULL DEFAULT false,
    superseded        boolean NOT NULL DEFAULT false
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE NOT revoked;
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);

CREATE TABLE signing_keys (
    kid         text   PRIMARY KEY,
    wrapped_dek bytea  NOT NULL,
    kek_version bigint NOT NULL,
    sealed      bytea  NOT NULL,
    created_at  bigint NOT NULL,
    retired_at  bigint,
    dropped_at  bigint
);
CREATE INDEX signing_keys_kek_version ON signing_keys (kek_version);
-- At most one key signs: two replicas starting (or rotating) at once cannot both make one.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- Data keys the service uses as secrets of its own (the email blind-index key), wrapped.
CREATE TABLE service_secrets (
    purpose     text   PRIMARY KEY,
    wrapped     bytea  NOT NULL,
    kek_version bigint NOT NULL,
    created_at  bigint NOT NULL
);

-- The persistent revocation list: denylisted token ids until their tokens expire, and epochs
-- (`user:<id>`, `global`).
CREATE TABLE revoked_tokens (
    jti        text   PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE revocation_epochs (
    subject text   PRIMARY KEY,
    epoch   bigint NOT NULL CHECK (epoch >= 1)
);
