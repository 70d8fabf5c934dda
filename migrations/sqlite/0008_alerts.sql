-- Alerts: channels (where messages go), rules (when to tell), alerts (one open incident per
-- rule, stream and error code, counting repeats) and notifications (every message sent or
-- tried: an outbox written with the alert change, sent and retried after commit).
-- The first schema's alert tables were never used; they are replaced.
DROP TABLE alerts;
DROP TABLE alert_rules;

CREATE TABLE alert_channels (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('email','webhook')),
    target         text NOT NULL,
    -- Webhook channels: the signing secret, sealed under the master key.
    sealed_secret  BLOB,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX alert_channels_org ON alert_channels (org_id, id);

CREATE TABLE alert_rules (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('job_failed','event_error','event_failed','error_rate','silence','stuck')),
    -- stream_ids, thresholds, window, check_window, channel_ids, flood.
    definition      TEXT NOT NULL,
    digest          text NOT NULL CHECK (digest IN ('none','daily','weekly')),
    enabled         INTEGER NOT NULL,
    digest_sent_at  TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX alert_rules_org ON alert_rules (org_id, id);

CREATE TABLE alerts (
    id                BLOB PRIMARY KEY,
    org_id            BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    rule_id           BLOB NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    stream_id         BLOB NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    -- '' when the rule does not split by code.
    error_code        text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open','acknowledged','resolved','ignored')),
    first_seen_at     TEXT NOT NULL,
    last_seen_at      TEXT NOT NULL,
    count             INTEGER NOT NULL,
    summary           text NOT NULL,
    sample_event_ids  TEXT NOT NULL,
    -- The count the last message told of; a higher count is news to send.
    notified_count    INTEGER NOT NULL,
    -- Flood control: when the current period began and messages sent in it.
    flood_started_at  TEXT,
    flood_sent        INTEGER NOT NULL,
    -- When the condition was last found clear (condition rules), for resolving.
    clear_since       TEXT,
    resolved_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX alerts_org ON alerts (org_id, id);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, stream_id, error_code)
    WHERE status IN ('open','acknowledged','ignored');

CREATE TABLE notifications (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    channel_id    BLOB NOT NULL REFERENCES alert_channels(id) ON DELETE CASCADE,
    alert_id      BLOB REFERENCES alerts(id) ON DELETE CASCADE,
    rule_id       BLOB REFERENCES alert_rules(id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('opened','repeated','resolved','digest')),
    subject       text NOT NULL,
    body          TEXT NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending','sent','failed')),
    tries         INTEGER NOT NULL,
    next_try_at   TEXT,
    sent_at       TEXT,
    error         text,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX notifications_org ON notifications (org_id, id);
CREATE INDEX notifications_due ON notifications (next_try_at) WHERE status = 'pending';

-- Where alert evaluation has read the event log to, and which node evaluates (a lease, so
-- that nodes sharing the database do not notify twice).
CREATE TABLE alert_cursor (
    name         text PRIMARY KEY,
    position     INTEGER NOT NULL,
    holder       text,
    lease_until  TEXT
);
INSERT INTO alert_cursor (name, position)
SELECT 'alerts', COALESCE(MAX(id), 0) FROM event_log;
