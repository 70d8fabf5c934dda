-- Postgres keeps payloads as `json` text from here (see its migration); SQLite stores them as
-- text already. Nothing to change: the two sets keep the same numbering.
SELECT 1;
