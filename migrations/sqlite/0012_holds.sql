-- Holds: money reserved on a wallet (`wallet_id`, the payer) for a later capture, to
-- `to_wallet` (a held transfer) or out (a held withdrawal, `to_wallet` NULL). The amount and
-- memo are sealed under the payer's data key; the signature is the payer's over the hold's
-- bytes and authorises its captures. A hold is active until captured, voided or expired
-- (`resolved_at` set then), once; an active hold past `expires_at` counts for nothing.
-- `scope`/`idempotency_key`/`fingerprint` are the request that placed it; `resolve_*` the one
-- that captured or voided it (a retry's answer).
CREATE TABLE holds (
    id                  BLOB   PRIMARY KEY,
    wallet_id           BLOB   NOT NULL REFERENCES wallets (id),
    to_wallet           BLOB   REFERENCES wallets (id),
    currency            TEXT   NOT NULL,
    amount              BLOB   NOT NULL,
    memo                BLOB,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    status              TEXT   NOT NULL
        CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    resolved_at         INTEGER,
    capture_transaction BLOB   REFERENCES transactions (id),
    scope               TEXT   NOT NULL,
    idempotency_key     TEXT   NOT NULL,
    fingerprint         BLOB   NOT NULL,
    resolve_scope       TEXT,
    resolve_key         TEXT,
    resolve_fingerprint BLOB,
    signature           BLOB   NOT NULL,
    public_key          BLOB   NOT NULL CHECK (length(public_key) = 32),
    CHECK ((status = 'active') = (resolved_at IS NULL)),
    CHECK ((status = 'captured') = (capture_transaction IS NOT NULL))
);
CREATE UNIQUE INDEX holds_placed_once ON holds (scope, idempotency_key);
-- A wallet's active holds (every operation that locks it reads them), and the expiry job's work.
CREATE INDEX holds_active ON holds (wallet_id, expires_at) WHERE status = 'active';
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'active';

-- A capture names the hold it captures.
ALTER TABLE transactions ADD COLUMN hold_id BLOB REFERENCES holds (id);
