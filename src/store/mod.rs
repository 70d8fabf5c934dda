//! The one store interface, over Postgres or SQLite.
//!
//! Both backends run the same SQL where the dialects agree (sqlx binds `$N` on both), through
//! [`on_pool!`], which expands a block once per backend with `$db` naming the sqlx database.
//! Where they differ, `dialect.rs` names each difference once, with why. Records decode from
//! either backend's rows.

mod actions;
mod aggregates;
mod alerts;
mod audit;
mod batch;
mod cache;
mod columns;
mod dialect;
mod events;
mod handoff;
mod history;
mod ingest;
mod jobs;
mod json_text;
mod listing;
mod nul;
mod people;
mod push;
mod queue;
mod records;
mod reports;
mod resources;
mod retention;
mod schedules;
mod tenancy;
mod wake;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{Database, PgPool, Postgres, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{EventStatus, JobStatus, Timestamp};

pub use actions::Aborted;
pub use alerts::{AlertWrites, StreamBrief, StreamOutcome, StreamStuck};
pub(crate) use audit::audit_in;
pub use audit::{AuditEntry, AuditSlot};
pub use cache::FRESH;
pub(crate) use dialect::BeginWrite;
pub(in crate::store) use dialect::StatementText;
pub use events::{AbortScope, NewEvent, Payload};
pub use handoff::{Handed, Handoff, Placed, Spilled};
pub use jobs::NewJob;
pub use json_text::{JsonText, StoredJson};
pub use listing::{message_contains, payload_contains};
pub use nul::{printable, printable_ref};
pub use people::{Credentials, PasswordLink, SecondFactor, Session, SessionIdentity};
pub use push::{IngestJob, Ingested};
pub use queue::{Completion, Delivery, EventChange, NewAttempt, SourceCursor, SourceRead};
pub use records::*;
pub use reports::{EventCount, JobCount, MetricFigures, DELIVERY_BUCKETS_MS};
pub use resources::{Cursor, ListPage, ListQuery, Record};
pub use retention::Step as RetentionStep;
pub use tenancy::{Bootstrap, TokenIdentity};
pub use writer::CommitGate;

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone, Debug)]
enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// What every handle of this store shares: group-commit queues, cached configuration.
    shared: std::sync::Arc<Shared>,
    /// The audit entry of the request this handle writes for (see [`Store::audited`]).
    audit: Option<std::sync::Arc<AuditSlot>>,
}

/// The Postgres channel on which nodes tell each other's workers that work was queued
/// (`Store::notify_work` sends, the engine's listener hears).
pub const WORK_CHANNEL: &str = "wharf_work";

#[derive(Debug, Default)]
struct Shared {
    pushes: writer::Queue<push::Push>,
    changes: writer::Queue<queue::Planned>,
    /// The group-commit writers' own connections (Postgres), closed with the store.
    writer_pools: std::sync::Mutex<Vec<PgPool>>,
    cache: cache::Cache,
    /// Where received events go when this process runs workers.
    handoff: std::sync::RwLock<Option<std::sync::Arc<Handoff>>>,
    /// The last reachability probe: when, and whether the database answered.
    probed: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Wakes other nodes' workers once work has committed (Postgres).
    waker: Option<std::sync::Arc<wake::Waker>>,
}

