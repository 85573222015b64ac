-- Audit trail (SQLite): the same tables as on Postgres. SQLite has one writer at a time, so
-- appends are serialised by the database; triggers make the tables append-only.

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    stream       TEXT    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    at_micros    INTEGER NOT NULL,
    actor_kind   TEXT    NOT NULL,
    actor_id     TEXT,
    action       TEXT    NOT NULL,
    subject_kind TEXT    NOT NULL,
    subject_id   TEXT,
    outcome      TEXT    NOT NULL,
    request_id   TEXT,
    details      TEXT    NOT NULL,
    prev_mac     BLOB    NOT NULL,
    mac          BLOB    NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX audit_events_stream_id ON audit_events (stream, id);
CREATE INDEX audit_events_action_at ON audit_events (action, at_micros);

CREATE TABLE audit_heads (
    stream           TEXT    PRIMARY KEY,
    seq              INTEGER NOT NULL,
    mac              BLOB    NOT NULL,
    checkpointed_seq INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_micros INTEGER NOT NULL,
    prev_mac  BLOB    NOT NULL,
    entries   BLOB    NOT NULL,
    mac       BLOB    NOT NULL
);

CREATE TABLE audit_key (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    wrapped           BLOB    NOT NULL,
    kek_version       INTEGER NOT NULL,
    created_at_micros INTEGER NOT NULL
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_events refused'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_events refused'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_checkpoints refused'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_checkpoints refused'); END;
