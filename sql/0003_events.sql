-- Talis schema v3: the event log (status changes, provider steps, API calls), which also
-- renders the tasks' `logs`.

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    owner_id    INTEGER NOT NULL,
    kind        TEXT    NOT NULL,                 -- instance.status | task.status | api.call | provider.step | reconcile
    project_id  INTEGER,
    task_id     INTEGER,
    instance_id INTEGER,
    data        TEXT    NOT NULL DEFAULT '{}',    -- JSON, shaped by the kind
    dedup_key   TEXT                              -- a workflow step's key: written once per task
);
CREATE INDEX events_owner ON events (owner_id, id);
CREATE INDEX events_project ON events (project_id, id) WHERE project_id IS NOT NULL;
CREATE INDEX events_task ON events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_instance ON events (instance_id, id) WHERE instance_id IS NOT NULL;
CREATE UNIQUE INDEX events_dedup ON events (task_id, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX events_at ON events (at);

-- The step events of earlier versions become provider steps of the new log.
INSERT INTO events (at, owner_id, kind, project_id, task_id, instance_id, data, dedup_key)
SELECT e.created_at, t.owner_id, 'provider.step', t.project_id, e.task_id, e.instance_id,
       json_object('step', e.step, 'status', e.status, 'detail', e.detail), e.event_key
FROM task_events e JOIN tasks t ON t.id = e.task_id ORDER BY e.id;
DROP TABLE task_events;
UPDATE tasks SET logs = '';
