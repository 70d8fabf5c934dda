-- Event-log positions are (horizon, id) (see the Postgres migration). SQLite commits one
-- writer at a time, so its row ids already are commit order: every row has horizon 0 and is
-- ordered by id, as before. The table is rebuilt without the unused `seq` and its indexes.
CREATE TABLE event_log_next (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    horizon     INTEGER NOT NULL DEFAULT 0,
    org_id      BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    entries     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
INSERT INTO event_log_next (id, horizon, org_id, entries, created_at)
SELECT id, 0, org_id, entries, created_at FROM event_log ORDER BY id;
DROP TABLE event_log;
ALTER TABLE event_log_next RENAME TO event_log;
CREATE INDEX event_log_org_position ON event_log (org_id, horizon, id);
CREATE INDEX event_log_position ON event_log (horizon, id);

ALTER TABLE alert_cursor ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0;
