-- Talis schema v5: webhooks and their deliveries (docs/webhooks.md).

CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL,
    project_id  INTEGER,                  -- null: every event of the owner
    url         TEXT    NOT NULL,
    events      TEXT    NOT NULL,         -- JSON array of event kinds
    secret      TEXT    NOT NULL,         -- whsec_…: HMAC needs the key itself; emptied on delete
    created_at  TEXT    NOT NULL,
    deleted_at  TEXT
);
CREATE INDEX webhooks_owner ON webhooks (owner_id) WHERE deleted_at IS NULL;

-- One row per (event, webhook), written in the event's transaction.
CREATE TABLE webhook_deliveries (
    id             INTEGER PRIMARY KEY,
    webhook_id     INTEGER NOT NULL,
    owner_id       INTEGER NOT NULL,
    event_id       INTEGER,               -- null for a ping
    kind           TEXT    NOT NULL,      -- the message type: an event kind or 'ping'
    message_id     TEXT    NOT NULL,      -- the webhook-id header, the same on every attempt
    status         TEXT    NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_status    INTEGER,
    last_error     TEXT,
    next_attempt_at TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    dispatched_at  TEXT                   -- when Restate accepted the kick that covers it
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (webhook_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_undispatched ON webhook_deliveries (created_at) WHERE dispatched_at IS NULL;
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

ALTER TABLE quotas ADD COLUMN max_webhooks INTEGER;
