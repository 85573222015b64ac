-- Holds: money reserved on a wallet (`wallet_id`, the payer) for a later capture, to
-- `to_wallet` (a held transfer) or out (a held withdrawal, `to_wallet` NULL). The amount and
-- memo are sealed under the payer's data key; the signature is the payer's over the hold's
-- bytes and authorises its captures. A hold is active until captured, voided or expired
-- (`resolved_at` set then), once; an active hold past `expires_at` counts for nothing.
-- `scope`/`idempotency_key`/`fingerprint` are the request that placed it; `resolve_*` the one
-- that captured or voided it (a retry's answer).
CREATE TABLE holds (
    id                  uuid   PRIMARY KEY,
    wallet_id           uuid   NOT NULL REFERENCES wallets (id),
    to_wallet           uuid   REFERENCES wallets (id),
    currency            text   NOT NULL,
    amount              bytea  NOT NULL,
    memo                bytea,
    created_at          bigint NOT NULL,
    expires_at          bigint NOT NULL,
    status              text   NOT NULL
        CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    resolved_at         bigint,
    capture_transaction uuid   REFERENCES transactions (id),
    scope               text   NOT NULL,
    idempotency_key     text   NOT NULL,
    fingerprint         bytea  NOT NULL,
    resolve_scope       text,
    resolve_key         text,
    resolve_fingerprint bytea,
    signature           bytea  NOT NULL,
    public_key          bytea  NOT NULL CHECK (length(public_key) = 32),
    CHECK ((status = 'active') = (resolved_at IS NULL)),
    CHECK ((status = 'captured') = (capture_transaction IS NOT NULL))
);
CREATE UNIQUE INDEX holds_placed_once ON holds (scope, idempotency_key);
-- A wallet's active holds (every operation that locks it reads them), and the expiry job's work.
CREATE INDEX holds_active ON holds (wallet_id, expires_at) WHERE status = 'active';
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'active';

-- A capture names the hold it captures.
ALTER TABLE transactions ADD COLUMN hold_id uuid REFERENCES holds (id);
