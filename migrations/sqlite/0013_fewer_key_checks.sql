-- An event's organisation and stream are its job's, and a job's organisation is its stream's
-- (see the Postgres migration): those columns no longer carry foreign keys of their own.
-- SQLite cannot drop a constraint, so the three tables are rebuilt. Within the migration's
-- transaction foreign keys stay enforced, and dropping a table deletes its rows first (with
-- their cascades): every row is set aside in a plain copy, the tables are dropped children
-- first, made again, and filled parents first.
CREATE TABLE keep_jobs AS SELECT * FROM jobs;
CREATE TABLE keep_events AS SELECT * FROM events;
CREATE TABLE keep_attempts AS SELECT * FROM delivery_attempts;
DROP TABLE delivery_attempts;
DROP TABLE events;
DROP TABLE jobs;

CREATE TABLE jobs (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL,
    stream_id         BLOB NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    status            text NOT NULL CHECK (status IN ('PENDING','PROCESSING','FINISHED','FINISHED_WITH_ISSUES','FAILED')),
    trigger           text NOT NULL CHECK (trigger IN ('manual','scheduled','webhook','upload','replicate')),
    message           text,
    settings          TEXT NOT NULL,
    payload           TEXT,
    original_job_id   BLOB,
    run_at            TEXT NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    claim_token       BLOB,
    claimed_by        text,
    lease_expires_at  TEXT,
    source_done_at    TEXT,
    aggregate_next_at   TEXT,
    aggregate_attempts  INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT
);
CREATE TABLE events (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL,
    stream_id          BLOB NOT NULL,
    job_id             BLOB NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    status             text NOT NULL CHECK (status IN ('NEW','TRANSFORMED','OK','ERROR','FAILED','ABORTED')),
    data_type          text NOT NULL,
    entity_id          text,
    payload_in         TEXT,
    payload_out        TEXT,
    error_code         text,
    message            text,
    retries_remaining  INTEGER,
    next_attempt_at    TEXT,
    last_attempt_at    TEXT,
    attempt_count      INTEGER NOT NULL DEFAULT 0,
    claim_token        BLOB,
    lease_expires_at   TEXT,
    original_event_id  BLOB,
    ignored            INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    transform_logs     TEXT,
    origin             TEXT,
    destination_ref    TEXT
);
CREATE TABLE delivery_attempts (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    event_id          BLOB NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    job_id            BLOB NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    destination_id    BLOB NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    outcome           text NOT NULL CHECK (outcome IN ('SUCCESS','RETRY','FAILED','ABORTED')),
    error_code        text,
    http_status       INTEGER,
    http_status_name  text,
    response_excerpt  text,
    duration_ms       INTEGER
);

INSERT INTO jobs SELECT * FROM keep_jobs;
INSERT INTO events SELECT * FROM keep_events;
INSERT INTO delivery_attempts SELECT * FROM keep_attempts;
DROP TABLE keep_attempts;
DROP TABLE keep_events;
DROP TABLE keep_jobs;

CREATE INDEX jobs_org ON jobs (org_id, id);
CREATE INDEX jobs_org_stream ON jobs (org_id, stream_id, id);
CREATE INDEX jobs_org_status ON jobs (org_id, status, id);
CREATE INDEX jobs_claimable ON jobs (run_at) WHERE status = 'PENDING';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE claim_token IS NOT NULL;
CREATE INDEX jobs_aggregate_due ON jobs (aggregate_next_at) WHERE aggregate_next_at IS NOT NULL;
CREATE INDEX events_org ON events (org_id, id);
CREATE INDEX events_org_stream ON events (org_id, stream_id, id);
CREATE INDEX events_org_status ON events (org_id, status, id);
CREATE INDEX events_job ON events (job_id, status);
CREATE INDEX events_org_entity ON events (org_id, entity_id);
CREATE INDEX events_org_error ON events (org_id, error_code) WHERE error_code IS NOT NULL;
CREATE INDEX events_org_updated ON events (org_id, updated_at);
CREATE INDEX events_leased ON events (lease_expires_at) WHERE claim_token IS NOT NULL;
CREATE INDEX events_due ON events (next_attempt_at)
    WHERE status IN ('NEW', 'TRANSFORMED') AND claim_token IS NULL;
CREATE INDEX attempts_event ON delivery_attempts (event_id, id);
CREATE INDEX attempts_destination ON delivery_attempts (destination_id, id);
CREATE INDEX attempts_job ON delivery_attempts (job_id);
