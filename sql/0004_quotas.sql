-- Talis schema v4: per-owner quota overrides (null: the deployment's default).
CREATE TABLE quotas (
    owner_id      INTEGER PRIMARY KEY REFERENCES users (id),
    max_instances INTEGER,
    max_projects  INTEGER,
    max_api_keys  INTEGER,
    max_ssh_keys  INTEGER,
    updated_at    TEXT NOT NULL
);
