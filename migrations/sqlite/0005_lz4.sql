-- Postgres compresses payloads with LZ4 from here (see its migration); SQLite stores them as
-- they are. Nothing to change: the two sets keep the same numbering.
SELECT 1;
