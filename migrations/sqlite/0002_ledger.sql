-- Wallet ledger (SQLite): the same tables as on Postgres (ids are 16-byte BLOBs). SQLite has
-- one writer at a time, so operations are serialised by the database.
CREATE TABLE wallets (
    id          BLOB   PRIMARY KEY,
    owner_id    BLOB   NOT NULL,
    currency    TEXT   NOT NULL CHECK (length(currency) = 3),
    status      TEXT   NOT NULL CHECK (status IN ('active', 'frozen', 'closed')),
    version     INTEGER NOT NULL CHECK (version >= 1),
    balance     BLOB   NOT NULL,
    dek_version INTEGER NOT NULL CHECK (dek_version >= 1),
    signing_key BLOB   NOT NULL,
    public_key  BLOB   NOT NULL CHECK (length(public_key) = 32),
    kdf_params  BLOB   NOT NULL,
    failed_pins INTEGER NOT NULL CHECK (failed_pins >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX wallets_owner ON wallets (owner_id, created_at, id);

-- Each version of a wallet's data key, wrapped by the key provider; `kek_version` is the
-- rotation's work list.
CREATE TABLE wallet_keys (
    wallet_id   BLOB   NOT NULL REFERENCES wallets (id),
    version     INTEGER NOT NULL CHECK (version >= 1),
    wrapped     BLOB   NOT NULL,
    kek_version INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (wallet_id, version)
);
CREATE INDEX wallet_keys_kek_version ON wallet_keys (kek_version);

-- Every public key a wallet has signed with (an admin PIN reset adds one).
CREATE TABLE wallet_public_keys (
    wallet_id  BLOB   NOT NULL REFERENCES wallets (id),
    public_key BLOB   NOT NULL CHECK (length(public_key) = 32),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (wallet_id, public_key)
);

CREATE TABLE transactions (
    id              BLOB   PRIMARY KEY,
    kind            TEXT   NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'reversal')),
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
    CHECK ((kind = 'reversal') = (reverses IS NOT NULL)),
    CHECK ((signature IS NULL) = (public_key IS NULL))
);
-- The wallets a transaction names are referenced through its postings (every one of them has a
-- posting), so the columns above carry no foreign keys of their own: one check per posting.
-- A transaction is reversed at most once: this index is the last word on it.
CREATE UNIQUE INDEX transactions_reverses_once ON transactions (reverses) WHERE reverses IS NOT NULL;
-- Idempotency: a caller's key names one transaction, for good (the contract is "at least 24
-- hours"); the fingerprint tells a retry from a different request under the same key.
CREATE UNIQUE INDEX transactions_idempotency ON transactions (scope, idempotency_key);

CREATE TABLE postings (
    transaction_id BLOB   NOT NULL REFERENCES transactions (id),
    line           INTEGER NOT NULL CHECK (line >= 0),
    wallet_id      BLOB   REFERENCES wallets (id),
    wallet_seq     INTEGER,
    amount         BLOB   NOT NULL,
    PRIMARY KEY (transaction_id, line),
    CHECK ((wallet_id IS NULL) = (wallet_seq IS NULL))
);
-- A wallet's history, and its order: one posting per wallet row version.
CREATE UNIQUE INDEX postings_wallet_seq ON postings (wallet_id, wallet_seq) WHERE wallet_id IS NOT NULL;