/// What went wrong in the store, in terms the API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A delete refused because other records still refer to this one.
    #[error("{0}")]
    InUse(String),
    /// A unique constraint refused the write.
    #[error("{0}")]
    Duplicate(String),
    /// The database refused a value the client sent (Postgres cannot store U+0000 in text, or
    /// in settings, which are `jsonb`).
    #[error("{0}")]
    Invalid(String),
    /// The database could not be reached or no connection was free in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("record"),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // The connection broke mid-conversation (a proxy in between closed it, the server
            // went away while answering): what came back was not the protocol.
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                use sqlx::error::ErrorKind;
                match db.kind() {
                    ErrorKind::ForeignKeyViolation => StoreError::InUse(
                        "it is still used by other objects (a stream, or a source or destination \
                         using this key); change or delete those first"
                            .into(),
                    ),
                    ErrorKind::UniqueViolation => StoreError::Duplicate(
                        "an object with the same unique name already exists".into(),
                    ),
                    // Postgres: untranslatable character (\u0000 in `jsonb`), or a NUL byte
                    // in text.
                    _ if matches!(db.code().as_deref(), Some("22P05" | "22021")) => {
                        StoreError::Invalid(
                            "The data contains the character U+0000 (\\u0000), which Postgres \
                             cannot store in text or in settings; nothing was stored. Remove it \
                             and send again."
                                .into(),
                        )
                    }
                    // Postgres: connection failures, the server shutting down, too many
                    // connections, or the database gone.
                    // Class 53 is insufficient resources: a full disk (53100), memory,
                    // too many connections (53300).
                    _ if db.code().is_some_and(|c| {
                        c.starts_with("08")
                            || c.starts_with("57P")
                            || c.starts_with("53")
                            || c.as_ref() == "3D000"
                    }) =>
                    {
                        StoreError::Unavailable(e.to_string())
                    }
                    // SQLite: the database stayed locked past the busy timeout (5, 6), the
                    // disk is full (13), or reading or writing the file failed (10 and its
                    // extended codes): nothing was stored, and it may work later.
                    _ if db
                        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                        .and_then(sqlx::error::DatabaseError::code)
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13)) =>
                    {
                        StoreError::Unavailable(e.to_string())
                    }
                    _ => StoreError::Other(e.into()),
                }
            }
            _ => StoreError::Other(e.into()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Runs `$body` against whichever pool the store holds, with `$pool` bound to it and `$db`
/// naming its sqlx database type.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Pg($pool) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Postgres;
                $body
            }
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Sqlite;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// A value bound into a generic query.
#[derive(Debug, Clone)]
pub enum Val {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Bool(bool),
    Int(Option<i64>),
    Json(Option<serde_json::Value>),
    /// JSON serialised already (see [`JsonText`]).
    JsonText(Option<JsonText>),
    Ts(Option<Timestamp>),
    Bytes(Vec<u8>),
    /// A column of a batch's rows, as a Postgres array (see `columns`).
    Column(columns::Column),
}

