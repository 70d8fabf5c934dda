-- Payloads, transformation logs and event-log rows as `json` (their text, checked) instead of
-- `jsonb` (parsed into a tree whose keys are sorted). Nothing queries inside them in SQL: they
-- are written once, read back whole and searched as text. Converting each payload to jsonb
-- and back cost Postgres about a tenth of its time per order (lexing, sorting every object's
-- keys, and writing the text again on every read). Stored as `json`, a payload is kept as it
-- was received, keys in their order and numbers to the digit, as SQLite keeps it. The change
-- rewrites both tables once; their compression (LZ4 where the server has it) is kept.
ALTER TABLE events ALTER COLUMN payload_in TYPE json USING payload_in::json,
                   ALTER COLUMN payload_out TYPE json USING payload_out::json,
                   ALTER COLUMN transform_logs TYPE json USING transform_logs::json;
ALTER TABLE event_log ALTER COLUMN entries TYPE json USING entries::json;
