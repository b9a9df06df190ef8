-- Accounts customers make themselves (fingerprint, sessions, a deposit keypair) and the ledger of their money.

-- The fingerprint is a login secret: only its sha256 digest is kept, like API keys. The deposit keypair's secret
-- (its mnemonic) is encrypted by the validator before it is stored. The balance is the sum of the account's ledger
-- entries, kept in the same transaction as each entry; the CHECK is the last guard against overspending.
ALTER TABLE accounts
    ADD COLUMN fingerprint_hash bytea UNIQUE CHECK (octet_length(fingerprint_hash) = 32),
    ADD COLUMN balance_usd numeric(20, 6) NOT NULL DEFAULT 0 CONSTRAINT accounts_balance_not_negative
        CHECK (balance_usd >= 0),
    ADD COLUMN deposit_ss58 text UNIQUE,
    ADD COLUMN deposit_secret bytea,
    ADD COLUMN keypair_created_at timestamptz,
    ADD CONSTRAINT accounts_deposit_keypair_whole CHECK (
        (deposit_ss58 IS NULL) = (deposit_secret IS NULL) AND (deposit_ss58 IS NULL) = (keypair_created_at IS NULL)
    );

-- Session tokens (from POST /auth-with-fingerprint), stored as sha256 digests, valid until expires_at.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    account_id uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Every movement of an account's money: deposits (positive, one per chain transfer), charges (negative, one per
-- task) and refunds (positive, at most one per task). task_id has no foreign key on purpose: the ledger outlives a
-- deleted task.
CREATE TABLE ledger_entries (
    entry_id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (account_id),
    kind text NOT NULL CHECK (kind IN ('deposit', 'charge', 'refund')),
    amount_usd numeric(20, 6) NOT NULL,
    task_id uuid,
    transfer_id text UNIQUE,
    amount_tao numeric(30, 9),
    usd_per_tao numeric(20, 6),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_deposit_shape CHECK (
        kind <> 'deposit' OR (transfer_id IS NOT NULL AND amount_tao > 0 AND amount_usd > 0 AND task_id IS NULL)
    ),
    CONSTRAINT ledger_charge_shape CHECK (kind <> 'charge' OR (task_id IS NOT NULL AND amount_usd < 0)),
    CONSTRAINT ledger_refund_shape CHECK (kind <> 'refund' OR (task_id IS NOT NULL AND amount_usd > 0))
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, entry_id);
CREATE UNIQUE INDEX ledger_one_charge_per_task ON ledger_entries (task_id) WHERE kind = 'charge';
CREATE UNIQUE INDEX ledger_one_refund_per_task ON ledger_entries (task_id) WHERE kind = 'refund';

-- How far the deposit watcher has read the chain: the next scan starts at this block (inclusive).
CREATE TABLE deposit_watch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    next_block bigint NOT NULL CHECK (next_block >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
