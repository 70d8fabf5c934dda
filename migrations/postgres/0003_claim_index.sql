-- Claims read due, unclaimed events in due order. An index of exactly those rows keeps each
-- claim a short ordered read, however long the backlog: the old one also held every claimed
-- event and left the planner free to fetch and sort the whole due backlog on each claim.
DROP INDEX events_due;
CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('NEW', 'TRANSFORMED') AND claim_token IS NULL;
