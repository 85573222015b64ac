-- Two new kinds of transaction: `sweep`, what is left in the wallets of a user being erased (up
-- to a configured bound) moved to the currency's unclaimed-funds wallet, in the erasure's
-- database transaction; and `capture`, a hold captured (0012). SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt (SQLite's documented procedure: a new table, the
-- rows copied, the old one dropped, the new one renamed, its indexes made again). Coffer runs its
-- SQLite migrations on a connection with foreign keys off, as that procedure asks (the postings'
-- references to `transactions` name the table, and stay true: every row keeps its id), and
-- checks them all with `PRAGMA foreign_key_check` once the migrations are done.
CREATE TABLE transactions_rebuilt (
    id              BLOB   PRIMARY KEY,
    kind            TEXT   NOT NULL
        CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'reversal', 'sweep', 'capture')),
    currency        TEXT   NOT NULL,
    at_micros       INTEGER NOT NULL,
    from_wallet     BLOB,
    to_wallet       BLOB,
    key_wallet      BLOB   NOT NULL,
    reverses        BLOB REFERENCES transactions (id),
    scope           TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    fingerprint     BLOB  NOT NULL,
    memo            BLOB,
    signature       BLOB,
    public_key      BLOB,
    receiver_memo   BLOB,
    CHECK ((kind = 'reversal') = (reverses IS NOT NULL)),
    CHECK ((signature IS NULL) = (public_key IS NULL))
);
INSERT INTO transactions_rebuilt (id, kind, currency, at_micros, from_wallet, to_wallet,
    key_wallet, reverses, scope, idempotency_key, fingerprint, memo, signature, public_key,
    receiver_memo)
SELECT id, kind, currency, at_micros, from_wallet, to_wallet, key_wallet, reverses, scope,
    idempotency_key, fingerprint, memo, signature, public_key, receiver_memo
FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_rebuilt RENAME TO transactions;
CREATE UNIQUE INDEX transactions_reverses_once ON transactions (reverses) WHERE reverses IS NOT NULL;
CREATE UNIQUE INDEX transactions_idempotency ON transactions (scope, idempotency_key);
