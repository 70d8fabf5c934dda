//! Every difference between Postgres and SQLite the store relies on, named once with the
//! reason for it. Everything else is shared SQL (sqlx binds `$N` on both backends, and both
//! accept `INSERT … ON CONFLICT … DO UPDATE/NOTHING`, `UPDATE … RETURNING` and multi-row
//! `VALUES`), run through [`super::on_pool`].

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

use super::Backend;

impl Backend {
    /// What a claim's inner `SELECT` appends so concurrent workers split the due rows instead
    /// of queueing behind each other. Postgres: `FOR UPDATE SKIP LOCKED` skips rows another
    /// transaction holds. SQLite has neither the clause nor the need: one writer at a time,
    /// so a claim never sees a row another claim is taking.
    pub(in crate::store) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The statement that wakes other nodes' workers when work is queued, delivered at commit.
    /// Postgres: `pg_notify`. SQLite serves one node, whose workers are woken in process.
    pub(in crate::store) fn notify_work(self) -> Option<&'static str> {
        match self {
            Backend::Postgres => Some("SELECT pg_notify('wharf_work', '')"),
            Backend::Sqlite => None,
        }
    }

    /// Milliseconds from `a` to `b` (two timestamp columns), as a float. Postgres subtracts
    /// timestamps into an interval; SQLite stores them as text, read by `julianday` (days).
    pub(in crate::store) fn millis_between(self, a: &str, b: &str) -> String {
        match self {
            // date_part is double precision: EXTRACT would compute in numeric, several times
            // slower over a million rows.
            Backend::Postgres => {
                format!("((date_part('epoch', {b}) - date_part('epoch', {a})) * 1000)")
            }
            Backend::Sqlite => format!("((julianday({b}) - julianday({a})) * 86400000.0)"),
        }
    }

    /// What a subquery ends with so the planner computes it as written instead of merging it
    /// into the outer query (which would compute its expressions again for every use, and
    /// misjudge how many groups they make). Postgres: `OFFSET 0`; SQLite takes an offset only
    /// after a limit, and -1 is none.
    pub(in crate::store) fn as_written(self) -> &'static str {
        match self {
            Backend::Postgres => "OFFSET 0",
            Backend::Sqlite => "LIMIT -1 OFFSET 0",
        }
    }

    /// The condition on an event-log row that a reader may read it now (see
    /// `migrations/postgres/0012_log_horizon.sql`). Postgres: its horizon is at most the oldest
    /// transaction still running, so no row can commit behind it later. SQLite commits one
    /// writer at a time, so every row it can see is readable.
    pub(in crate::store) fn log_readable(self) -> &'static str {
        match self {
            Backend::Postgres => "horizon <= pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            Backend::Sqlite => "1 = 1",
        }
    }

    /// How many group-commit writers to run (see `writer`): on Postgres one gathers and builds
    /// its batch while another commits; SQLite has one writer at a time anyway.
    pub(in crate::store) fn commit_writers(self) -> usize {
        match self {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        }
    }
}

/// Opens a transaction that will write. SQLite's plain `BEGIN` is deferred: a transaction that
/// reads and then writes fails at once with SQLITE_BUSY, without waiting out the busy timeout,
/// when another connection committed in between (the engine and the API write concurrently), and
/// that would reach a client as "storage unavailable". `BEGIN IMMEDIATE` takes the write lock
/// first, waiting for it within the busy timeout. Postgres needs nothing special.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}
