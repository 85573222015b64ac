-- A wallet's money-out over the recent hours (the rolling window the second-factor threshold
-- is applied to): hourly sums, sealed under the wallet's data key and bound to the row version
-- like the balance. NULL: nothing left the wallet since the column was added (an empty
-- window), so existing rows need no backfill.
ALTER TABLE wallets ADD COLUMN outflow bytea;
