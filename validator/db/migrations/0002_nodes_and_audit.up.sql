-- The metagraph as last read, keyed by hotkey (uids are recycled, hotkeys are not), and what explains a weight set.

CREATE TABLE nodes (
    hotkey text PRIMARY KEY,
    uid integer NOT NULL CHECK (uid >= 0 AND uid <= 65535),
    coldkey text NOT NULL,
    stake double precision NOT NULL DEFAULT 0,
    validator_permit boolean NOT NULL DEFAULT false,
    address text,
    -- Whether the hotkey was in the latest metagraph read; a deregistered hotkey keeps its row (and its last uid).
    registered boolean NOT NULL DEFAULT true,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX nodes_registered_uid_idx ON nodes (uid) WHERE registered;

-- evaluated_at: the "now" the windows were measured from; weights_by_uid: the weights before quantisation. The inputs
-- column holds everything else the formula read (validator.weights.WeightInputs). Rows from before 0002 have neither.
ALTER TABLE weight_sets
    ADD COLUMN evaluated_at timestamptz,
    ADD COLUMN weights_by_uid jsonb;
CREATE INDEX weight_sets_audited_idx ON weight_sets (weight_set_id DESC) WHERE evaluated_at IS NOT NULL;

-- The public auditing pages list finished tasks newest first.
CREATE INDEX tasks_finished_any_idx ON tasks (finished_at DESC, task_id DESC) WHERE status IN ('success', 'failure');
