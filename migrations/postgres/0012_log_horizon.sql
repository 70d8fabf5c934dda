-- Event-log positions given when a row is written, with no second write.
--
-- Rows were inserted without a position and stamped later, in commit order, by the sequencer:
-- an UPDATE of every row (a dead row each, and new entries in every index). Now a row's place
-- is (horizon, id), both set by its insert. `horizon` is the newest transaction the writing
-- statement can know to have finished (its snapshot's xmax), and at least the writer's own
-- transaction + 1. Readers take only rows with horizon <= the oldest transaction still running
-- (their snapshot's xmin), ordered by (horizon, id). Then:
-- - a row is read only once its transaction, and every transaction that took an id before it,
--   has ended, so nothing can later commit behind what a follower has read (no gap);
-- - a status change written after another transaction committed (it read that commit) sorts
--   after every row of that transaction (xmax never goes back; ids rise): causal order.
-- The cost: while a transaction that began writing is open, rows after it wait for it.
--
-- Existing rows keep their published positions: they become horizon 0 with id = the old `seq`
-- (unpublished ones follow the last published), so a follower's old cursor (`seq` or
-- `seq.k`) reads on without a gap or a repeat. New rows have horizons above 0.
--
-- Nodes still running the previous version write and number rows until they stop: the table is
-- locked first, so that none of their rows is copied twice, missed or dropped with the old table.
LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE;
CREATE TABLE event_log_next (
    id          bigserial PRIMARY KEY,
    horizon     bigint NOT NULL DEFAULT GREATEST(
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                    pg_current_xact_id()::text::bigint + 1),
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    entries     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
INSERT INTO event_log_next (id, horizon, org_id, entries, created_at)
SELECT seq, 0, org_id, entries, created_at FROM event_log WHERE seq IS NOT NULL;
INSERT INTO event_log_next (id, horizon, org_id, entries, created_at)
SELECT (SELECT COALESCE(MAX(seq), 0) FROM event_log) + ROW_NUMBER() OVER (ORDER BY id),
       0, org_id, entries, created_at
FROM event_log WHERE seq IS NULL;
SELECT setval(pg_get_serial_sequence('event_log_next', 'id'),
              GREATEST((SELECT MAX(id) FROM event_log_next), 1));
DROP TABLE event_log;
ALTER TABLE event_log_next RENAME TO event_log;
ALTER SEQUENCE event_log_next_id_seq RENAME TO event_log_id_seq;
ALTER INDEX event_log_next_pkey RENAME TO event_log_pkey;
ALTER TABLE event_log RENAME CONSTRAINT event_log_next_org_id_fkey TO event_log_org_id_fkey;
CREATE INDEX event_log_org_position ON event_log (org_id, horizon, id);
CREATE INDEX event_log_position ON event_log (horizon, id);
DO $$
BEGIN
    ALTER TABLE event_log ALTER COLUMN entries SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'the event log keeps the default compression: %', SQLERRM;
END
$$;

-- Where alert evaluation has read to is a place of the same form.
ALTER TABLE alert_cursor ADD COLUMN horizon bigint NOT NULL DEFAULT 0;
