-- Delivery of the outbox's events to sinks (webhook endpoints).
--
-- The scan: events are read in (xid, pos) order, and only below the oldest transaction still
-- running (pg_snapshot_xmin), so that order is final: no event can later commit behind the
-- scan's position. `pos` alone would not do (an identity is taken before commit, so a lower one
-- can commit later). Existing events get xid 0 and their pos in insertion order: the first
-- scan reads them first. A long-open transaction holds the scan back (delivery waits, nothing
-- is skipped).
ALTER TABLE events ADD COLUMN pos bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_scan ON events (xid, pos);

-- The scan's position: one row, locked FOR UPDATE SKIP LOCKED by the worker scanning.
CREATE TABLE outbox_scan (
    id smallint PRIMARY KEY CHECK (id = 1),
    xid xid8 NOT NULL,
    pos bigint NOT NULL
);
INSERT INTO outbox_scan (id, xid, pos) VALUES (1, '0', 0);

-- Sinks: webhook endpoints. Their signing secrets are in the secrets manager, not here.
CREATE TABLE outbox_sinks (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    target text NOT NULL,
    kinds text NOT NULL,
    enabled boolean NOT NULL,
    created_at bigint NOT NULL,
    failures bigint NOT NULL DEFAULT 0,
    disabled_at bigint,
    secret_version bigint NOT NULL DEFAULT 1,
    previous_secret_until bigint
);

-- Per (sink, wallet): the next event number to deliver; the last number the scan saw; due_at
-- (NULL: idle, nothing seen beyond next_seq) and since when events have waited; the failed
-- attempts at next_seq; the lease (a token and its end) of the worker delivering.
CREATE TABLE outbox_cursors (
    sink_id uuid NOT NULL REFERENCES outbox_sinks (id) ON DELETE CASCADE,
    wallet_id uuid NOT NULL,
    next_seq bigint NOT NULL,
    last_seen bigint NOT NULL,
    due_at bigint,
    pending_since bigint,
    failures bigint NOT NULL DEFAULT 0,
    first_failed_at bigint,
    lease uuid,
    lease_until bigint,
    PRIMARY KEY (sink_id, wallet_id)
);
CREATE INDEX outbox_cursors_due ON outbox_cursors (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX outbox_cursors_wallet ON outbox_cursors (wallet_id, next_seq);

-- Every attempt (and every event skipped as erased), for the deliveries listing.
CREATE TABLE outbox_attempts (
    id uuid PRIMARY KEY,
    sink_id uuid NOT NULL,
    event_id uuid NOT NULL,
    wallet_id uuid NOT NULL,
    seq bigint NOT NULL,
    kind text NOT NULL,
    at bigint NOT NULL,
    outcome text NOT NULL,
    status integer,
    latency_ms integer NOT NULL,
    error text
);
CREATE INDEX outbox_attempts_sink ON outbox_attempts (sink_id, id);

-- Pruning, the only way events (and old attempts) are deleted: events created before `before`
-- that the scan has passed and no cursor still needs, and everything created before
-- `expired` whatever waits for it. At most `max_rows` events a call.
CREATE FUNCTION coffer_prune_events(before bigint, expired bigint, max_rows integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    deleted bigint;
BEGIN
    WITH doomed AS (
        SELECT e.wallet_id, e.seq
        FROM events e, outbox_scan s
        WHERE e.created_at < before
          AND (e.created_at < expired
               OR ((e.xid, e.pos) <= (s.xid, s.pos)
                   AND NOT EXISTS (SELECT 1 FROM outbox_cursors c
                                   WHERE c.wallet_id = e.wallet_id AND c.next_seq <= e.seq)))
        LIMIT max_rows
    )
    DELETE FROM events e USING doomed d WHERE e.wallet_id = d.wallet_id AND e.seq = d.seq;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    DELETE FROM outbox_attempts WHERE at < expired;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION coffer_prune_events(bigint, bigint, integer) FROM PUBLIC;
