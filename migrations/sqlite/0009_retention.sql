-- An organisation's own retention policy (payload_days, records_days, log_days); null keeps the
-- configured defaults.
ALTER TABLE organisations ADD COLUMN retention TEXT;

-- Deleting a job cascades to its attempts: without this index each deleted job read the whole
-- attempts table.
CREATE INDEX attempts_job ON delivery_attempts (job_id);
