-- People sign in: a password (argon2id, PHC string), optional TOTP (the secret sealed like key
-- secrets; `totp_step` is the last time step accepted, so a code works once), and hashed
-- one-time recovery codes.
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN totp_secret BLOB;
ALTER TABLE users ADD COLUMN totp_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_step INTEGER;
ALTER TABLE users ADD COLUMN recovery_codes TEXT;
ALTER TABLE organisations ADD COLUMN require_2fa INTEGER NOT NULL DEFAULT 0;

-- A signed-in browser. Only the SHA-256 of the cookie's token and of the CSRF token are kept.
CREATE TABLE sessions (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id       BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    text NOT NULL UNIQUE,
    csrf_hash     text NOT NULL,
    ip            text,
    user_agent    text,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, id);

-- Failed sign-ins in a row, per e-mail address (known or not) and per client address.
CREATE TABLE sign_in_failures (
    key             text PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failed_at  TEXT NOT NULL
);

-- One-time links to set a password: an invitation, or a reset by an owner.
CREATE TABLE password_links (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  text NOT NULL UNIQUE,
    purpose     text NOT NULL CHECK (purpose IN ('invite','reset')),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX password_links_user ON password_links (user_id);

-- Every change made through the API, written in the change's transaction. Append-only: nothing
-- updates a row, and only retention deletes (after `audit_days`).
CREATE TABLE audit_log (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    at           TEXT NOT NULL,
    actor_type   text NOT NULL CHECK (actor_type IN ('user','token')),
    actor_id     BLOB NOT NULL,
    actor_name   text NOT NULL,
    action       text NOT NULL,
    object_type  text NOT NULL,
    object_id    BLOB,
    changes      TEXT NOT NULL,
    ip           text,
    request_id   text
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
