-- Delivery of the outbox's events to sinks (webhook endpoints); see the Postgres migration.
-- SQLite's write transactions do not interleave, so the scan reads in `pos` order (xid is
-- always 0). `events` is rebuilt so that `pos` is AUTOINCREMENT: a number is never reused,
-- even after pruning deletes the newest event.
CREATE TABLE events_new (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    xid INTEGER NOT NULL DEFAULT 0,
    wallet_id BLOB NOT NULL,
    seq INTEGER NOT NULL CHECK (seq > 0),
    id BLOB NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (wallet_id, seq)
);
INSERT INTO events_new (wallet_id, seq, id, kind, created_at, data)
    SELECT wallet_id, seq, id, kind, created_at, data FROM events ORDER BY rowid;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE TABLE outbox_scan (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    xid INTEGER NOT NULL,
    pos INTEGER NOT NULL
);
INSERT INTO outbox_scan (id, xid, pos) VALUES (1, 0, 0);

CREATE TABLE outbox_sinks (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    kinds TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    disabled_at INTEGER,
    secret_version INTEGER NOT NULL DEFAULT 1,
    previous_secret_until INTEGER
);

CREATE TABLE outbox_cursors (
    sink_id BLOB NOT NULL REFERENCES outbox_sinks (id) ON DELETE CASCADE,
    wallet_id BLOB NOT NULL,
    next_seq INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    due_at INTEGER,
    pending_since INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failed_at INTEGER,
    lease BLOB,
    lease_until INTEGER,
    PRIMARY KEY (sink_id, wallet_id)
);
CREATE INDEX outbox_cursors_due ON outbox_cursors (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX outbox_cursors_wallet ON outbox_cursors (wallet_id, next_seq);

CREATE TABLE outbox_attempts (
    id BLOB PRIMARY KEY,
    sink_id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    wallet_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX outbox_attempts_sink ON outbox_attempts (sink_id, id);
