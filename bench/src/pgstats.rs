//! What Postgres did for the orders of a phase: row writes, dead rows and WAL bytes, from its
//! statistics views; what its connections waited on; and the server set for the run as
//! production runs it (autovacuum on, WAL files kept for a burst).

use sqlx::{Connection, Executor, PgConnection};

/// Counters of the bench database (`pg_stat_user_tables`) and of the server (`pg_stat_wal`).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub inserted: i64,
    pub updated: i64,
    pub hot_updated: i64,
    pub deleted: i64,
    pub wal_bytes: i64,
    /// Whole pages written to the WAL (`pg_stat_wal.wal_fpi`): each page's first change after
    /// a checkpoint writes all of it.
    pub wal_fpi: i64,
    /// Per table: inserts, updates, HOT updates, deletes.
    pub tables: std::collections::BTreeMap<String, [i64; 4]>,
}

/// Reads the counters. Backends publish their statistics when they go idle, at most about every
/// ten seconds (`PGSTAT_IDLE_INTERVAL`): wait that long after the work before reading.
pub async fn counters(url: &str) -> anyhow::Result<Counters> {
    let mut conn = PgConnection::connect(url).await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
         FROM pg_stat_user_tables",
    )
    .fetch_all(&mut conn)
    .await?;
    let tables: std::collections::BTreeMap<String, [i64; 4]> = rows
        .into_iter()
        .map(|(name, i, u, h, d)| (name, [i, u, h, d]))
        .collect();
    let sum = |k: usize| tables.values().map(|t| t[k]).sum::<i64>();
    let (inserted, updated, hot_updated, deleted) = (sum(0), sum(1), sum(2), sum(3));
    let (wal_bytes, wal_fpi): (i64, i64) =
        sqlx::query_as("SELECT wal_bytes::bigint, wal_fpi FROM pg_stat_wal")
            .fetch_one(&mut conn)
            .await?;
    Ok(Counters {
        inserted,
        updated,
        hot_updated,
        deleted,
        wal_bytes,
        wal_fpi,
        tables,
    })
}

/// Per order between two readings: row writes (inserts, updates, deletes), dead rows left (each
/// update or delete leaves the old row version for vacuum or pruning), the share of updates that
/// were HOT (no index touched), WAL bytes and whole pages written to the WAL (server-wide: other
/// databases' work counts too);
/// and per table with any writes, the inserts, updates (HOT ones among them) and deletes per
/// order, to show where the writes go.
pub fn per_order(before: &Counters, after: &Counters, orders: u64) -> serde_json::Value {
    let n = orders.max(1) as f64;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let updated = after.updated - before.updated;
    let deleted = after.deleted - before.deleted;
    let inserted = after.inserted - before.inserted;
    let hot = after.hot_updated - before.hot_updated;
    let mut per_table = serde_json::Map::new();
    for (name, now) in &after.tables {
        let was = before.tables.get(name).copied().unwrap_or_default();
        let d: Vec<f64> = (0..4)
            .map(|k| round((now[k] - was[k]) as f64 / n))
            .collect();
        if d.iter().any(|v| *v != 0.0) {
            per_table.insert(
                name.clone(),
                serde_json::json!({"inserts": d[0], "updates": d[1], "hot_updates": d[2],
                    "deletes": d[3]}),
            );
        }
    }
    serde_json::json!({
        "row_writes_per_order": round((inserted + updated + deleted) as f64 / n),
        "inserts_per_order": round(inserted as f64 / n),
        "updates_per_order": round(updated as f64 / n),
        "deletes_per_order": round(deleted as f64 / n),
        "dead_rows_per_order": round((updated + deleted) as f64 / n),
        "hot_update_share": round(if updated > 0 { hot as f64 / updated as f64 } else { 0.0 }),
        "wal_bytes_per_order": ((after.wal_bytes - before.wal_bytes) as f64 / n).round(),
        "wal_full_pages_per_order": round((after.wal_fpi - before.wal_fpi) as f64 / n),
        "per_table": per_table,
    })
}