impl From<Uuid> for Val {
    fn from(v: Uuid) -> Self {
        Val::Uuid(Some(v))
    }
}
impl From<Option<Uuid>> for Val {
    fn from(v: Option<Uuid>) -> Self {
        Val::Uuid(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::Text(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Json<serde_json::Value>> for Val {
    fn from(v: Json<serde_json::Value>) -> Self {
        Val::Json(Some(v.0))
    }
}
impl From<Option<Json<serde_json::Value>>> for Val {
    fn from(v: Option<Json<serde_json::Value>>) -> Self {
        Val::Json(v.map(|j| j.0))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<Timestamp> for Val {
    fn from(v: Timestamp) -> Self {
        Val::Ts(Some(v))
    }
}
impl From<Option<Timestamp>> for Val {
    fn from(v: Option<Timestamp>) -> Self {
        Val::Ts(v)
    }
}
impl From<JobStatus> for Val {
    fn from(v: JobStatus) -> Self {
        Val::from(v.as_str())
    }
}
impl From<EventStatus> for Val {
    fn from(v: EventStatus) -> Self {
        Val::from(v.as_str())
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Bytes(v)
    }
}

/// Binding of [`Val`]s into sqlx queries of either backend, by reference: a payload is
/// serialized straight from the statement's values, never copied first.
pub trait Bind<'q>: Sized {
    fn bind_val(self, v: &'q Val) -> Self;
    fn bind_all(mut self, vals: &'q [Val]) -> Self {
        for v in vals {
            self = self.bind_val(v);
        }
        self
    }
}

macro_rules! bind_match {
    ($q:expr, $v:expr) => {
        match $v {
            Val::Uuid(x) => $q.bind(*x),
            Val::Text(x) => $q.bind(x.as_deref()),
            Val::Bool(x) => $q.bind(*x),
            Val::Int(x) => $q.bind(*x),
            Val::Json(x) => $q.bind(x.as_ref().map(Json)),
            Val::JsonText(x) => $q.bind(x.as_ref()),
            Val::Ts(x) => $q.bind(*x),
            Val::Bytes(x) => $q.bind(x.as_slice()),
            Val::Column(x) => $q.bind(x),
        }
    };
}

macro_rules! impl_bind {
    ($db:ty) => {
        impl<'q, O> Bind<'q>
            for sqlx::query::QueryAs<'q, $db, O, <$db as Database>::Arguments<'q>>
        {
            fn bind_val(self, v: &'q Val) -> Self {
                bind_match!(self, v)
            }
        }
        impl<'q> Bind<'q> for sqlx::query::Query<'q, $db, <$db as Database>::Arguments<'q>> {
            fn bind_val(self, v: &'q Val) -> Self {
                bind_match!(self, v)
            }
        }
        impl<'q, O> Bind<'q>
            for sqlx::query::QueryScalar<'q, $db, O, <$db as Database>::Arguments<'q>>
        {
            fn bind_val(self, v: &'q Val) -> Self {
                bind_match!(self, v)
            }
        }
    };
}
impl_bind!(Postgres);
impl_bind!(Sqlite);

/// Whether to reach the Postgres server of `url` (on `host`, or over a Unix `socket`) with
/// TLS as sqlx decides (its default, `prefer`: TLS when the server offers it), or without. A
/// server on this host, reached over loopback or a Unix socket, is reached without TLS unless
/// the URL or the environment say anything about TLS (`sslmode`, a certificate or key: any
/// `ssl…` option in the URL, or a non-empty `PGSSL…` variable in `env`) — encrypting every
/// query there protects nothing and cost about 4 % of the server's CPU and 5 % of Postgres's
/// in the bench.
fn tls_wanted(url: &str, host: &str, socket: bool, env: &[(String, String)]) -> bool {
    let url_says = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.get(..3).is_some_and(|k| k.eq_ignore_ascii_case("ssl")))
    });
    let env_says = env
        .iter()
        .any(|(k, v)| k.starts_with("PGSSL") && !v.trim().is_empty());
    let local = socket
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback());
    url_says || env_says || !local
}

/// How long [`Store::reachable`] waits for a fresh connection.
const PROBE_WITHIN: Duration = Duration::from_millis(800);

impl Store {
    /// Connects to the configured database (creating the SQLite file and data directory if
    /// needed) and applies migrations.
    pub async fn connect(config: &Config) -> anyhow::Result<Store> {
        let url = config.effective_database_url();
        let acquire = Duration::from_secs(config.database.acquire_timeout_seconds);
        let store = if url.starts_with("postgres") {
            let mut opts = PgConnectOptions::from_str(&url)?.application_name("wharf");
            // (`vars()` would panic on a variable that is not Unicode: only PGSSL… ones count.)
            let env: Vec<(String, String)> = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into())))
                .filter(|(k, _)| k.starts_with("PGSSL"))
                .collect();
            if !tls_wanted(&url, opts.get_host(), opts.get_socket().is_some(), &env) {
                tracing::info!(
                    "Postgres on this host: connecting without TLS (an sslmode in the URL \
                     changes that)"
                );
                opts = opts.ssl_mode(sqlx::postgres::PgSslMode::Disable);
            }
            let pool = PgPoolOptions::new()
                .max_connections(config.database.max_connections)
                .acquire_timeout(acquire)
                // As for SQLite below: never reuse a connection left inside a transaction.
                .before_acquire(|conn, _| {
                    Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                })
                .connect_with(opts)
                .await?;
            let shared = Shared {
                waker: Some(wake::Waker::start(&pool)),
                ..Default::default()
            };
            Store {
                pool: Pool::Pg(pool),
                shared: std::sync::Arc::new(shared),
                audit: None,
            }
        } else {
            let opts = SqliteConnectOptions::from_str(&url)?;
            if let Some(parent) = Path::new(opts.get_filename()).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a 2xx promises the data survives a power cut, not only a crash.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(acquire);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.database.max_connections)
                .acquire_timeout(acquire)
                // A connection whose COMMIT failed (the disk full) can stay counted as in a
                // transaction SQLite already rolled back, and would refuse every later BEGIN:
                // it is closed instead of being used again. (Checked on acquire, not on
                // release: a dropped transaction's ROLLBACK is flushed after release.)
                .before_acquire(|conn, _| {
                    Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                })
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        let mut handle = conn.lock_handle().await?;
                        dialect::short_busy_waits(handle.as_raw_handle(), acquire);
                        Ok(())
                    })
                })
                .connect_with(opts)
                .await?;
            Store {
                pool: Pool::Sqlite(pool),
                shared: Default::default(),
                audit: None,
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Hands the events of pushes received from now on to this process's workers (see
    /// [`Handoff`]), or, with `None`, stops doing so.
    pub fn set_handoff(&self, handoff: Option<std::sync::Arc<Handoff>>) {
        *self
            .shared
            .handoff
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handoff;
    }

    /// A connection of its own for `LISTEN` (not one of the pool's), made with the pool's
    /// options (Postgres only).
    pub async fn listener(&self) -> Option<Result<sqlx::postgres::PgListener, sqlx::Error>> {
        let Pool::Pg(pool) = &self.pool else {
            return None;
        };
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*pool.connect_options()).clone());
        Some(sqlx::postgres::PgListener::connect_with(&own).await)
    }

    /// Where this process's received events went (see [`Placed`]), while its
    /// workers take events handed over.
    pub fn handoff_placed(&self) -> Option<Placed> {
        self.handoff().map(|h| h.placed())
    }

    fn handoff(&self) -> Option<std::sync::Arc<Handoff>> {
        self.shared
            .handoff
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Pg(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations (idempotent; several nodes may race, sqlx locks).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Pg(p) => PG_MIGRATOR.run(p).await?,
            Pool::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            sqlx::query::<Db>("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Whether the database can be reached now: on Postgres, a fresh connection outside the
    /// pool, made within [`PROBE_WITHIN`] (a pool's connection wait retries a refused
    /// connection until its timeout; this does not), its answer shared by every caller for a
    /// second so a crowd of waiting requests makes one probe. SQLite is a file: always
    /// reachable.
    pub async fn reachable(&self) -> bool {
        let Pool::Pg(pool) = &self.pool else {
            return true;
        };
        let mut probed = self.shared.probed.lock().await;
        if let Some((at, ok)) = *probed {
            if at.elapsed() < Duration::from_secs(1) {
                return ok;
            }
        }
        use sqlx::Connection;
        let options = pool.connect_options();
        let ok =
            match tokio::time::timeout(PROBE_WITHIN, sqlx::PgConnection::connect_with(&options))
                .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    true
                }
                // The server answered but has no slot free: it is there, and the pool's own
                // connections may serve.
                Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("53300") => true,
                // Refused, dropped, no answer in time, or an answer that says the database
                // cannot be used (it is gone, the login is refused).
                _ => false,
            };
        let was = probed.is_none_or(|(_, was)| was);
        if ok && !was {
            tracing::info!("the database can be reached again");
        } else if !ok && was {
            tracing::warn!("the database cannot be reached; pushes waiting on it are answered 503");
        }
        *probed = Some((std::time::Instant::now(), ok));
        ok
    }

    /// Closes every connection of the store: the main pool's and the group-commit writers'.
    pub async fn close(&self) {
        on_pool!(self, pool, Db => close_pool(pool).await);
        // Taken after the main pool is closed: a writers' queue started from now on gets the
        // closed main pool (see `writer::start`), so every pool of theirs is in this list.
        let writers = self
            .shared
            .writer_pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for pool in writers {
            close_pool(&pool).await;
        }
        if let Some(waker) = &self.shared.waker {
            close_pool(waker.pool()).await;
        }
    }
}

