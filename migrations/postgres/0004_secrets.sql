-- The secrets manager's secrets: every version of every named secret, its value sealed under a
-- data key of its own that the key provider wrapped. Rows are inserted and their `active` flag
-- and wrapped key changed; none is deleted.
CREATE TABLE secrets (
    name          text    NOT NULL,
    version       bigint  NOT NULL CHECK (version >= 1),
    active        boolean NOT NULL,
    created_at    bigint  NOT NULL,
    expires_at    bigint,
    -- NULL: rotated by hand; otherwise due this many days after created_at.
    rotation_days bigint,
    -- A JSON object of labels.
    tags          text    NOT NULL,
    wrapped_key   bytea   NOT NULL,
    kek_version   bigint  NOT NULL,
    sealed        bytea   NOT NULL,
    PRIMARY KEY (name, version)
);
-- One active version per secret: two rotations from the same version cannot both win.
CREATE UNIQUE INDEX secrets_one_active ON secrets (name) WHERE active;
CREATE INDEX secrets_kek_version ON secrets (kek_version);
