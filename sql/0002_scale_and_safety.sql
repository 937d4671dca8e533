-- Talis schema v2.

-- A phone-home names its machine by the provider's id: found by index, not by scanning a task.
CREATE INDEX instances_provider_ref ON instances (provider_ref) WHERE provider_ref != '';

-- Cancel of a running task's workflow, delivered durably: set in the transaction that
-- terminates the task, cleared when the workflow engine has taken the cancel; the sweep sends
-- it again until then.
ALTER TABLE tasks ADD COLUMN cancel_requested_at TEXT;
CREATE INDEX tasks_cancel_pending ON tasks (cancel_requested_at) WHERE cancel_requested_at IS NOT NULL;
