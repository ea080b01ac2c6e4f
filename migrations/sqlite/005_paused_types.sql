-- 005_paused_types.sql — the job types an operator paused (POST /v1/types/{type}/pause): a
-- paused type still takes and stores jobs, and the scheduler starts none of them until it is
-- resumed. A row per paused type, kept across restarts; resuming deletes it.
CREATE TABLE paused_types (
    type      TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
