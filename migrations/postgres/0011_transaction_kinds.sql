-- Two new kinds of transaction: `sweep`, what is left in the wallets of a user being erased (up
-- to a configured bound) moved to the currency's unclaimed-funds wallet, in the erasure's
-- database transaction; and `capture`, a hold captured (0012). The widened check is added
-- unvalidated and then validated, which reads the table once.
ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'reversal', 'sweep', 'capture')) NOT VALID;
ALTER TABLE transactions VALIDATE CONSTRAINT transactions_kind_check;
