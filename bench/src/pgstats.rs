//! What Postgres did for the orders of a phase: row writes, dead rows and WAL bytes, from its
//! statistics views; and autovacuum switched on for the run, as production runs it.

use sqlx::{Connection, Executor, PgConnection};

/// Counters of the bench database (`pg_stat_user_tables`) and of the server (`pg_stat_wal`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub inserted: i64,
    pub updated: i64,
    pub hot_updated: i64,
    pub deleted: i64,
    pub wal_bytes: i64,
}

/// Reads the counters. Backends publish their statistics when they go idle, at most about every
/// ten seconds (`PGSTAT_IDLE_INTERVAL`): wait that long after the work before reading.
pub async fn counters(url: &str) -> anyhow::Result<Counters> {
    let mut conn = PgConnection::connect(url).await?;
    let (inserted, updated, hot_updated, deleted): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(n_tup_ins), 0)::bigint, COALESCE(sum(n_tup_upd), 0)::bigint, \
         COALESCE(sum(n_tup_hot_upd), 0)::bigint, COALESCE(sum(n_tup_del), 0)::bigint \
         FROM pg_stat_user_tables",
    )
    .fetch_one(&mut conn)
    .await?;
    let wal_bytes: i64 = sqlx::query_scalar("SELECT wal_bytes::bigint FROM pg_stat_wal")
        .fetch_one(&mut conn)
        .await?;
    Ok(Counters {
        inserted,
        updated,
        hot_updated,
        deleted,
        wal_bytes,
    })
}

/// Per order between two readings: row writes (inserts, updates, deletes), dead rows left (each
/// update or delete leaves the old row version for vacuum or pruning), the share of updates that
/// were HOT (no index touched), and WAL bytes (server-wide: other databases' work counts too).
pub fn per_order(before: Counters, after: Counters, orders: u64) -> serde_json::Value {
    let n = orders.max(1) as f64;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let updated = after.updated - before.updated;
    let deleted = after.deleted - before.deleted;
    let inserted = after.inserted - before.inserted;
    let hot = after.hot_updated - before.hot_updated;
    serde_json::json!({
        "row_writes_per_order": round((inserted + updated + deleted) as f64 / n),
        "inserts_per_order": round(inserted as f64 / n),
        "updates_per_order": round(updated as f64 / n),
        "deletes_per_order": round(deleted as f64 / n),
        "dead_rows_per_order": round((updated + deleted) as f64 / n),
        "hot_update_share": round(if updated > 0 { hot as f64 / updated as f64 } else { 0.0 }),
        "wal_bytes_per_order": ((after.wal_bytes - before.wal_bytes) as f64 / n).round(),
    })
}

/// Autovacuum as the run found it, to restore afterwards.
pub struct Autovacuum {
    url: String,
    changed: bool,
}

impl Autovacuum {
    /// Turns autovacuum on for the whole server (`ALTER SYSTEM`) if it is off; `restore` puts
    /// the setting back.
    pub async fn turn_on(url: &str) -> anyhow::Result<Autovacuum> {
        let mut conn = PgConnection::connect(url).await?;
        let on: String = sqlx::query_scalar("SHOW autovacuum")
            .fetch_one(&mut conn)
            .await?;
        let changed = on != "on";
        if changed {
            conn.execute("ALTER SYSTEM SET autovacuum = on").await?;
            conn.execute("SELECT pg_reload_conf()").await?;
            eprintln!("autovacuum was off: on for this run");
        }
        Ok(Autovacuum {
            url: url.to_string(),
            changed,
        })
    }

    pub async fn restore(self) -> anyhow::Result<()> {
        if self.changed {
            let mut conn = PgConnection::connect(&self.url).await?;
            conn.execute("ALTER SYSTEM RESET autovacuum").await?;
            conn.execute("SELECT pg_reload_conf()").await?;
            eprintln!("autovacuum setting restored");
        }
        Ok(())
    }
}

/// The server's autovacuum setting now.
pub async fn autovacuum(url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(url).await?;
    Ok(sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&mut conn)
        .await?)
}
