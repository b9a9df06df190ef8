DROP INDEX IF EXISTS tasks_finished_any_idx;
DROP INDEX IF EXISTS weight_sets_audited_idx;
ALTER TABLE weight_sets DROP COLUMN IF EXISTS weights_by_uid, DROP COLUMN IF EXISTS evaluated_at;
DROP TABLE IF EXISTS nodes;
