-- Talis schema v6: phone-homes that arrive before the workflow has recorded their machine (a
-- machine that boots faster than its create is recorded). The report is kept and applied in
-- the transaction that records that droplet for the task, so the machine is ready at once
-- instead of after its retry. One row per (task, droplet); no more rows per task than it has
-- instances; a task's rows go when it finishes.
CREATE TABLE early_phone_homes (
    task_id    INTEGER NOT NULL,
    droplet    TEXT    NOT NULL,
    status     TEXT    NOT NULL,      -- the report's: ok | failed
    public_ip  TEXT    NOT NULL,
    at         TEXT    NOT NULL,
    PRIMARY KEY (task_id, droplet)
) WITHOUT ROWID;
