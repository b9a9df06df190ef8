-- Accounts, API keys, organic tasks with their log and contestants, and the weight sets sent to the chain.

CREATE TABLE accounts (
    account_id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only the sha256 digest of a key is stored; the key itself is shown once, when it is minted.
CREATE TABLE api_keys (
    key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
    account_id uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    key_prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

CREATE TABLE tasks (
    task_id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (account_id),
    task_type text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'preparing_data', 'looking_for_nodes', 'delayed', 'ready', 'training',
        'preevaluation', 'evaluating', 'success', 'failure'
    )),
    model_repo text NOT NULL,
    ds_repo text NOT NULL,
    file_format text NOT NULL,
    hours_to_complete double precision NOT NULL CHECK (hours_to_complete > 0),
    request jsonb NOT NULL,
    dataset_type jsonb,
    result_model_name text,
    split_seed bigint NOT NULL,
    train_artifact_key text,
    test_artifact_key text,
    train_rows integer,
    test_rows integer,
    dropped_rows integer,
    base_test_loss double precision,
    trained_model_repository text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    termination_at timestamptz,
    -- A worker owns the task while lease_until is in the future; an expired lease may be taken over.
    lease_owner text,
    lease_until timestamptz,
    -- Tries at the current status that crashed or failed unexpectedly; reset on every status change.
    attempts integer NOT NULL DEFAULT 0,
    times_delayed integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz
);
CREATE INDEX tasks_account_idx ON tasks (account_id, created_at DESC);
CREATE INDEX tasks_active_idx ON tasks (status, next_attempt_at) WHERE status NOT IN ('success', 'failure');
CREATE INDEX tasks_finished_idx ON tasks (finished_at) WHERE status = 'success';

-- The task's log: every status change and notable step (e.g. how many rows data preparation dropped).
CREATE TABLE task_events (
    event_id bigserial PRIMARY KEY,
    task_id uuid NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    status text NOT NULL,
    message text NOT NULL
);
CREATE INDEX task_events_task_idx ON task_events (task_id, event_id);

-- One training run of one miner's repo for one task.
CREATE TABLE contestants (
    task_id uuid NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    hotkey text NOT NULL,
    uid integer,
    repo_url text NOT NULL,
    commit_hash text NOT NULL,
    job_id uuid NOT NULL UNIQUE,
    expected_repo_name text NOT NULL,
    trainer_url text,
    trainer_hotkey text,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'dispatching', 'training', 'trained', 'failed'
    )),
    output_repository text,
    error text,
    test_loss double precision,
    score double precision,
    is_valid boolean,
    invalid_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (task_id, hotkey)
);
CREATE INDEX contestants_hotkey_idx ON contestants (hotkey);

CREATE TABLE weight_sets (
    weight_set_id bigserial PRIMARY KEY,
    block bigint NOT NULL,
    validator_hotkey text NOT NULL,
    version_key bigint NOT NULL,
    weights jsonb NOT NULL,
    uids integer[] NOT NULL,
    inputs jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX weight_sets_created_idx ON weight_sets (created_at DESC);
