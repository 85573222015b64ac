-- Master key (KEK) rotations: one row per rotation, requested by an operator (the API's
-- POST /v1/admin/keys/rotate, `coffer-worker keys rotate`) or by the worker's schedule, and run
-- by a worker. The work itself is not recorded here: it is every wrapped key whose
-- `kek_version` is below the new version, so a job interrupted at any point resumes by looking
-- again. Rows are inserted and updated, never deleted: this is the rotation history.
CREATE TABLE key_rotations (
    id            uuid    PRIMARY KEY,
    kind          text    NOT NULL CHECK (kind IN ('kek')),
    state         text    NOT NULL CHECK (state IN ('requested', 'running', 'done', 'failed')),
    emergency     boolean NOT NULL,
    retire        boolean NOT NULL,
    requested_by  text    NOT NULL,
    requested_at  bigint  NOT NULL,
    provider      text    NOT NULL,
    key_id        text    NOT NULL,
    -- The active version when the job started, and the version it rotated to: set once the
    -- provider rotated, so a restart never rotates twice.
    from_version  bigint,
    to_version    bigint,
    started_at    bigint,
    finished_at   bigint,
    updated_at    bigint  NOT NULL,
    -- Keys found below to_version when the re-wrap started, keys moved, keys that failed.
    total         bigint  NOT NULL CHECK (total >= 0),
    rewrapped     bigint  NOT NULL CHECK (rewrapped >= 0),
    failed        bigint  NOT NULL CHECK (failed >= 0),
    sessions_revoked boolean NOT NULL,
    retired_below bigint,
    -- The last error: a key-port or store message (never key material).
    error         text
);
-- At most one rotation requested or running at a time.
CREATE UNIQUE INDEX key_rotations_one_open ON key_rotations (kind) WHERE state IN ('requested', 'running');
CREATE INDEX key_rotations_requested_at ON key_rotations (requested_at);
