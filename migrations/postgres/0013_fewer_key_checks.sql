-- An event's organisation and stream are its job's, and a job's organisation is its stream's:
-- the store writes them so. Their own foreign keys were checked, each parent row share-locked,
-- for every job and event stored: on the ingest path a quarter of Postgres's CPU went to
-- foreign-key checks. What they guarded stays guarded through the job and the stream:
-- deleting an organisation deletes its streams, a stream its jobs, a job its events.
ALTER TABLE events DROP CONSTRAINT events_org_id_fkey, DROP CONSTRAINT events_stream_id_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_org_id_fkey;
