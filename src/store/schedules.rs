//! Schedules: finding scheduled sources that are due and firing each run exactly once.

use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::history::{write_log, LogWrite};
use super::{on_pool, BeginWrite, Store, StoreResult};
use crate::domain::{JobStatus, Timestamp};

impl Store {
    /// Scheduled, active sources whose next run is due.
    pub async fn due_sources(&self, limit: u32) -> StoreResult<Vec<super::Source>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, super::Source>(
                "SELECT * FROM sources WHERE trigger = 'scheduled' AND active = $1 \
                 AND next_run_at <= $2 ORDER BY next_run_at LIMIT $3",
            )
            .bind(true)
            .bind(Timestamp::now())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Fires a due run of a scheduled source: moves `next_run_at` from `due` to `next` and
    /// queues a job for each active stream of the source, in one transaction. The move only
    /// happens if `next_run_at` is still `due`, so of several nodes (or a node and its
    /// restart) exactly one fires each run. Returns the queued jobs' ids.
    pub async fn fire_schedule(
        &self,
        source: &super::Source,
        due: Timestamp,
        next: Timestamp,
    ) -> StoreResult<Vec<Uuid>> {
        let now = Timestamp::now();
        let ids = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let moved = sqlx::query::<Db>(
                "UPDATE sources SET next_run_at = $3 WHERE id = $1 AND next_run_at = $2",
            )
            .bind(source.id)
            .bind(due)
            .bind(next)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(Vec::new());
            }
            let streams: Vec<Uuid> = sqlx::query_scalar::<Db, Uuid>(
                "SELECT id FROM streams WHERE source_id = $1 AND active = $2 ORDER BY id",
            )
            .bind(source.id)
            .bind(true)
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = Vec::new();
            let mut logs = Vec::new();
            for stream_id in streams {
                let id = Uuid::now_v7();
                sqlx::query::<Db>(
                    "INSERT INTO jobs (id, org_id, stream_id, status, trigger, settings, run_at, \
                     attempt, created_at, updated_at) VALUES ($1, $2, $3, $7, 'scheduled', \
                     $4, $5, 0, $6, $6)",
                )
                .bind(id)
                .bind(source.org_id)
                .bind(stream_id)
                .bind(Json(json!({})))
                .bind(due)
                .bind(now)
                .bind(JobStatus::Pending.as_str())
                .execute(&mut *tx)
                .await?;
                logs.push(LogWrite::job(
                    source.org_id,
                    stream_id,
                    id,
                    None,
                    JobStatus::Pending,
                    json!({"trigger": "scheduled", "scheduled_for": due}),
                ));
                ids.push(id);
            }
            write_log!(Db, tx, &logs, now);
            tx.commit().await?;
            ids
        });
        if !ids.is_empty() {
            self.notify_work();
        }
        Ok(ids)
    }
}
