-- Talis schema v1. Applied once, inside one transaction, by talis_core::db::migrate.
-- Timestamps are RFC 3339 UTC text (sortable); JSON columns are text.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT    NOT NULL,
    email          TEXT    NOT NULL DEFAULT '',
    role           INTEGER NOT NULL DEFAULT 0,        -- 0 user, 1 admin (original Talis values)
    public_ssh_key TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    deleted_at     TEXT
);
-- Usernames are unique among live users only, so a deleted name can be reused.
CREATE UNIQUE INDEX users_username ON users (username) WHERE deleted_at IS NULL;

-- The bootstrap admin owner owns what the admin key creates without an owner_id. Id 0 (the
-- original reserved owner 0 for the server) keeps real user ids starting at 1.
INSERT INTO users (id, username, role, created_at, updated_at)
VALUES (0, 'admin', 1, '1970-01-01T00:00:00.000Z', '1970-01-01T00:00:00.000Z');

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    name       TEXT    NOT NULL DEFAULT '',
    key_hash   TEXT    NOT NULL UNIQUE,               -- hex SHA-256 of the key; the key is shown once
    prefix     TEXT    NOT NULL,                      -- first characters, to recognise a key in lists
    created_at TEXT    NOT NULL,
    revoked_at TEXT
);
CREATE INDEX api_keys_owner ON api_keys (owner_id, id);

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users (id),
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    config      TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT 'active',    -- active | deleting | deleted
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    deleted_at  TEXT
);
CREATE UNIQUE INDEX projects_owner_name ON projects (owner_id, name) WHERE deleted_at IS NULL;
CREATE INDEX projects_owner ON projects (owner_id, id) WHERE deleted_at IS NULL;

CREATE TABLE ssh_keys (
    id         INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES users (id),
    name       TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    deleted_at TEXT
);
CREATE UNIQUE INDEX ssh_keys_owner_name ON ssh_keys (owner_id, name) WHERE deleted_at IS NULL;

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    owner_id      INTEGER NOT NULL REFERENCES users (id),
    project_id    INTEGER NOT NULL REFERENCES projects (id),
    action        TEXT    NOT NULL,                   -- create_instances | terminate_instances | delete_project
    status        TEXT    NOT NULL DEFAULT 'pending',
    priority      INTEGER NOT NULL DEFAULT 1,
    attempts      INTEGER NOT NULL DEFAULT 0,
    invocation_id TEXT,
    logs          TEXT    NOT NULL DEFAULT '',
    error         TEXT    NOT NULL DEFAULT '',
    result        TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    dispatched_at TEXT,
    finished_at   TEXT
);
CREATE INDEX tasks_project ON tasks (project_id, id);
CREATE INDEX tasks_owner ON tasks (owner_id, id);
-- The trigger sweep looks only at undispatched tasks.
CREATE INDEX tasks_undispatched ON tasks (created_at) WHERE dispatched_at IS NULL;

-- One row per instance request of a create call: the parts every instance of it shares
-- (the inline provisioning script is stored once, not once per instance).
CREATE TABLE instance_requests (
    id              INTEGER PRIMARY KEY,
    task_id         INTEGER NOT NULL REFERENCES tasks (id),
    provision       INTEGER NOT NULL DEFAULT 0,
    payload         TEXT    NOT NULL DEFAULT '',
    execute_payload INTEGER NOT NULL DEFAULT 0,
    ssh_keys        TEXT    NOT NULL DEFAULT '[]',    -- [{name, public_key}] resolved at create time
    volumes         TEXT    NOT NULL DEFAULT '[]'     -- [VolumeConfig]
);
CREATE INDEX instance_requests_task ON instance_requests (task_id);

CREATE TABLE instances (
    id             INTEGER PRIMARY KEY,
    owner_id       INTEGER NOT NULL REFERENCES users (id),
    project_id     INTEGER NOT NULL REFERENCES projects (id),
    request_id     INTEGER NOT NULL REFERENCES instance_requests (id),
    create_task_id INTEGER NOT NULL REFERENCES tasks (id),
    last_task_id   INTEGER NOT NULL REFERENCES tasks (id),
    name           TEXT    NOT NULL,
    provider_id    TEXT    NOT NULL,
    provider_ref   TEXT    NOT NULL DEFAULT '',        -- droplet id once the provider accepted it
    public_ip      TEXT    NOT NULL DEFAULT '',
    region         TEXT    NOT NULL,
    size           TEXT    NOT NULL,
    image          TEXT    NOT NULL,
    tags           TEXT    NOT NULL DEFAULT '[]',
    volume_details TEXT    NOT NULL DEFAULT '[]',
    status         TEXT    NOT NULL DEFAULT 'pending',
    error          TEXT    NOT NULL DEFAULT '',
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL
);
CREATE INDEX instances_project ON instances (project_id, id);
CREATE INDEX instances_owner ON instances (owner_id, id);
CREATE INDEX instances_create_task ON instances (create_task_id);

-- Which instances a task covers (one create task covers all instances of its request).
CREATE TABLE task_instances (
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    instance_id INTEGER NOT NULL REFERENCES instances (id),
    PRIMARY KEY (task_id, instance_id)
) WITHOUT ROWID;
CREATE INDEX task_instances_instance ON task_instances (instance_id, task_id);

CREATE TABLE task_events (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    instance_id INTEGER REFERENCES instances (id),
    step        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT '',
    event_key   TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    UNIQUE (task_id, event_key)
);

-- Answers of create calls that carried an idempotency_key, replayed for a repeated call.
CREATE TABLE idempotency_keys (
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    key          TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (owner_id, key)
) WITHOUT ROWID;
