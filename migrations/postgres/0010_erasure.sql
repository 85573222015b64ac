-- Erasure of a user by crypto-shredding: their wallets' and their own data keys are destroyed,
-- the books stay. `erased_at` marks what was erased (and when); `erasure_key` and
-- `erasure_reason` are the request's Idempotency-Key and reason code, so a retry answers the
-- first result.
ALTER TABLE wallets ADD COLUMN erased_at bigint;
ALTER TABLE users ADD COLUMN erased_at bigint;
ALTER TABLE users ADD COLUMN erasure_key text;
ALTER TABLE users ADD COLUMN erasure_reason text;

-- The application role has no DELETE on the key tables: these two functions, run with the
-- schema owner's rights, are the only way it destroys key rows, and each refuses what its
-- preconditions exclude. The balances being sealed, the database cannot see that a wallet is
-- empty: the application checks that under the wallet's lock and closes it in the same
-- transaction; the function refuses a wallet that is not closed.
CREATE FUNCTION coffer_erase_wallets(ids uuid[], at bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM wallets WHERE id = ANY(ids) AND status <> 'closed') THEN
        RAISE EXCEPTION 'coffer: only a closed wallet is erased' USING ERRCODE = 'check_violation';
    END IF;
    UPDATE wallets SET erased_at = COALESCE(erased_at, at) WHERE id = ANY(ids);
    DELETE FROM wallet_keys WHERE wallet_id = ANY(ids);
END
$$;

-- A user is erased once every wallet of theirs is: their data key's versions are destroyed,
-- their personal fields cleared (the email's envelope stays, sealed under the destroyed key:
-- the column is required), the email's blind index replaced by a value no email has (so the
-- address can register again), their password, roles and second factor dropped, their sessions
-- and password resets deleted and their API keys revoked. False when there is no such user.
CREATE FUNCTION coffer_erase_user(uid uuid, at bigint, idempotency_key text, reason text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM wallets WHERE owner_id = uid AND erased_at IS NULL) THEN
        RAISE EXCEPTION 'coffer: a user is erased after every wallet of theirs'
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE users SET
        email_index = sha256(convert_to('coffer.erased:' || uid::text, 'UTF8')),
        phone = NULL, tax_id = NULL, totp = NULL, totp_confirmed = false,
        password_hash = '', roles = '[]', updated_at = at,
        erased_at = COALESCE(erased_at, at),
        erasure_key = COALESCE(erasure_key, idempotency_key),
        erasure_reason = COALESCE(erasure_reason, reason)
    WHERE id = uid;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM user_keys WHERE user_id = uid;
    DELETE FROM password_resets WHERE user_id = uid;
    DELETE FROM refresh_tokens WHERE user_id = uid;
    -- API keys count seconds.
    UPDATE api_keys SET revoked_at = COALESCE(revoked_at, at / 1000000) WHERE user_id = uid;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION coffer_erase_wallets(uuid[], bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION coffer_erase_user(uuid, bigint, text, text) FROM PUBLIC;
