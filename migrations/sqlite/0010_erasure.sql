-- Erasure of a user by crypto-shredding: their wallets' and their own data keys are destroyed,
-- the books stay. `erased_at` marks what was erased (and when); `erasure_key` and
-- `erasure_reason` are the request's Idempotency-Key and reason code, so a retry answers the
-- first result. (SQLite has no roles: the store deletes the key rows itself, in the statements
-- the Postgres functions of this migration run.)
ALTER TABLE wallets ADD COLUMN erased_at integer;
ALTER TABLE users ADD COLUMN erased_at integer;
ALTER TABLE users ADD COLUMN erasure_key text;
ALTER TABLE users ADD COLUMN erasure_reason text;
