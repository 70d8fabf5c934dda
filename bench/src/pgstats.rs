//! What Postgres did for the orders of a phase: row writes, dead rows and WAL bytes, from its
//! statistics views; and autovacuum switched on for the run, as production runs it.

use sqlx::{Connection, Executor, PgConnection};

/// Counters of the bench database (`pg_stat_user_tables`) and of the server (`pg_stat_wal`).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub inserted: i64,
    pub updated: i64,
    pub hot_updated: i64,
    pub deleted: i64,
    pub wal_bytes: i64,
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
    let wal_bytes: i64 = sqlx::query_scalar("SELECT wal_bytes::bigint FROM pg_stat_wal")
        .fetch_one(&mut conn)
        .await?;
    Ok(Counters {
        inserted,
        updated,
        hot_updated,
        deleted,
        wal_bytes,
        tables,
    })
}

/// Per order between two readings: row writes (inserts, updates, deletes), dead rows left (each
/// update or delete leaves the old row version for vacuum or pruning), the share of updates that
/// were HOT (no index touched), and WAL bytes (server-wide: other databases' work counts too);
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
        "per_table": per_table,
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