/// Closes `pool` and every connection of it. sqlx's `close()` can return while a connection
/// used just before is still on its way back (a returning connection is a task of its own):
/// it then lands among the idle connections of the closed pool and stays open as long as the
/// pool lives (sqlx issue 3217; seen here: the connection of the last statement, idle, seconds
/// after `close()` returned). Closing again takes it; a second at most is spent waiting for it.
pub(in crate::store) async fn close_pool<DB: Database>(pool: &sqlx::Pool<DB>) {
    pool.close().await;
    for _ in 0..100 {
        if pool.size() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        pool.close().await;
    }
    tracing::warn!(
        connections = pool.size(),
        "the store closed with connections still out; each closes when it comes back"
    );
}

#[cfg(test)]
mod tests {
    use crate::domain::{EventStatus, JobStatus};

    #[test]
    fn a_server_on_this_host_is_reached_without_tls_unless_asked() {
        use super::tls_wanted;
        let local = "postgres://wharf@127.0.0.1:5432/wharf";
        let none: &[(String, String)] = &[];
        for host in [
            "127.0.0.1",
            "127.8.0.2",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "/run/postgresql",
        ] {
            assert!(!tls_wanted(local, host, false, none), "{host}");
        }
        // A Unix socket named in the query, whatever the URL's host.
        let socket = "postgres://wharf@db.example.com/wharf?host=/run/postgresql";
        assert!(!tls_wanted(socket, "db.example.com", true, none));
        for host in ["db.example.com", "10.0.0.5", "192.168.1.2", "fd00::1"] {
            assert!(
                tls_wanted("postgres://wharf@db/wharf", host, false, none),
                "{host}"
            );
        }
        // Anything said about TLS in the URL or the environment: as said, on loopback too.
        for url in [
            "postgres://wharf@127.0.0.1/wharf?sslmode=require",
            "postgres://wharf@127.0.0.1/wharf?application_name=x&sslmode=prefer",
            "postgres://wharf@127.0.0.1/wharf?ssl-mode=verify-full",
            "postgres://wharf@127.0.0.1/wharf?SSLMODE=require",
            "postgres://wharf@127.0.0.1/wharf?sslcert=/c.pem&sslkey=/k.pem",
        ] {
            assert!(tls_wanted(url, "127.0.0.1", false, none), "{url}");
        }
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(tls_wanted(
            local,
            "127.0.0.1",
            false,
            &env("PGSSLMODE", "require")
        ));
        assert!(tls_wanted(
            local,
            "127.0.0.1",
            false,
            &env("PGSSLROOTCERT", "/ca.pem")
        ));
        // Set but empty, as libpq reads it: not said.
        assert!(!tls_wanted(
            local,
            "127.0.0.1",
            false,
            &env("PGSSLMODE", "")
        ));
        assert!(!tls_wanted(local, "127.0.0.1", false, &env("PGHOST", "x")));
    }