/// Server settings changed for the run (`ALTER SYSTEM`), to put back afterwards.
pub struct RunSettings {
    url: String,
    /// Each changed setting and how to put it back: its earlier value when that came from
    /// `ALTER SYSTEM` too, `None` to reset it to the configuration files' value.
    changed: Vec<(&'static str, Option<String>)>,
}

impl RunSettings {
    pub fn new(url: &str) -> RunSettings {
        RunSettings {
            url: url.to_string(),
            changed: Vec::new(),
        }
    }

    /// Sets `name` to `value` for the whole server, unless the current value does as well.
    pub async fn set(&mut self, name: &'static str, value: &str, keep: Keep) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let (now, source, file): (String, String, Option<String>) = sqlx::query_as(
            "SELECT current_setting($1), source, sourcefile FROM pg_settings WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
        let enough = match keep {
            Keep::Same => now == value,
            Keep::AtLeast => {
                sqlx::query_scalar("SELECT pg_size_bytes($1) >= pg_size_bytes($2)")
                    .bind(&now)
                    .bind(value)
                    .fetch_one(&mut conn)
                    .await?
            }
        };
        if enough {
            return Ok(());
        }
        let value = value.replace('\'', "''");
        let by_alter_system = source == "configuration file"
            && file.is_some_and(|f| f.ends_with("postgresql.auto.conf"));
        conn.execute(format!("ALTER SYSTEM SET {name} = '{value}'").as_str())
            .await?;
        conn.execute("SELECT pg_reload_conf()").await?;
        eprintln!("{name} was {now}: {value} for this run");
        self.changed
            .push((name, by_alter_system.then(|| now.replace('\'', "''"))));
        Ok(())
    }

    pub async fn restore(self) -> anyhow::Result<()> {
        if self.changed.is_empty() {
            return Ok(());
        }
        let mut conn = PgConnection::connect(&self.url).await?;
        for (name, was) in &self.changed {
            let sql = match was {
                Some(v) => format!("ALTER SYSTEM SET {name} = '{v}'"),
                None => format!("ALTER SYSTEM RESET {name}"),
            };
            conn.execute(sql.as_str()).await?;
            eprintln!("{name} setting restored");
        }
        conn.execute("SELECT pg_reload_conf()").await?;
        Ok(())
    }
}

/// When a setting's current value does as well as the one asked for.
pub enum Keep {
    /// Only the same value.
    Same,
    /// A size at least as large (`1GB` keeps `2GB`).
    AtLeast,
}

/// What the connections to a database were doing while a phase ran, sampled from
/// `pg_stat_activity` every [`WAIT_SAMPLE`]: per state, the average number of connections in it
/// (`CPU` running, `Client:ClientRead (in transaction)` waiting for the server's next statement
/// inside a transaction, `IO:WALSync` flushing a commit, `IO:WALInitWrite` creating a WAL
/// file, `Lock:…` waiting for another transaction, `autovacuum worker …` vacuuming). Idle
/// connections are not counted.
pub struct Waits {
    stop: tokio::sync::oneshot::Sender<()>,
    sampling:
        tokio::task::JoinHandle<anyhow::Result<(u64, std::collections::BTreeMap<String, u64>)>>,
}

/// How often [`Waits`] samples.
pub const WAIT_SAMPLE: std::time::Duration = std::time::Duration::from_millis(20);

impl Waits {
    /// Connects now and samples from `after` on (a warm-up not counted), so that no connection
    /// starts while the measured seconds run.
    pub async fn start(url: &str, after: std::time::Duration) -> anyhow::Result<Waits> {
        let mut conn = PgConnection::connect(url).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let sampling = tokio::spawn(async move {
            let mut samples = 0u64;
            let mut seen = std::collections::BTreeMap::<String, u64>::new();
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + after, WAIT_SAMPLE);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = every.tick() => {}
                }
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT CASE WHEN backend_type = 'client backend' THEN '' \
                     ELSE backend_type || ' ' END \
                     || CASE WHEN wait_event IS NULL THEN 'CPU' \
                     ELSE wait_event_type || ':' || wait_event END \
                     || CASE WHEN state = 'idle in transaction' THEN ' (in transaction)' \
                     ELSE '' END, count(*) \
                     FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle' GROUP BY 1",
                )
                .fetch_all(&mut conn)
                .await?;
                samples += 1;
                for (what, n) in rows {
                    *seen.entry(what).or_default() += n as u64;
                }
            }
            Ok((samples, seen))
        });
        Ok(Waits { stop, sampling })
    }

    /// Stops sampling: `{"samples": n, "connections": {state: average connections}}`.
    pub async fn finish(self) -> anyhow::Result<serde_json::Value> {
        let _ = self.stop.send(());
        let (samples, seen) = self.sampling.await??;
        let n = samples.max(1) as f64;
        let connections: serde_json::Map<String, serde_json::Value> = seen
            .into_iter()
            .map(|(what, k)| {
                (
                    what,
                    serde_json::json!((k as f64 / n * 1000.0).round() / 1000.0),
                )
            })
            .collect();
        Ok(serde_json::json!({"samples": samples, "connections": connections}))
    }
}

