-- What a source that reads files remembers between runs: the files already read (name, size,
-- modification time), stored with the run's events in one transaction so that a crash between
-- the commit and the archiving of a file neither loses nor reads it twice. `read_version`
-- fences two runs of one source: only the run that read the state it replaces may store.
ALTER TABLE sources ADD COLUMN read_state jsonb;
ALTER TABLE sources ADD COLUMN read_version bigint NOT NULL DEFAULT 0;
