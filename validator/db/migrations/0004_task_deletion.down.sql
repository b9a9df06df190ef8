DROP INDEX IF EXISTS tasks_account_idx;
CREATE INDEX tasks_account_idx ON tasks (account_id, created_at DESC);
ALTER TABLE tasks DROP COLUMN IF EXISTS deleted_at;
