-- The transactional outbox: an event per state change a client cares about, about one wallet,
-- written in the database transaction of the change. Its number in the wallet's own gap-free
-- sequence is `seq`; `wallets.event_seq` is the wallet's last one, taken under the wallet's row
-- lock. The payload (amounts, balances) is sealed under the wallet's data key, bound to id,
-- wallet and number; the kind and time are in the clear to route and order it. The
-- application role inserts and reads events and never changes or removes them.
-- The key is the wallet and the number (what delivery reads by); the id, a UUID v7 consumers
-- deduplicate on, has no index of its own, and the wallet no foreign key (events are written
-- only under their wallet's row lock, and wallet rows are never deleted): each is work per event.
-- Existing wallets start at 0: their first event is number 1 (they have no `wallet.opened`).
ALTER TABLE wallets ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;
CREATE TABLE events (
    wallet_id uuid NOT NULL,
    seq bigint NOT NULL CHECK (seq > 0),
    id uuid NOT NULL,
    kind text NOT NULL,
    created_at bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (wallet_id, seq)
);
