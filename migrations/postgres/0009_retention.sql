-- An organisation's own retention policy (payload_days, records_days, log_days); null keeps the
-- configured defaults.
ALTER TABLE organisations ADD COLUMN retention jsonb;
