-- A delivery attempt's organisation and job are its event's, and the store writes them so (as
-- 0013 found for events and jobs). Their own foreign keys were checked for every attempt, each
-- check reading its parent row and share-locking it — the organisation's row by every worker
-- at once. What they guarded stays guarded through the event: deleting an organisation deletes
-- its streams, a stream its jobs, a job its events, an event its attempts. The index on the
-- attempt's job served only the job's cascade (0009); the event's index serves the cascade now.
ALTER TABLE delivery_attempts
    DROP CONSTRAINT delivery_attempts_org_id_fkey,
    DROP CONSTRAINT delivery_attempts_job_id_fkey;
DROP INDEX attempts_job;
