-- The event log written a row per transaction and organisation, not a row per entry (see the
-- Postgres migration). SQLite commits one writer at a time, so its row ids are commit order
-- and `seq` stays unused. Existing entries become one-entry rows at their ids, so a follower's
-- cursor reads on.
CREATE TABLE event_log_rows (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    seq         INTEGER UNIQUE,
    org_id      BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    entries     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO event_log_rows (id, seq, org_id, entries, created_at)
SELECT id, seq, org_id,
       json_array(json_object('type', type,
           'stream_id', CASE WHEN stream_id IS NULL THEN NULL ELSE lower(hex(stream_id)) END,
           'job_id', CASE WHEN job_id IS NULL THEN NULL ELSE lower(hex(job_id)) END,
           'event_id', CASE WHEN event_id IS NULL THEN NULL ELSE lower(hex(event_id)) END,
           'from', from_status, 'to', to_status, 'details', json(details))),
       created_at
FROM event_log ORDER BY id;
DROP TABLE event_log;
ALTER TABLE event_log_rows RENAME TO event_log;
CREATE INDEX event_log_org_seq ON event_log (org_id, seq);
CREATE INDEX event_log_unsequenced ON event_log (id) WHERE seq IS NULL;
