-- Postgres keeps records' data and event-log entries as `json` text from here (see its
-- migration); SQLite always kept them as text. Nothing to change: the two sets keep the same
-- numbering.
SELECT 1;
