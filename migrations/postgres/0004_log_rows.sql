-- The event log written a row per transaction and organisation, not a row per entry.
--
-- Every status change was a row of its own, inserted without a position and given one by the
-- sequencer after commit: per order, six rows and their index entries written, and six written
-- again. Now the entries one transaction writes for one organisation share a row (`entries`, a
-- JSON array in the order written; at most 128 a row). The sequencer still gives rows their
-- positions in commit order (`seq`), now a row at a time: a write for a hundred status changes
-- per commit instead of a hundred. An entry's place is (seq, index in the row).

-- Existing entries become one-entry rows at their positions (unsequenced ones stay so, and are
-- sequenced as before), so a follower's cursor (a `seq`) reads on without a gap or a repeat.
CREATE TABLE event_log_rows (
    id          bigserial PRIMARY KEY,
    seq         bigint UNIQUE,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    entries     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
INSERT INTO event_log_rows (id, seq, org_id, entries, created_at)
SELECT id, seq, org_id,
       jsonb_build_array(jsonb_build_object('type', type, 'stream_id', stream_id, 'job_id', job_id,
           'event_id', event_id, 'from', from_status, 'to', to_status, 'details', details)),
       created_at
FROM event_log ORDER BY id;
SELECT setval(pg_get_serial_sequence('event_log_rows', 'id'),
              (SELECT last_value FROM event_log_id_seq));
DROP TABLE event_log;
ALTER TABLE event_log_rows RENAME TO event_log;
ALTER SEQUENCE event_log_rows_id_seq RENAME TO event_log_id_seq;
ALTER INDEX event_log_rows_pkey RENAME TO event_log_pkey;
ALTER INDEX event_log_rows_seq_key RENAME TO event_log_seq_key;
ALTER TABLE event_log RENAME CONSTRAINT event_log_rows_org_id_fkey TO event_log_org_id_fkey;
CREATE INDEX event_log_org_seq ON event_log (org_id, seq);
CREATE INDEX event_log_unsequenced ON event_log (id) WHERE seq IS NULL;
