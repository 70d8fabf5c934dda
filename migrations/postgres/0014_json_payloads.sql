-- Payloads, a transformation's logs and event-log entries are kept as the JSON text they were
-- written as (`json`), not converted to `jsonb`. The store never queries inside them (it reads
-- them whole, or searches their text); `jsonb`'s conversion on every write — each object's keys
-- sorted, each number made a numeric — was about a quarter of Postgres's CPU on ingest, and
-- every read converted them back to text. `json` input only checks the text.
-- What changes for a reader: a payload is the sender's text (its spacing, its key order, a
-- repeated key kept; read as a value, the last of a repeated key counts, as before); and
-- U+0000 (`\u0000`), which `jsonb` refuses, can be stored, as SQLite always could.
-- Rewrites the events and event-log tables once (their indexes too).
ALTER TABLE events ALTER COLUMN payload_in TYPE json USING payload_in::json,
                   ALTER COLUMN payload_out TYPE json USING payload_out::json,
                   ALTER COLUMN transform_logs TYPE json USING transform_logs::json;
ALTER TABLE event_log ALTER COLUMN entries TYPE json USING entries::json;
-- A column's compression goes with its old type: LZ4 again, as 0005 chose (rows rewritten
-- above keep the default until written again).
DO $$
BEGIN
    ALTER TABLE events ALTER COLUMN payload_in SET COMPRESSION lz4,
                       ALTER COLUMN payload_out SET COMPRESSION lz4;
    ALTER TABLE event_log ALTER COLUMN entries SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'payloads keep the default compression: %', SQLERRM;
END
$$;
