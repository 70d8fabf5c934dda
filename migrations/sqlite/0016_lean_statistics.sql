-- Postgres gathers its appended tables' statistics from fewer rows from here (see its
-- migration); SQLite gathers statistics only when told to (ANALYZE), never by itself. Nothing
-- to change: the two sets keep the same numbering.
SELECT 1;
