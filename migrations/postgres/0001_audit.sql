-- Audit trail: append-only events chained per stream, stream heads, chained checkpoints, and the
-- wrapped audit key. The chain MACs are computed by the application under the audit key, which
-- this database never holds.

CREATE TABLE audit_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream       TEXT   NOT NULL,
    seq          BIGINT NOT NULL CHECK (seq > 0),
    at_micros    BIGINT NOT NULL,
    actor_kind   TEXT   NOT NULL,
    actor_id     TEXT,
    action       TEXT   NOT NULL,
    subject_kind TEXT   NOT NULL,
    subject_id   TEXT,
    outcome      TEXT   NOT NULL,
    request_id   TEXT,
    details      JSONB  NOT NULL,
    prev_mac     BYTEA  NOT NULL,
    mac          BYTEA  NOT NULL,
    UNIQUE (stream, seq)
);
CREATE INDEX audit_events_stream_id ON audit_events (stream, id);
CREATE INDEX audit_events_action_at ON audit_events (action, at_micros);

-- One row per stream: its last seq and MAC. Appends lock only their stream's row, so unrelated
-- streams never wait for each other. Not trusted by verification (checkpoints are).
CREATE TABLE audit_heads (
    stream           TEXT   PRIMARY KEY,
    seq              BIGINT NOT NULL,
    mac              BYTEA  NOT NULL,
    checkpointed_seq BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
-- No index on seq: every append updates seq, and an unindexed update stays a cheap HOT update.
-- Checkpoints scan this table (one row per stream) instead.

CREATE TABLE audit_checkpoints (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_micros BIGINT NOT NULL,
    prev_mac  BYTEA  NOT NULL,
    entries   BYTEA  NOT NULL,
    mac       BYTEA  NOT NULL
);

-- The audit HMAC key, wrapped by the master key. kek_version puts it on the master key
-- rotation's work list (the rotation worker re-wraps it; until then it must not be retired).
CREATE TABLE audit_key (
    id                SMALLINT PRIMARY KEY CHECK (id = 1),
    wrapped           BYTEA  NOT NULL,
    kek_version       BIGINT NOT NULL,
    created_at_micros BIGINT NOT NULL
);

CREATE FUNCTION coffer_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION coffer_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION coffer_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION coffer_audit_append_only();

-- The application's role (coffer_app: SELECT and INSERT on audit rows, never UPDATE, DELETE or
-- TRUNCATE) is granted by coffer-store after every migration run, so grants also cover tables
-- added later: see APP_ROLE_GRANTS in crates/store/src/lib.rs.
