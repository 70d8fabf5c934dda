-- Wharf schema (SQLite), the twin of migrations/postgres. Every table of PRODUCT.md's vocabulary. Ids are UUIDv7, so ordering
-- by id is ordering by creation and cursor pagination is a plain `id > $cursor`.

CREATE TABLE organisations (
    id          BLOB PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE users (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    email       text NOT NULL,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner','admin','editor','viewer','event_viewer')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX users_org ON users (org_id, id);

-- Only the SHA-256 of a token is kept; `hint` is its last characters, to tell tokens apart.
CREATE TABLE api_tokens (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id       BLOB REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner','admin','editor','viewer','event_viewer')),
    token_hash    text NOT NULL UNIQUE,
    hint          text NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    last_used_at  TEXT,
    expires_at    TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id, id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- `credentials` holds only the non-secret fields; the secret ones are sealed (AEAD) in
-- `sealed_secrets` under the master key, bound to the key's id.
CREATE TABLE keys (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    system          text NOT NULL,
    title           text NOT NULL,
    credentials     TEXT NOT NULL,
    sealed_secrets  BLOB NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX keys_org ON keys (org_id, id);

CREATE TABLE sources (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title          text NOT NULL,
    system         text NOT NULL,
    function       text NOT NULL,
    key_id         BLOB REFERENCES keys(id),
    trigger        text NOT NULL CHECK (trigger IN ('manual','scheduled','webhook')),
    schedule       text,
    timezone       text,
    params         TEXT NOT NULL,
    webhook_token  text UNIQUE,
    active         INTEGER NOT NULL,
    -- The next due run of a scheduled source, stored so a restart neither skips nor repeats one.
    next_run_at    TEXT,
    -- Subscriptions installed at the system (ingest), and rejected-push counter.
    webhook_state  TEXT NOT NULL DEFAULT '{}',
    -- Pushes refused by verification (wrong signature or credentials).
    rejected_count INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX sources_org ON sources (org_id, id);
CREATE INDEX sources_key ON sources (key_id);
CREATE INDEX sources_due ON sources (next_run_at) WHERE trigger = 'scheduled' AND active = 1;

-- Public transformations (org_id NULL) ship in the binary and are written here at start-up.
CREATE TABLE transformations (
    id           BLOB PRIMARY KEY,
    org_id       BLOB REFERENCES organisations(id) ON DELETE CASCADE,
    visibility   text NOT NULL CHECK (visibility IN ('public','private')),
    title        text NOT NULL,
    description  text NOT NULL,
    data_type    text NOT NULL,
    language     text NOT NULL CHECK (language IN ('javascript','template')),
    format       text NOT NULL CHECK (format IN ('json','csv','xml','text')),
    code         text NOT NULL,
    copied_from  BLOB,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CHECK ((visibility = 'public') = (org_id IS NULL))
);
CREATE INDEX transformations_org ON transformations (org_id, id);

CREATE TABLE lookup_tables (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name           text NOT NULL,
    description    text NOT NULL,
    default_value  text,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX lookup_tables_org ON lookup_tables (org_id, id);

CREATE TABLE lookup_entries (
    table_id  BLOB NOT NULL REFERENCES lookup_tables(id) ON DELETE CASCADE,
    key       text NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (table_id, key)
);

CREATE TABLE destinations (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title       text NOT NULL,
    system      text NOT NULL,
    function    text NOT NULL,
    key_id      BLOB REFERENCES keys(id),
    mode        text NOT NULL CHECK (mode IN ('realtime','aggregate','scheduled')),
    params      TEXT NOT NULL,
    retry       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX destinations_org ON destinations (org_id, id);
CREATE INDEX destinations_key ON destinations (key_id);

-- A stream's parts are RESTRICT references: deleting one still in use fails (409).
CREATE TABLE streams (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title              text NOT NULL,
    data_type          text NOT NULL,
    source_id          BLOB NOT NULL REFERENCES sources(id),
    transformation_id  BLOB NOT NULL REFERENCES transformations(id),
    destination_id     BLOB NOT NULL REFERENCES destinations(id),
    active             INTEGER NOT NULL,
    test_mode          INTEGER NOT NULL,
    settings           TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE INDEX streams_org ON streams (org_id, id);
CREATE INDEX streams_source ON streams (source_id);
CREATE INDEX streams_transformation ON streams (transformation_id);
CREATE INDEX streams_destination ON streams (destination_id);

-- Jobs double as queue rows: `run_at` says when due; a claim sets `claim_token` and
-- `lease_expires_at`, and completion only touches rows still held under that token.
CREATE TABLE jobs (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
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
    -- Set when the source has run and the job's events exist; until then a job whose
    -- lease ran out is claimed again (its source re-run: no events were stored yet).
    source_done_at    TEXT,
    -- Aggregate destinations: when the job's combined delivery is due, and tries so far.
    aggregate_next_at   TEXT,
    aggregate_attempts  INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT
);
CREATE INDEX jobs_org ON jobs (org_id, id);
CREATE INDEX jobs_org_stream ON jobs (org_id, stream_id, id);
CREATE INDEX jobs_org_status ON jobs (org_id, status, id);
CREATE INDEX jobs_claimable ON jobs (run_at) WHERE status = 'PENDING';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE claim_token IS NOT NULL;
CREATE INDEX jobs_aggregate_due ON jobs (aggregate_next_at) WHERE aggregate_next_at IS NOT NULL;

CREATE TABLE events (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    stream_id          BLOB NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
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
    updated_at         TEXT NOT NULL
);
CREATE INDEX events_org ON events (org_id, id);
CREATE INDEX events_org_stream ON events (org_id, stream_id, id);
CREATE INDEX events_org_status ON events (org_id, status, id);
CREATE INDEX events_job ON events (job_id, status);
CREATE INDEX events_org_entity ON events (org_id, entity_id);
CREATE INDEX events_org_error ON events (org_id, error_code) WHERE error_code IS NOT NULL;
CREATE INDEX events_org_updated ON events (org_id, updated_at);
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('NEW','TRANSFORMED');
CREATE INDEX events_leased ON events (lease_expires_at) WHERE claim_token IS NOT NULL;

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
CREATE INDEX attempts_event ON delivery_attempts (event_id, id);
CREATE INDEX attempts_destination ON delivery_attempts (destination_id, id);

-- The business object events are about, with its last status; its history is its events.
CREATE TABLE entities (
    id               BLOB PRIMARY KEY,
    org_id           BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    data_type        text NOT NULL,
    entity_id        text NOT NULL,
    last_status      text NOT NULL,
    last_event_id    BLOB,
    last_error_code  text,
    last_message     text,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (org_id, data_type, entity_id)
);
CREATE INDEX entities_org ON entities (org_id, id);

-- Append-only feed of status changes. SQLite has one writer at a time, so commit order is id
-- order; `seq` is kept for one shape with Postgres and set equal to `id`.
CREATE TABLE event_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    seq          INTEGER UNIQUE,
    org_id       BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    type         text NOT NULL CHECK (type IN ('JOB_STATUS_CHANGE','EVENT_STATUS_CHANGE')),
    stream_id    BLOB,
    job_id       BLOB,
    event_id     BLOB,
    from_status  text,
    to_status    text NOT NULL,
    details      TEXT NOT NULL,
    event_at     TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX event_log_org_seq ON event_log (org_id, seq);
CREATE INDEX event_log_unsequenced ON event_log (id) WHERE seq IS NULL;

CREATE TABLE alert_rules (
    id                    BLOB PRIMARY KEY,
    org_id                BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title                 text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('job_failed','event_errors','error_rate','silence')),
    stream_id             BLOB REFERENCES streams(id) ON DELETE CASCADE,
    params                TEXT NOT NULL,
    recipients            TEXT NOT NULL,
    flood_limit           INTEGER NOT NULL,
    flood_period_seconds  INTEGER NOT NULL,
    active                INTEGER NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX alert_rules_org ON alert_rules (org_id, id);

CREATE TABLE alerts (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    rule_id       BLOB NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    stream_id     BLOB,
    message       text NOT NULL,
    details       TEXT NOT NULL,
    notified_at   TEXT,
    notify_error  text,
    created_at    TEXT NOT NULL
);
CREATE INDEX alerts_org ON alerts (org_id, id);
CREATE INDEX alerts_rule ON alerts (rule_id, created_at);

-- Deliveries already received from a provider, by its delivery id (X-Shopify-Webhook-Id,
-- Idempotency-Key, …). The primary key makes a repeated or concurrent duplicate fail to insert,
-- so one delivery creates one job however many times it arrives; rows leave after retention.
CREATE TABLE webhook_receipts (
    source_id    BLOB NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    delivery_id  text NOT NULL,
    job_id       BLOB NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (source_id, delivery_id)
);
CREATE INDEX webhook_receipts_received ON webhook_receipts (received_at);
