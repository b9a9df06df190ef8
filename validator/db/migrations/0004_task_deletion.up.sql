-- A task its customer deleted: hidden from the customer's routes. A task deleted before training started is also
-- ended (status failure) and refunded; one deleted later keeps its status (docs/api.md, "Deleting a task").
ALTER TABLE tasks ADD COLUMN deleted_at timestamptz;
DROP INDEX IF EXISTS tasks_account_idx;
CREATE INDEX tasks_account_idx ON tasks (account_id, created_at DESC, task_id DESC) WHERE deleted_at IS NULL;