/// Makes ready the WAL files `min_wal_size` keeps, before anything is measured. A checkpoint
/// keeps that much WAL as files renamed for reuse, but only files that exist: a server whose
/// WAL never grew that large (a new one, or one whose `min_wal_size` was just raised) creates
/// each new 16 MB file while a burst writes into it, and every commit waits for the file to be
/// written and flushed — at 5,000 webhooks a second, about once a second. A server that has
/// run for a while at this setting has its files; this gives the bench's the same: it switches
/// to a new WAL file until as many files as the setting holds exist (a switch into a file kept
/// for reuse makes none), then checkpoints so that those behind are kept for reuse. The report
/// gets the files there were, how many were ready ahead of the one being written before and
/// after, and the switches made; or, when the bench's user may not do this (it needs a
/// superuser), why not, and the run goes on without.
pub async fn prepare_wal(url: &str) -> anyhow::Result<serde_json::Value> {
    match make_wal_files(url).await {
        Ok(done) => Ok(done),
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") => {
            eprintln!("WAL files not made ready (the bench's user may not): {e}");
            Ok(serde_json::json!({"error": e.to_string()}))
        }
        Err(e) => Err(e.into()),
    }
}

async fn make_wal_files(url: &str) -> sqlx::Result<serde_json::Value> {
    let mut conn = PgConnection::connect(url).await?;
    let (min, segment): (i64, i64) = sqlx::query_as(
        "SELECT pg_size_bytes(current_setting('min_wal_size')), \
         pg_size_bytes(current_setting('wal_segment_size'))",
    )
    .fetch_one(&mut conn)
    .await?;
    let want = min / segment.max(1);
    let (files_before, ready_before) = wal_files(&mut conn).await?;
    let mut files = files_before;
    let mut switches = 0;
    // Postgres's own checkpoints during the loop rename files for reuse, which later switches
    // then take instead of making new ones: bounded, not counted on.
    while files < want && switches < 3 * want {
        // A transaction id's commit writes WAL, so that each switch leaves a file behind.
        conn.execute("SELECT pg_current_xact_id()").await?;
        conn.execute("SELECT pg_switch_wal()").await?;
        switches += 1;
        files = wal_files(&mut conn).await?.0;
    }
    if switches > 0 {
        conn.execute("CHECKPOINT").await?;
    }
    let (files, ready) = wal_files(&mut conn).await?;
    if switches > 0 {
        eprintln!(
            "WAL files: {files_before} ({ready_before} ready) → {files} ({ready} ready), \
             {switches} switches"
        );
    }
    Ok(serde_json::json!({
        "min_wal_size_files": want, "files_before": files_before, "ready_before": ready_before,
        "switches": switches, "files": files, "ready": ready,
    }))
}

/// WAL files: all of them, and those past the one being written (ready for reuse).
async fn wal_files(conn: &mut PgConnection) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE name COLLATE \"C\" > \
         pg_walfile_name(pg_current_wal_insert_lsn()) COLLATE \"C\") \
         FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'",
    )
    .fetch_one(conn)
    .await
}

/// A setting of the server now, as `SHOW` prints it.
pub async fn setting(url: &str, name: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(url).await?;
    Ok(sqlx::query_scalar("SELECT current_setting($1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?)
}
