-- Records' data — events' payloads and a transformation's logs, a job's records (thin pushes,
-- replicas) — and event-log entries are kept as the JSON text they were written as (`json`),
-- not converted to `jsonb`. The store never queries inside them (it reads them whole, or
-- searches their text); `jsonb`'s conversion on every write — each object's keys sorted, each
-- number made a numeric — was about a quarter of Postgres's CPU on ingest, and every read
-- converted them back to text. `json` input only checks the text.
-- What changes for a reader: a payload is the text it was stored as (a webhook's single record
-- is the sender's own text: its spacing, its key order, its escapes, a repeated key kept; read
-- as a value the last of a repeated key counts, as before), and the payload search matches that
-- text, as it always did on SQLite; and U+0000 (`\u0000`), which `jsonb` refuses, is kept, as
-- SQLite always kept it.
-- Rewrites the events, event-log and jobs tables once (their indexes too). A type change resets
-- a column's compression: LZ4 is set again in the same statement (as 0005 chose), so the
-- rewrite compresses with it; a server without LZ4 (or Postgres 13, without the clause) changes
-- the types alone. The statements are run by EXECUTE so that the clause is only parsed there.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE events ALTER COLUMN payload_in TYPE json USING payload_in::json,
                                ALTER COLUMN payload_out TYPE json USING payload_out::json,
                                ALTER COLUMN transform_logs TYPE json USING transform_logs::json,
                                ALTER COLUMN payload_in SET COMPRESSION lz4,
                                ALTER COLUMN payload_out SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE event_log ALTER COLUMN entries TYPE json USING entries::json,
                                   ALTER COLUMN entries SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE jobs ALTER COLUMN payload TYPE json USING payload::json,
                              ALTER COLUMN payload SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'payloads keep the default compression: %', SQLERRM;
    ALTER TABLE events ALTER COLUMN payload_in TYPE json USING payload_in::json,
                       ALTER COLUMN payload_out TYPE json USING payload_out::json,
                       ALTER COLUMN transform_logs TYPE json USING transform_logs::json;
    ALTER TABLE event_log ALTER COLUMN entries TYPE json USING entries::json;
    ALTER TABLE jobs ALTER COLUMN payload TYPE json USING payload::json;
END
$$;
