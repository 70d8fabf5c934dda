//! Retention: clearing old payloads and deleting old records in small batches. Events and jobs
//! have time-ordered ids (UUID v7), so "older than" is an id range on the organisation's id
//! index; each statement touches at most one batch, so no lock is held long.

use uuid::Uuid;

use super::reports::id_floor;
use super::{on_pool, BeginWrite, Store, StoreResult};
use crate::domain::Timestamp;

/// What one statement does: the SQL with `$1` the organisation, `$2` the age bound (an id floor
/// or a time), `$3` the batch size and, for steps that resume, `$4` the id floor below which
/// an earlier sweep left nothing to do.
pub struct Step {
    pub what: &'static str,
    sql: String,
    by_time: bool,
    /// Whether rows below the last sweep's bound are done for good (cleared payloads stay
    /// cleared), so a sweep starts where the last one stopped instead of re-reading them.
    pub resumes: bool,
}

const FINISHED_EVENT: &str = "status IN ('OK','ERROR','FAILED','ABORTED')";
const FINISHED_JOB: &str = "status IN ('FINISHED','FINISHED_WITH_ISSUES','FAILED')";

impl Store {
    /// The steps that clear payloads (rows stay), in order.
    pub fn payload_steps(&self) -> Vec<Step> {
        vec![
            Step {
                what: "event_payloads",
                sql: format!(
                    "UPDATE events SET payload_in = NULL, payload_out = NULL, transform_logs = NULL \
                     WHERE id IN (SELECT id FROM events WHERE org_id = $1 AND id < $2 \
                     AND id >= $4 AND {FINISHED_EVENT} AND (payload_in IS NOT NULL \
                     OR payload_out IS NOT NULL OR transform_logs IS NOT NULL) LIMIT $3)"
                ),
                by_time: false,
                resumes: true,
            },
            Step {
                what: "attempt_excerpts",
                sql: "UPDATE delivery_attempts SET response_excerpt = NULL \
                      WHERE id IN (SELECT id FROM delivery_attempts WHERE org_id = $1 AND id < $2 \
                      AND id >= $4 AND response_excerpt IS NOT NULL LIMIT $3)"
                    .into(),
                by_time: false,
                resumes: true,
            },
            Step {
                what: "uploaded_files",
                sql: format!(
                    "UPDATE jobs SET payload = NULL WHERE id IN (SELECT id FROM jobs \
                     WHERE org_id = $1 AND id < $2 AND id >= $4 AND {FINISHED_JOB} \
                     AND payload IS NOT NULL LIMIT $3)"
                ),
                by_time: false,
                resumes: true,
            },
        ]
    }

    /// The steps that delete records: finished events (their attempts go with them), then
    /// finished jobs left without events.
    pub fn record_steps(&self) -> Vec<Step> {
        vec![
            Step {
                what: "events",
                sql: format!(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE org_id = $1 \
                     AND id < $2 AND {FINISHED_EVENT} LIMIT $3)"
                ),
                by_time: false,
                resumes: false,
            },
            Step {
                what: "jobs",
                sql: format!(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs j WHERE org_id = $1 \
                     AND id < $2 AND {FINISHED_JOB} \
                     AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.id) LIMIT $3)"
                ),
                by_time: false,
                resumes: false,
            },
        ]
    }

    /// The steps that delete the event log's old rows and sent (or failed) notifications.
    pub fn log_steps(&self) -> Vec<Step> {
        vec![
            Step {
                what: "event_log",
                // Only rows readers can read: a row held back behind a transaction still open
                // is kept until a follower could have read it.
                sql: format!(
                    "DELETE FROM event_log WHERE id IN (SELECT id FROM event_log \
                     WHERE org_id = $1 AND created_at < $2 AND {} ORDER BY horizon, id LIMIT $3)",
                    self.backend().log_readable()
                ),
                by_time: true,
                resumes: false,
            },
            Step {
                what: "notifications",
                sql: "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications \
                      WHERE org_id = $1 AND id < $2 AND status <> 'pending' LIMIT $3)"
                    .into(),
                by_time: false,
                resumes: false,
            },
        ]
    }

    /// The step that deletes old audit-log entries (`audit_days`).
    pub fn audit_steps(&self) -> Vec<Step> {
        vec![Step {
            what: "audit_log",
            sql: "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                  WHERE org_id = $1 AND id < $2 LIMIT $3)"
                .into(),
            by_time: false,
            resumes: false,
        }]
    }

    /// Deletes up to `batch` rows that no sign-in can use any more, of the kind `what`:
    /// `sessions` past their end or idle since `idle_before`, `password_links` past their end,
    /// `sign_in_failures` more than an hour old (a failure that old starts the count over).
    pub async fn forget_sign_ins(
        &self,
        what: &str,
        now: Timestamp,
        idle_before: Timestamp,
        batch: u64,
    ) -> StoreResult<u64> {
        let forgiven = Timestamp::from_datetime(now.0 - chrono::Duration::hours(1));
        let (sql, times) = match what {
            "sessions" => (
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                 WHERE expires_at <= $1 OR last_seen_at <= $2 LIMIT $3)",
                vec![now, idle_before],
            ),
            "password_links" => (
                "DELETE FROM password_links WHERE id IN (SELECT id FROM password_links \
                 WHERE expires_at <= $1 LIMIT $2)",
                vec![now],
            ),
            _ => (
                "DELETE FROM sign_in_failures WHERE key IN (SELECT key FROM sign_in_failures \
                 WHERE last_failed_at < $1 LIMIT $2)",
                vec![forgiven],
            ),
        };
        let n = on_pool!(self, pool, Db => {
            let mut q = sqlx::query::<Db>(sql);
            for t in &times {
                q = q.bind(*t);
            }
            q.bind(batch as i64).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }

    /// Runs one batch of `step` for `org` on rows older than `before` (and, for a step that
    /// resumes, not older than `since`); answers how many rows it changed.
    pub async fn retention_batch(
        &self,
        step: &Step,
        org: Uuid,
        before: Timestamp,
        since: Option<Timestamp>,
        batch: u64,
    ) -> StoreResult<u64> {
        let n = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let q = sqlx::query::<Db>(&step.sql).bind(org);
            let q = if step.by_time { q.bind(before) } else { q.bind(id_floor(before)) };
            let mut q = q.bind(batch as i64);
            if step.resumes {
                q = q.bind(since.map_or(Uuid::nil(), id_floor));
            }
            let n = q.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// Every organisation with its own retention policy, if it has one.
    pub async fn retention_policies(
        &self,
    ) -> StoreResult<Vec<(Uuid, Option<sqlx::types::Json<serde_json::Value>>)>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (Uuid, Option<sqlx::types::Json<serde_json::Value>>)>(
                "SELECT id, retention FROM organisations ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
