-- A delivery attempt's organisation and job are its event's (see the Postgres migration):
-- those columns no longer carry foreign keys of their own, and the index on the job, which
-- served only its cascade, goes. SQLite cannot drop a constraint, so the table is rebuilt as
-- 0013 did: no table refers to it, so its rows are set aside in a plain copy, the table is
-- dropped, made again and filled.
CREATE TABLE keep_attempts AS SELECT * FROM delivery_attempts;
DROP TABLE delivery_attempts;

CREATE TABLE delivery_attempts (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL,
    event_id          BLOB NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    job_id            BLOB NOT NULL,
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

INSERT INTO delivery_attempts SELECT * FROM keep_attempts;
DROP TABLE keep_attempts;

CREATE INDEX attempts_event ON delivery_attempts (event_id, id);
CREATE INDEX attempts_destination ON delivery_attempts (destination_id, id);