    /// Statuses reach SQL only through the domain's tables (`batch::sql_in`), never spelled
    /// by hand, so a status the domain does not allow cannot be written by a query.
    #[test]
    fn no_status_is_spelled_in_sql() {
        let files = [
            ("aggregates.rs", include_str!("aggregates.rs")),
            ("batch.rs", include_str!("batch.rs")),
            ("events.rs", include_str!("events.rs")),
            ("history.rs", include_str!("history.rs")),
            ("jobs.rs", include_str!("jobs.rs")),
            ("push.rs", include_str!("push.rs")),
            ("queue/mod.rs", include_str!("queue/mod.rs")),
            ("queue/change.rs", include_str!("queue/change.rs")),
            ("schedules.rs", include_str!("schedules.rs")),
            ("resources.rs", include_str!("resources.rs")),
            ("tenancy.rs", include_str!("tenancy.rs")),
            ("ingest.rs", include_str!("ingest.rs")),
        ];
        let names = EventStatus::ALL
            .map(EventStatus::as_str)
            .into_iter()
            .chain(JobStatus::ALL.map(JobStatus::as_str));
        for name in names {
            let quoted = format!("'{name}'");
            for (file, text) in files {
                assert!(!text.contains(&quoted), "{file} spells {quoted} in SQL");
            }
        }
    }
}
