-- Wallet ledger (Postgres). Every balance, posting amount, memo and sealed signing key is an
-- envelope under the wallet's data key, bound to its wallet, field and row; the database holds
-- no amount it could read. Transactions and postings are append-only for the application role
-- (no UPDATE or DELETE is granted). Integers are bigint throughout, as the adapter reads them.

CREATE TABLE wallets (
    id          uuid   PRIMARY KEY,
    owner_id    uuid   NOT NULL,
    currency    text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status      text   NOT NULL CHECK (status IN ('active', 'frozen', 'closed')),
    version     bigint NOT NULL CHECK (version >= 1),
    balance     bytea  NOT NULL,
    dek_version bigint NOT NULL CHECK (dek_version >= 1),
    signing_key bytea  NOT NULL,
    public_key  bytea  NOT NULL CHECK (length(public_key) = 32),
    kdf_params  bytea  NOT NULL,
    failed_pins bigint NOT NULL CHECK (failed_pins >= 0),
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX wallets_owner ON wallets (owner_id, created_at, id);

-- Each version of a wallet's data key, wrapped by the key provider; `kek_version` is the
-- rotation's work list.
CREATE TABLE wallet_keys (
    wallet_id   uuid   NOT NULL REFERENCES wallets (id),
    version     bigint NOT NULL CHECK (version >= 1),
    wrapped     bytea  NOT NULL,
    kek_version bigint NOT NULL,
    created_at  bigint NOT NULL,
    PRIMARY KEY (wallet_id, version)
);
CREATE INDEX wallet_keys_kek_version ON wallet_keys (kek_version);

-- Every public key a wallet has signed with (an admin PIN reset adds one).
CREATE TABLE wallet_public_keys (
    wallet_id  uuid   NOT NULL REFERENCES wallets (id),
    public_key bytea  NOT NULL CHECK (length(public_key) = 32),
    created_at bigint NOT NULL,
    PRIMARY KEY (wallet_id, public_key)
);

CREATE TABLE transactions (
    id              uuid   PRIMARY KEY,
    kind            text   NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'reversal')),
    currency        text   NOT NULL,
    at_micros       bigint NOT NULL,
    from_wallet     uuid,
    to_wallet       uuid,
    key_wallet      uuid   NOT NULL,
    reverses        uuid REFERENCES transactions (id),
    scope           text   NOT NULL,
    idempotency_key text   NOT NULL,
    fingerprint     bytea  NOT NULL,
    memo            bytea,
    signature       bytea,
    public_key      bytea,
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
    transaction_id uuid   NOT NULL REFERENCES transactions (id),
    line           bigint NOT NULL CHECK (line >= 0),
    wallet_id      uuid   REFERENCES wallets (id),
    wallet_seq     bigint,
    amount         bytea  NOT NULL,
    PRIMARY KEY (transaction_id, line),
    CHECK ((wallet_id IS NULL) = (wallet_seq IS NULL))
);
-- A wallet's history, and its order: one posting per wallet row version.
CREATE UNIQUE INDEX postings_wallet_seq ON postings (wallet_id, wallet_seq) WHERE wallet_id IS NOT NULL;
