-- Wharf schema (Postgres). Every table of PRODUCT.md's vocabulary. Ids are UUIDv7, so ordering
-- by id is ordering by creation and cursor pagination is a plain `id > $cursor`.

CREATE TABLE organisations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    email       text NOT NULL,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner','admin','editor','viewer','event_viewer')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX users_org ON users (org_id, id);

-- Only the SHA-256 of a token is kept; `hint` is its last characters, to tell tokens apart.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users(id) ON DELETE CASCADE,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner','admin','editor','viewer','event_viewer')),
    token_hash    text NOT NULL UNIQUE,
    hint          text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    expires_at    timestamptz
);
CREATE INDEX api_tokens_org ON api_tokens (org_id, id);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- `credentials` holds only the non-secret fields; the secret ones are sealed (AEAD) in
-- `sealed_secrets` under the master key, bound to the key's id.
CREATE TABLE keys (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    system          text NOT NULL,
    title           text NOT NULL,
    credentials     jsonb NOT NULL,
    sealed_secrets  bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX keys_org ON keys (org_id, id);

CREATE TABLE sources (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title          text NOT NULL,
    system         text NOT NULL,
    function       text NOT NULL,
    key_id         uuid REFERENCES keys(id),
    trigger        text NOT NULL CHECK (trigger IN ('manual','scheduled','webhook')),
    schedule       text,
    timezone       text,
    params         jsonb NOT NULL,
    webhook_token  text UNIQUE,
    active         boolean NOT NULL,
    -- The next due run of a scheduled source, stored so a restart neither skips nor repeats one.
    next_run_at    timestamptz,
    -- Subscriptions installed at the system (ingest), and rejected-push counter.
    webhook_state  jsonb NOT NULL DEFAULT '{}',
    -- Pushes refused by verification (wrong signature or credentials).
    rejected_count bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX sources_org ON sources (org_id, id);
CREATE INDEX sources_key ON sources (key_id);
CREATE INDEX sources_due ON sources (next_run_at) WHERE trigger = 'scheduled' AND active;

-- Public transformations (org_id NULL) ship in the binary and are written here at start-up.
CREATE TABLE transformations (
    id           uuid PRIMARY KEY,
    org_id       uuid REFERENCES organisations(id) ON DELETE CASCADE,
    visibility   text NOT NULL CHECK (visibility IN ('public','private')),
    title        text NOT NULL,
    description  text NOT NULL,
    data_type    text NOT NULL,
    language     text NOT NULL CHECK (language IN ('javascript','template')),
    format       text NOT NULL CHECK (format IN ('json','csv','xml','text')),
    code         text NOT NULL,
    copied_from  uuid,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CHECK ((visibility = 'public') = (org_id IS NULL))
);
CREATE INDEX transformations_org ON transformations (org_id, id);

CREATE TABLE lookup_tables (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name           text NOT NULL,
    description    text NOT NULL,
    default_value  text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX lookup_tables_org ON lookup_tables (org_id, id);

-- Keys sort byte-wise ("C"), as in SQLite, so both stores page entries the same way.
CREATE TABLE lookup_entries (
    table_id  uuid NOT NULL REFERENCES lookup_tables(id) ON DELETE CASCADE,
    key       text COLLATE "C" NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (table_id, key)
);

CREATE TABLE destinations (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title       text NOT NULL,
    system      text NOT NULL,
    function    text NOT NULL,
    key_id      uuid REFERENCES keys(id),
    mode        text NOT NULL CHECK (mode IN ('realtime','aggregate','scheduled')),
    params      jsonb NOT NULL,
    retry       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX destinations_org ON destinations (org_id, id);
CREATE INDEX destinations_key ON destinations (key_id);

-- A stream's parts are RESTRICT references: deleting one still in use fails (409).
CREATE TABLE streams (
    id                 uuid PRIMARY KEY,
    org_id             uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title              text NOT NULL,
    data_type          text NOT NULL,
    source_id          uuid NOT NULL REFERENCES sources(id),
    transformation_id  uuid NOT NULL REFERENCES transformations(id),
    destination_id     uuid NOT NULL REFERENCES destinations(id),
    active             boolean NOT NULL,
    test_mode          boolean NOT NULL,
    settings           jsonb NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX streams_org ON streams (org_id, id);
CREATE INDEX streams_source ON streams (source_id);
CREATE INDEX streams_transformation ON streams (transformation_id);
CREATE INDEX streams_destination ON streams (destination_id);

-- Jobs double as queue rows: `run_at` says when due; a claim sets `claim_token` and
-- `lease_expires_at`, and completion only touches rows still held under that token.
CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    stream_id         uuid NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    status            text NOT NULL CHECK (status IN ('PENDING','PROCESSING','FINISHED','FINISHED_WITH_ISSUES','FAILED')),
    trigger           text NOT NULL CHECK (trigger IN ('manual','scheduled','webhook','upload','replicate')),
    message           text,
    settings          jsonb NOT NULL,
    payload           jsonb,
    original_job_id   uuid,
    run_at            timestamptz NOT NULL,
    attempt           bigint NOT NULL DEFAULT 0,
    claim_token       uuid,
    claimed_by        text,
    lease_expires_at  timestamptz,
    -- Set when the source has run and the job's events exist; until then a job whose
    -- lease ran out is claimed again (its source re-run: no events were stored yet).
    source_done_at    timestamptz,
    -- Aggregate destinations: when the job's combined delivery is due, and tries so far.
    aggregate_next_at   timestamptz,
    aggregate_attempts  bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX jobs_org ON jobs (org_id, id);
CREATE INDEX jobs_org_stream ON jobs (org_id, stream_id, id);
CREATE INDEX jobs_org_status ON jobs (org_id, status, id);
CREATE INDEX jobs_claimable ON jobs (run_at) WHERE status = 'PENDING';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE claim_token IS NOT NULL;
CREATE INDEX jobs_aggregate_due ON jobs (aggregate_next_at) WHERE aggregate_next_at IS NOT NULL;

CREATE TABLE events (
    id                 uuid PRIMARY KEY,
    org_id             uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    stream_id          uuid NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    job_id             uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    status             text NOT NULL CHECK (status IN ('NEW','TRANSFORMED','OK','ERROR','FAILED','ABORTED')),
    data_type          text NOT NULL,
    entity_id          text,
    payload_in         jsonb,
    payload_out        jsonb,
    error_code         text,
    message            text,
    retries_remaining  bigint,
    next_attempt_at    timestamptz,
    last_attempt_at    timestamptz,
    attempt_count      bigint NOT NULL DEFAULT 0,
    claim_token        uuid,
    lease_expires_at   timestamptz,
    original_event_id  uuid,
    ignored            boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
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
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    event_id          uuid NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    job_id            uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    destination_id    uuid NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    outcome           text NOT NULL CHECK (outcome IN ('SUCCESS','RETRY','FAILED','ABORTED')),
    error_code        text,
    http_status       bigint,
    http_status_name  text,
    response_excerpt  text,
    duration_ms       bigint
);
CREATE INDEX attempts_event ON delivery_attempts (event_id, id);
CREATE INDEX attempts_destination ON delivery_attempts (destination_id, id);

-- The business object events are about, with its last status; its history is its events.
CREATE TABLE entities (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    data_type        text NOT NULL,
    entity_id        text NOT NULL,
    last_status      text NOT NULL,
    last_event_id    uuid,
    last_error_code  text,
    last_message     text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    UNIQUE (org_id, data_type, entity_id)
);
CREATE INDEX entities_org ON entities (org_id, id);

-- Append-only feed of status changes. `id` orders writes; `seq` is the position readers
-- follow. It is assigned in commit order, after the writing transaction commits, so a reader
-- never sees position N+1 before N (writers may commit out of id order).
CREATE TABLE event_log (
    id           bigserial PRIMARY KEY,
    seq          bigint UNIQUE,
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    type         text NOT NULL CHECK (type IN ('JOB_STATUS_CHANGE','EVENT_STATUS_CHANGE')),
    stream_id    uuid,
    job_id       uuid,
    event_id     uuid,
    from_status  text,
    to_status    text NOT NULL,
    details      jsonb NOT NULL,
    event_at     timestamptz NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX event_log_org_seq ON event_log (org_id, seq);
CREATE INDEX event_log_unsequenced ON event_log (id) WHERE seq IS NULL;

CREATE TABLE alert_rules (
    id                    uuid PRIMARY KEY,
    org_id                uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title                 text NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('job_failed','event_errors','error_rate','silence')),
    stream_id             uuid REFERENCES streams(id) ON DELETE CASCADE,
    params                jsonb NOT NULL,
    recipients            jsonb NOT NULL,
    flood_limit           bigint NOT NULL,
    flood_period_seconds  bigint NOT NULL,
    active                boolean NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX alert_rules_org ON alert_rules (org_id, id);

CREATE TABLE alerts (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    rule_id       uuid NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    stream_id     uuid,
    message       text NOT NULL,
    details       jsonb NOT NULL,
    notified_at   timestamptz,
    notify_error  text,
    created_at    timestamptz NOT NULL
);
CREATE INDEX alerts_org ON alerts (org_id, id);
CREATE INDEX alerts_rule ON alerts (rule_id, created_at);

-- Deliveries already received from a provider, by its delivery id (X-Shopify-Webhook-Id,
-- Idempotency-Key, …). The primary key makes a repeated or concurrent duplicate fail to insert,
-- so one delivery creates one job however many times it arrives; rows leave after retention.
CREATE TABLE webhook_receipts (
    source_id    uuid NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    delivery_id  text NOT NULL,
    job_id       uuid NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (source_id, delivery_id)
);
CREATE INDEX webhook_receipts_received ON webhook_receipts (received_at);
