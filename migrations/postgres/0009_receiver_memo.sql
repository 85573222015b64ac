-- A transfer's memo sealed again under the receiving wallet's data key, so the receiver reads
-- its side of the transaction without the sender's key (and still can after the sender's keys
-- are destroyed). NULL without a memo, for money with no other receiver, and for transfers
-- written before this column until `coffer-worker ledger backfill-memos` has reached them. The
-- application role may set it (the backfill) and change nothing else of a transaction.
ALTER TABLE transactions ADD COLUMN receiver_memo bytea;
