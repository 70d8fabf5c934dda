-- People sign in: a password (argon2id, PHC string), optional TOTP (the secret sealed like key
-- secrets; `totp_step` is the last time step accepted, so a code works once), and hashed
-- one-time recovery codes.
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN totp_secret bytea;
ALTER TABLE users ADD COLUMN totp_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN totp_step bigint;
ALTER TABLE users ADD COLUMN recovery_codes jsonb;
ALTER TABLE organisations ADD COLUMN require_2fa boolean NOT NULL DEFAULT false;

-- A signed-in browser. Only the SHA-256 of the cookie's token and of the CSRF token are kept.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    text NOT NULL UNIQUE,
    csrf_hash     text NOT NULL,
    ip            text,
    user_agent    text,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, id);

-- Failed sign-ins in a row, per e-mail address (known or not) and per client address.
CREATE TABLE sign_in_failures (
    key             text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failed_at  timestamptz NOT NULL
);

-- One-time links to set a password: an invitation, or a reset by an owner.
CREATE TABLE password_links (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    purpose     text NOT NULL CHECK (purpose IN ('invite','reset')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX password_links_user ON password_links (user_id);

-- Every change made through the API, written in the change's transaction. Append-only: nothing
-- updates a row, and only retention deletes (after `audit_days`).
CREATE TABLE audit_log (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    at           timestamptz NOT NULL,
    actor_type   text NOT NULL CHECK (actor_type IN ('user','token')),
    actor_id     uuid NOT NULL,
    actor_name   text NOT NULL,
    action       text NOT NULL,
    object_type  text NOT NULL,
    object_id    uuid,
    changes      jsonb NOT NULL,
    ip           text,
    request_id   text
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
