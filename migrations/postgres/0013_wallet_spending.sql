-- A wallet's spending field: the limits an administrator set for it, and what it has sent per
-- kind of money-out in hourly and daily sums (the windows its limits are checked over), sealed
-- under the wallet's data key and bound to the row version like the balance. NULL: no limits of
-- its own (its currency's default policy applies) and nothing sent since the column was added,
-- so existing rows need no backfill.
ALTER TABLE wallets ADD COLUMN spending bytea;
