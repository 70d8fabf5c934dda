//! Every difference between Postgres and SQLite the store relies on, named once with the
//! reason for it. Everything else is shared SQL (sqlx binds `$N` on both backends, and both
//! accept `INSERT … ON CONFLICT … DO UPDATE/NOTHING`, `UPDATE … RETURNING` and multi-row
//! `VALUES`), run through [`super::on_pool`].

use std::borrow::Cow;
use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

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

/// How long a connection waits between tries at SQLite's write lock while another connection
/// holds it (see [`short_busy_waits`]): first, and after a tenth of a second of waiting.
const BUSY_STEP: Duration = Duration::from_micros(250);
const BUSY_STEP_LATER: Duration = Duration::from_millis(1);
const BUSY_LATER_AFTER: Duration = Duration::from_millis(100);

/// A call of the busy handler this long after its last belongs to a new wait.
const BUSY_NEW_WAIT: Duration = Duration::from_millis(500);

thread_local! {
    /// When the current wait for the write lock began and when the handler was last called, on
    /// the connection's own thread (sqlx runs each SQLite connection on a thread of its own).
    static BUSY_WAIT: std::cell::Cell<Option<(Instant, Instant)>> = const { std::cell::Cell::new(None) };
}

/// Makes a SQLite connection wait for another's write lock in short steps, up to `timeout`.
/// SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25, 50 and then 100 ms
/// between tries, so a write that finds the lock taken waits for its next step rather than for
/// the lock: `strace` of the bench's low-load phase on a 300 MB database found writers asleep
/// in those steps (72 sleeps of 100 ms in 3 s) while answers took 36 ms at the median. This
/// handler tries again every quarter of a millisecond (every millisecond once it has waited a
/// tenth of a second) and gives up, as `busy_timeout` did, after `timeout`.
pub(in crate::store) fn short_busy_waits(
    db: std::ptr::NonNull<libsqlite3_sys::sqlite3>,
    timeout: Duration,
) {
    let micros = usize::try_from(timeout.as_micros()).unwrap_or(usize::MAX);
    // SAFETY: `db` is an open connection handle, locked away from sqlx's worker thread by the
    // caller for the length of this call. The callback is a plain function that never touches
    // the handle, and its argument is a number carried in the pointer, never dereferenced.
    unsafe {
        libsqlite3_sys::sqlite3_busy_handler(db.as_ptr(), Some(busy), micros as *mut c_void);
    }
}

/// SQLite's busy callback: `count` is how many times it was called in this wait; answers 1 to
/// try again, 0 to give up (the statement then fails with SQLITE_BUSY).
extern "C" fn busy(timeout_micros: *mut c_void, count: c_int) -> c_int {
    let now = Instant::now();
    let since = BUSY_WAIT.with(|w| {
        // A new wait: SQLite counts from 0 for each statement it runs, but a statement being
        // prepared may start at the count a previous wait left, so a long pause since the last
        // call also starts one.
        let since = match w.get() {
            Some((since, last)) if count > 0 && now.duration_since(last) < BUSY_NEW_WAIT => since,
            _ => now,
        };
        w.set(Some((since, now)));
        since
    });
    let waited = now.duration_since(since);
    if waited.as_micros() >= timeout_micros as usize as u128 {
        return 0;
    }
    std::thread::sleep(if waited < BUSY_LATER_AFTER {
        BUSY_STEP
    } else {
        BUSY_STEP_LATER
    });
    1
}

/// A statement's text as its backend is given it. SQLite reads `$N` as a *named* parameter:
/// its parser looks each name up among those seen before it (a linear search, string
/// compares), and sqlx asks SQLite for every parameter's name when binding (another linear
/// search), so a statement of n parameters costs O(n²). A multi-row insert of a few thousand
/// values spent more time there than in everything else (`perf`, ingest alone on SQLite: 54 %
/// of the server's samples in `sqlite3_bind_parameter_name` and `strncmp`). Anonymous `?`
/// parameters cost neither, so a statement whose placeholders are `$1`, `$2`, … in that order,
/// each once (as every multi-row statement the store builds has them), is given to SQLite with
/// `?`; any other is given as written. Postgres takes `$N` as it is.
pub(in crate::store) trait StatementText {
    /// Which backend this is, where a statement is built inside [`super::on_pool`].
    const BACKEND: Backend;
    fn text(sql: &str) -> Cow<'_, str>;
}

impl StatementText for Postgres {
    const BACKEND: Backend = Backend::Postgres;
    fn text(sql: &str) -> Cow<'_, str> {
        Cow::Borrowed(sql)
    }
}

impl StatementText for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    fn text(sql: &str) -> Cow<'_, str> {
        anonymous(sql).map_or(Cow::Borrowed(sql), Cow::Owned)
    }
}

/// `sql` with `$1`, `$2`, … written as `?`, when those are its placeholders in that order,
/// each once, and it has no `?`, comment or `$` within a name of its own; `None` otherwise.
/// Quoted text (`'…'`, `"…"`) is left alone.
fn anonymous(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut next, mut copied, mut i) = (1usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'?' => return None,
            // A comment could hide a quote or a placeholder: such text is given as written.
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            // `a$1` is a name, not a placeholder.
            b'$' if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') => {
                return None
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = (i + 1..bytes.len())
                    .find(|&j| !bytes[j].is_ascii_digit())
                    .unwrap_or(bytes.len());
                if sql[i + 1..end].parse::<usize>().ok()? != next {
                    return None;
                }
                next += 1;
                out.push_str(&sql[copied..i]);
                out.push('?');
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    if next == 1 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_order_each_once_become_anonymous_for_sqlite() {
        assert_eq!(
            Sqlite::text("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            Sqlite::text("UPDATE t SET a = v.c1 FROM (VALUES ($1, $2), ($3, $4)) AS v(c1, c2)"),
            "UPDATE t SET a = v.c1 FROM (VALUES (?, ?), (?, ?)) AS v(c1, c2)"
        );
        // Quoted text is not a placeholder.
        assert_eq!(
            Sqlite::text("SELECT '$2', \"$9\", json_extract(x, '$.a') FROM t WHERE a = $1"),
            "SELECT '$2', \"$9\", json_extract(x, '$.a') FROM t WHERE a = ?"
        );
        assert_eq!(Sqlite::text("SELECT $10"), "SELECT $10");
    }

    #[test]
    fn other_statements_are_given_as_written() {
        for sql in [
            "SELECT 1",
            "UPDATE t SET a = $2 WHERE id = $1",
            "UPDATE t SET a = $1 WHERE b = $1",
            "SELECT $1, ?",
            "SELECT $1, $3",
            "SELECT $1 -- it's $2",
            "SELECT $1 /* $2 */",
            "SELECT a$1 FROM t WHERE b = $1",
        ] {
            assert!(
                matches!(Sqlite::text(sql), Cow::Borrowed(s) if s == sql),
                "{sql}"
            );
        }
        let sql = "INSERT INTO t VALUES ($1, $2)";
        assert!(matches!(Postgres::text(sql), Cow::Borrowed(s) if s == sql));
    }
}
