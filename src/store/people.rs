//! What sign-in keeps: people's credentials (password hash, TOTP, recovery codes), sessions,
//! failed sign-ins in a row, and one-time set-password links. Every change a person makes here
//! carries its audit entry (see `audit.rs`).

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::records::record;
use super::resources::{insert_statement, Record};
use super::{audit_in, on_pool, BeginWrite, Bind, Store, StoreError, StoreResult, User, Val};
use crate::domain::Timestamp;

/// A person as sign-in sees them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub password_hash: Option<String>,
    /// Sealed with the master key.
    pub totp_secret: Option<Vec<u8>>,
    pub totp_enabled: bool,
    /// The last time step whose code was accepted.
    pub totp_step: Option<i64>,
    /// SHA-256 of each unused recovery code.
    pub recovery_codes: Option<Json<Vec<String>>>,
    pub organisation: String,
    pub require_2fa: bool,
}

const CREDENTIALS: &str = "SELECT u.id, u.org_id, u.email, u.name, u.role, u.password_hash, \
     u.totp_secret, u.totp_enabled, u.totp_step, u.recovery_codes, o.name AS organisation, \
     o.require_2fa FROM users u JOIN organisations o ON o.id = u.org_id";

/// A signed-in browser.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: String,
    pub csrf_hash: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
}

record!(
    Session,
    "sessions",
    "session",
    shared = false,
    [
        id,
        org_id,
        user_id,
        token_hash,
        csrf_hash,
        ip,
        user_agent,
        created_at,
        last_seen_at,
        expires_at
    ]
);

/// A session with the person it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionIdentity {
    #[sqlx(flatten)]
    pub session: Session,
    pub name: String,
    pub role: String,
    /// The organisation requires 2FA and this person has not turned it on: only enrolment
    /// is open to them.
    pub must_enrol: bool,
}

/// What a sign-in proved beyond the password; each is used once, checked again as the session
/// is written.
#[derive(Debug, Clone)]
pub enum SecondFactor {
    None,
    /// A TOTP code of this time step (later than any accepted before).
    Totp(i64),
    /// A recovery code: the unused codes before, and after this one is struck out.
    Recovery {
        before: Vec<String>,
        after: Vec<String>,
    },
}

/// A one-time link to set a password.
#[derive(Debug, Clone)]
pub struct PasswordLink {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: String,
    /// `invite` or `reset`.
    pub purpose: &'static str,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl PasswordLink {
    fn insert(&self) -> (String, Vec<Val>) {
        (
            "INSERT INTO password_links (id, org_id, user_id, token_hash, purpose, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                .into(),
            vec![
                self.id.into(),
                self.org_id.into(),
                self.user_id.into(),
                self.token_hash.clone().into(),
                self.purpose.into(),
                self.created_at.into(),
                self.expires_at.into(),
            ],
        )
    }
}

/// Runs `statements` in one transaction with the audit entry `store` carries; fails with
/// `NotFound(what)` (and changes nothing) when a statement marked `true` changes no row.
macro_rules! write_all {
    ($store:expr, $what:expr, $statements:expr) => {{
        let statements: Vec<(String, Vec<Val>, bool)> = $statements;
        on_pool!($store, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for (sql, vals, must) in &statements {
                let n = sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?.rows_affected();
                if *must && n == 0 {
                    return Err(StoreError::NotFound($what));
                }
            }
            audit_in!($store, Db, tx);
            tx.commit().await?;
        });
    }};
}

