//! Reads behind list pages: what a page shows of many rows at once, in one query rather than
//! one per row, and filters whose SQL belongs with the store.

use std::collections::HashMap;

use uuid::Uuid;

use super::batch::{sql_marks, CHUNK};
use super::{on_pool, Store, StoreResult, Val};
use crate::domain::EventStatus;

/// The list filter for events whose message contains `text`, ignoring case.
pub fn message_contains(text: &str) -> (&'static str, Val) {
    (
        "LOWER(message) LIKE",
        Val::from(format!("%{}%", text.to_lowercase())),
    )
}

/// The list filter for events whose received payload contains `text`, ignoring case. The
/// payload is read as its JSON text, so this reads every payload the other filters leave: narrow
/// it by stream or time on large stores.
pub fn payload_contains(text: &str) -> (&'static str, Val) {
    (
        "LOWER(CAST(payload_in AS TEXT)) LIKE",
        Val::from(format!("%{}%", text.to_lowercase())),
    )
}

impl Store {
    /// Event counts by status of each of these jobs (a job without events is left out).
    pub async fn jobs_counts(
        &self,
        job_ids: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, Vec<(EventStatus, i64)>>> {
        let mut out: HashMap<Uuid, Vec<(EventStatus, i64)>> = HashMap::new();
        for chunk in job_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT job_id, status, COUNT(*) FROM events WHERE job_id IN ({}) \
                 GROUP BY job_id, status",
                sql_marks(1, chunk.len())
            );
            let rows = on_pool!(self, pool, Db => {
                let mut q = sqlx::query_as::<Db, (Uuid, String, i64)>(&sql).persistent(false);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(pool).await?
            });
            for (job, status, n) in rows {
                let Some(status) = EventStatus::parse(&status) else {
                    continue;
                };
                out.entry(job).or_default().push((status, n));
            }
        }
        Ok(out)
    }
}
