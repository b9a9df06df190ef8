DROP TABLE IF EXISTS deposit_watch;
DROP TABLE IF EXISTS ledger_entries;
DROP TABLE IF EXISTS sessions;
ALTER TABLE accounts
    DROP CONSTRAINT IF EXISTS accounts_deposit_keypair_whole,
    DROP COLUMN IF EXISTS keypair_created_at,
    DROP COLUMN IF EXISTS deposit_secret,
    DROP COLUMN IF EXISTS deposit_ss58,
    DROP COLUMN IF EXISTS balance_usd,
    DROP COLUMN IF EXISTS fingerprint_hash;