impl Store {
    /// Everyone with this e-mail address (one per organisation at most), oldest first.
    pub async fn credentials_by_email(&self, email: &str) -> StoreResult<Vec<Credentials>> {
        let sql = format!("{CREDENTIALS} WHERE u.email = $1 ORDER BY u.id");
        Ok(on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Credentials>(&sql).bind(email).fetch_all(pool).await?
        }))
    }

    pub async fn credentials(&self, user: Uuid) -> StoreResult<Credentials> {
        let sql = format!("{CREDENTIALS} WHERE u.id = $1");
        let found = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Credentials>(&sql).bind(user).fetch_optional(pool).await?
        });
        found.ok_or(StoreError::NotFound("user"))
    }

    /// Failed sign-ins in a row of each key, in order: (failures, last failure), or `None` for
    /// a key with none.
    pub async fn sign_in_failures(
        &self,
        keys: &[String],
    ) -> StoreResult<Vec<Option<(i64, Timestamp)>>> {
        let mut out = Vec::new();
        for key in keys {
            let row = on_pool!(self, pool, Db => {
                sqlx::query_as::<Db, (i64, Timestamp)>(
                    "SELECT CAST(failures AS BIGINT), last_failed_at FROM sign_in_failures WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(pool)
                .await?
            });
            out.push(row);
        }
        Ok(out)
    }

    /// Counts a failed sign-in against each key; failures more than an hour old start over.
    pub async fn record_sign_in_failure(&self, keys: &[String], now: Timestamp) -> StoreResult<()> {
        let forgiven = Timestamp::from_datetime(now.0 - chrono::Duration::hours(1));
        for key in keys {
            on_pool!(self, pool, Db => {
                sqlx::query::<Db>(
                    "INSERT INTO sign_in_failures (key, failures, last_failed_at) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET last_failed_at = $2, failures = CASE \
                     WHEN sign_in_failures.last_failed_at < $3 THEN 1 \
                     ELSE sign_in_failures.failures + 1 END",
                )
                .bind(key)
                .bind(now)
                .bind(forgiven)
                .execute(pool)
                .await?;
            });
        }
        Ok(())
    }

    /// Starts a session: checks the second factor again as it is used (a TOTP step later than
    /// any before, the recovery codes unchanged since read), then writes the session and the
    /// sign-in's audit entry. False, with nothing written, when the factor was used meanwhile.
    pub async fn start_session(
        &self,
        session: &Session,
        factor: &SecondFactor,
        clear_failures: &str,
    ) -> StoreResult<bool> {
        let (insert, vals) = insert_statement(session);
        let user = session.user_id;
        let started = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let used = match factor {
                SecondFactor::None => 1,
                SecondFactor::Totp(step) => sqlx::query::<Db>(
                    "UPDATE users SET totp_step = $2 WHERE id = $1 \
                     AND (totp_step IS NULL OR totp_step < $2)",
                )
                .bind(user)
                .bind(*step)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                SecondFactor::Recovery { before, after } => sqlx::query::<Db>(
                    "UPDATE users SET recovery_codes = $3 WHERE id = $1 AND recovery_codes = $2",
                )
                .bind(user)
                .bind(Json(before))
                .bind(Json(after))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if used == 0 {
                false
            } else {
                sqlx::query::<Db>(&insert).bind_all(&vals).execute(&mut *tx).await?;
                sqlx::query::<Db>("DELETE FROM sign_in_failures WHERE key = $1")
                    .bind(clear_failures)
                    .execute(&mut *tx)
                    .await?;
                audit_in!(self, Db, tx);
                tx.commit().await?;
                true
            }
        });
        Ok(started)
    }

    /// The session whose cookie token has this hash, with its person.
    pub async fn session_identity(&self, token_hash: &str) -> StoreResult<Option<SessionIdentity>> {
        Ok(on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, SessionIdentity>(
                "SELECT s.*, u.name, u.role, \
                 CASE WHEN o.require_2fa AND NOT u.totp_enabled THEN TRUE ELSE FALSE END AS must_enrol \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 JOIN organisations o ON o.id = s.org_id WHERE s.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records a request on a session (its idle time starts again).
    pub async fn touch_session(&self, id: Uuid, at: Timestamp) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
                .bind(id)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes a session that has expired (no audit entry: nobody changed anything).
    pub async fn forget_session(&self, id: Uuid) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("DELETE FROM sessions WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// Ends session `id` of `user` (sign-out, or revoking one of one's sessions).
    pub async fn end_session(&self, user: Uuid, id: Uuid) -> StoreResult<()> {
        write_all!(
            self,
            "session",
            vec![(
                "DELETE FROM sessions WHERE id = $1 AND user_id = $2".into(),
                vec![id.into(), user.into()],
                true,
            )]
        );
        Ok(())
    }

    /// The sessions of `user` that have not expired by `now` (absolute or idle), newest first.
    pub async fn sessions_of(
        &self,
        user: Uuid,
        now: Timestamp,
        idle_since: Timestamp,
    ) -> StoreResult<Vec<Session>> {
        Ok(on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Session>(
                "SELECT * FROM sessions WHERE user_id = $1 AND expires_at > $2 \
                 AND last_seen_at > $3 ORDER BY id DESC LIMIT 200",
            )
            .bind(user)
            .bind(now)
            .bind(idle_since)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Sets a person's password; ends their other sessions (all, with no `keep`) and their
    /// unused links.
    pub async fn set_password(
        &self,
        user: Uuid,
        hash: &str,
        keep: Option<Uuid>,
        now: Timestamp,
    ) -> StoreResult<()> {
        write_all!(
            self,
            "user",
            vec![
                (
                    "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1".into(),
                    vec![user.into(), hash.into(), now.into()],
                    true,
                ),
                (
                    "DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)".into(),
                    vec![user.into(), keep.into()],
                    false,
                ),
                (
                    "DELETE FROM password_links WHERE user_id = $1".into(),
                    vec![user.into()],
                    false,
                ),
            ]
        );
        Ok(())
    }

    /// The person a link with this hash sets the password of, while it is valid at `now`.
    pub async fn link_owner(&self, token_hash: &str, now: Timestamp) -> StoreResult<Option<Uuid>> {
        Ok(on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>(
                "SELECT user_id FROM password_links WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Uses a link: sets the password of its person, ends their sessions, and removes their
    /// links, in one transaction; `NotFound` when the link was used or expired meanwhile.
    pub async fn use_link(
        &self,
        token_hash: &str,
        user: Uuid,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        write_all!(
            self,
            "link",
            vec![
                (
                    "DELETE FROM password_links WHERE token_hash = $1 AND user_id = $2 \
                     AND expires_at > $3"
                        .into(),
                    vec![token_hash.into(), user.into(), now.into()],
                    true,
                ),
                (
                    "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1".into(),
                    vec![user.into(), hash.into(), now.into()],
                    true,
                ),
                (
                    "DELETE FROM sessions WHERE user_id = $1".into(),
                    vec![user.into()],
                    false,
                ),
                (
                    "DELETE FROM password_links WHERE user_id = $1".into(),
                    vec![user.into()],
                    false,
                ),
            ]
        );
        Ok(())
    }

    /// Creates a person with an invitation link (and, with `password`, a password already).
    pub async fn create_user(
        &self,
        user: &User,
        link: Option<&PasswordLink>,
        password: Option<&str>,
    ) -> StoreResult<()> {
        let (sql, vals) = insert_statement(user);
        let mut statements = vec![(sql, vals, true)];
        if let Some(hash) = password {
            statements.push((
                "UPDATE users SET password_hash = $2 WHERE id = $1".into(),
                vec![user.id.into(), hash.into()],
                true,
            ));
        }
        if let Some(link) = link {
            let (sql, vals) = link.insert();
            statements.push((sql, vals, true));
        }
        write_all!(self, "user", statements);
        self.forget_config();
        Ok(())
    }

    /// A new reset link for `user` of `org`, replacing their unused ones.
    pub async fn replace_link(&self, link: &PasswordLink) -> StoreResult<()> {
        let (sql, vals) = link.insert();
        write_all!(
            self,
            "user",
            vec![
                (
                    "DELETE FROM password_links WHERE user_id = $1 AND org_id = $2".into(),
                    vec![link.user_id.into(), link.org_id.into()],
                    false,
                ),
                (sql, vals, true),
            ]
        );
        Ok(())
    }

    /// Keeps a new, unconfirmed TOTP secret for `user` (2FA is not on yet).
    pub async fn start_totp(&self, user: Uuid, sealed: Vec<u8>, now: Timestamp) -> StoreResult<()> {
        write_all!(
            self,
            "user",
            vec![(
                "UPDATE users SET totp_secret = $2, totp_enabled = $3, totp_step = NULL, \
                 recovery_codes = NULL, updated_at = $4 WHERE id = $1 AND totp_enabled = $3"
                    .into(),
                vec![user.into(), Val::Bytes(sealed), false.into(), now.into()],
                true,
            )]
        );
        Ok(())
    }

    /// Turns 2FA on with the code of `step` and these recovery-code hashes; `NotFound` unless
    /// an unconfirmed secret is waiting.
    pub async fn confirm_totp(
        &self,
        user: Uuid,
        step: i64,
        recovery: &[String],
        now: Timestamp,
    ) -> StoreResult<()> {
        write_all!(
            self,
            "TOTP enrolment",
            vec![(
                "UPDATE users SET totp_enabled = $2, totp_step = $3, recovery_codes = $4, \
                 updated_at = $5 WHERE id = $1 AND totp_enabled = $6 AND totp_secret IS NOT NULL"
                    .into(),
                vec![
                    user.into(),
                    true.into(),
                    step.into(),
                    Val::Json(Some(Value::from(recovery.to_vec()))),
                    now.into(),
                    false.into(),
                ],
                true,
            )]
        );
        Ok(())
    }

    /// Turns 2FA off for `user` of `org` (they enrol again at their next sign-in if their
    /// organisation requires it).
    pub async fn reset_totp(&self, org: Uuid, user: Uuid, now: Timestamp) -> StoreResult<()> {
        write_all!(
            self,
            "user",
            vec![(
                "UPDATE users SET totp_secret = NULL, totp_enabled = $3, totp_step = NULL, \
                 recovery_codes = NULL, updated_at = $4 WHERE id = $1 AND org_id = $2"
                    .into(),
                vec![user.into(), org.into(), false.into(), now.into()],
                true,
            )]
        );
        Ok(())
    }

    /// Sets whether members of `org` must use 2FA.
    pub async fn set_require_2fa(&self, org: Uuid, on: bool, now: Timestamp) -> StoreResult<()> {
        write_all!(
            self,
            "organisation",
            vec![(
                "UPDATE organisations SET require_2fa = $2, updated_at = $3 WHERE id = $1".into(),
                vec![org.into(), on.into(), now.into()],
                true,
            )]
        );
        Ok(())
    }
}
