-- The event log written once, in commit order, a row per transaction and organisation.
--
-- Until now every status change was a row of its own, inserted without a position and
-- rewritten by a sequencer after commit: per order, six rows with their index entries written,
-- and six written again. Now:
-- * the entries one transaction writes for one organisation share a row (`entries`, a JSON
--   array in the order written; at most 128 a row);
-- * a row's id is its position, taken from `event_log_head` as the transaction's last statement
--   before COMMIT. The head row stays locked until the transaction ends, so positions are handed
--   out in commit order: a reader that sees position N+1 already sees N.
-- An entry's place is (row id, index in the row).

-- Entries not yet sequenced get their positions as the sequencer would have given them.
WITH next AS (
    SELECT id, ROW_NUMBER() OVER (ORDER BY id) + (SELECT COALESCE(MAX(seq), 0) FROM event_log) AS n
    FROM event_log WHERE seq IS NULL
)
UPDATE event_log SET seq = next.n FROM next WHERE event_log.id = next.id;

-- Existing entries keep their place: each becomes a one-entry row at its position, so a
-- follower's cursor (a position) reads on without a gap or a repeat.
CREATE TABLE event_log_rows (
    id          bigint PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    entries     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
INSERT INTO event_log_rows (id, org_id, entries, created_at)
SELECT seq, org_id,
       jsonb_build_array(jsonb_build_object('type', type, 'stream_id', stream_id, 'job_id', job_id,
           'event_id', event_id, 'from', from_status, 'to', to_status, 'details', details)),
       created_at
FROM event_log ORDER BY seq;
DROP TABLE event_log;
ALTER TABLE event_log_rows RENAME TO event_log;
ALTER INDEX event_log_rows_pkey RENAME TO event_log_pkey;
ALTER TABLE event_log RENAME CONSTRAINT event_log_rows_org_id_fkey TO event_log_org_id_fkey;
CREATE INDEX event_log_org_position ON event_log (org_id, id);

-- The last position handed out: one row.
CREATE TABLE event_log_head (
    id    integer PRIMARY KEY CHECK (id = 1),
    last  bigint NOT NULL
);
INSERT INTO event_log_head (id, last) SELECT 1, COALESCE(MAX(id), 0) FROM event_log;
