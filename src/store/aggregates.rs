//! Aggregates: a job's combined delivery of all its transformed events, claimed and completed
//! as one.

use serde_json::json;
use uuid::Uuid;

use super::batch::{execute, rows_insert, sql_in, sql_lit, sql_marks, sql_not_among_ids, CHUNK};
use super::history::{entity_upsert, write_log, EntityChange, LogWrite};
use super::queue::{EventChange, NewAttempt, ATTEMPT_INSERT};
use super::{on_pool, printable, BeginWrite, Event, Job, Store, StoreResult};
use crate::domain::{EventStatus, EventStep, JobStatus, Timestamp};

/// Makes due (at `$1`) the combined delivery of those of the jobs `$2…$(n+1)` whose events
/// are all transformed and wait for it (none NEW, one at least TRANSFORMED with no attempt due),
/// unless it was made due or tried already. Matches nothing else.
pub(in crate::store) fn aggregate_ready_sql(n: usize) -> String {
    format!(
        "UPDATE jobs SET aggregate_next_at = $1 WHERE id IN ({ids}) AND status = {processing} \
         AND source_done_at IS NOT NULL AND aggregate_next_at IS NULL AND aggregate_attempts = 0 \
         AND NOT EXISTS (SELECT 1 FROM events WHERE events.job_id = jobs.id AND events.status = {new}) \
         AND EXISTS (SELECT 1 FROM events WHERE events.job_id = jobs.id \
           AND events.status = {transformed} AND events.next_attempt_at IS NULL)",
        ids = sql_marks(2, n),
        processing = sql_lit(JobStatus::Processing),
        new = sql_lit(EventStatus::New),
        transformed = sql_lit(EventStatus::Transformed),
    )
}

impl Store {
    /// Makes a job's combined delivery due once every event of it is transformed (aggregate
    /// destinations). Like `finish_job`, it runs after each transformation commits, so the
    /// run after the last one always sees every event.
    pub async fn mark_aggregate_ready(&self, job_id: Uuid) -> StoreResult<bool> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(&aggregate_ready_sql(1))
            .bind(Timestamp::now())
            .bind(job_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Claims jobs whose combined delivery is due, or was under way and lost its lease —
    /// never one of `held`, the jobs the claiming process has in hand: a combined delivery
    /// whose lease ran out while it was being sent (the heartbeat was late) would be sent a
    /// second time beside the first.
    pub async fn claim_aggregates(
        &self,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
        held: &[Uuid],
    ) -> StoreResult<Vec<Job>> {
        let except = sql_not_among_ids(5, held.len());
        let sql = format!(
            "UPDATE jobs SET claim_token = $1, lease_expires_at = $2 \
             WHERE id IN (SELECT id FROM jobs WHERE status = {} AND aggregate_next_at <= $3 \
               AND (claim_token IS NULL OR (lease_expires_at < $3{except})) \
               ORDER BY aggregate_next_at LIMIT $4 {}) RETURNING *",
            sql_lit(JobStatus::Processing),
            self.skip_locked()
        );
        self.claim_rows(&sql, token, limit, lease, held).await
    }

    /// The events a job's combined delivery carries: transformed, waiting for it.
    pub async fn aggregate_members(&self, job_id: Uuid) -> StoreResult<Vec<Event>> {
        let sql = format!(
            "SELECT * FROM events WHERE job_id = $1 AND status = {} \
             AND next_attempt_at IS NULL ORDER BY id",
            sql_lit(EventStatus::Transformed)
        );
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Event>(&sql)
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Records a combined delivery on every member: one attempt row each, and the change
    /// (`to` set: they end OK or FAILED; unset: they wait for `next_at`). The job's claim is
    /// released in the same transaction. Attempts are recorded even if the claim was lost.
    pub async fn complete_aggregate(
        &self,
        job: &Job,
        token: Uuid,
        members: &[Event],
        change: &EventChange,
        next_at: Option<Timestamp>,
        attempt: &NewAttempt,
    ) -> StoreResult<bool> {
        let now = Timestamp::now();
        let mut attempt_stmts = Vec::new();
        for chunk in members.chunks(CHUNK) {
            attempt_stmts.push(rows_insert(
                self.backend(),
                ATTEMPT_INSERT,
                chunk.iter().map(|ev| attempt.row(Uuid::now_v7(), ev)),
            ));
        }
        // As the store can keep it (see `store::nul`).
        let code = change.error_code.clone().flatten().map(printable);
        let message = change.message.clone().flatten().map(printable);
        let remaining = change.retries_remaining.flatten();
        let mut follow = Vec::new();
        let mut logs: Vec<LogWrite> = Vec::new();
        // Members wait TRANSFORMED for the combined delivery; a change no step allows from
        // there changes none of them.
        let step = EventStep::between(EventStatus::Transformed, change.to, false);
        if let Some(to) = change.to.filter(|_| step.is_some()) {
            for chunk in members.chunks(CHUNK) {
                logs.extend(chunk.iter().map(|ev| LogWrite {
                    org_id: ev.org_id,
                    kind: "EVENT_STATUS_CHANGE",
                    stream_id: ev.stream_id,
                    job_id: ev.job_id,
                    event_id: Some(ev.id),
                    from: Some(EventStatus::Transformed.as_str()),
                    to: to.as_str(),
                    details: json!({"error_code": code, "aggregate": true}),
                }));
                let mut entities: Vec<_> = chunk
                    .iter()
                    .filter_map(|ev| {
                        ev.entity_id.as_deref().map(|entity| EntityChange {
                            org: ev.org_id,
                            data_type: &ev.data_type,
                            entity,
                            status: to.as_str(),
                            event: ev.id,
                            code: code.as_deref(),
                            message: message.as_deref(),
                        })
                    })
                    .collect();
                // One row per entity (a statement upserts a row once): its newest event's.
                entities.sort_by(|a, b| {
                    (a.entity, std::cmp::Reverse(a.event))
                        .cmp(&(b.entity, std::cmp::Reverse(b.event)))
                });
                entities.dedup_by(|a, b| a.entity == b.entity);
                if !entities.is_empty() {
                    follow.push(entity_upsert(self.backend(), &entities, now));
                }
            }
        }
        let members_update = format!(
            "UPDATE events SET status = $2, error_code = $3, message = $4, \
             retries_remaining = $5, attempt_count = attempt_count + 1, last_attempt_at = $6, \
             updated_at = $6 WHERE job_id = $1 AND status IN ({}) AND next_attempt_at IS NULL",
            sql_in(step.map_or(&[][..], EventStep::from))
        );
        let status = step.map_or(EventStatus::Transformed, |s| s.to(EventStatus::Transformed));
        let held = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for (sql, vals) in &attempt_stmts {
                execute!(Db, tx, sql, vals);
            }
            let held = sqlx::query::<Db>(
                "UPDATE jobs SET claim_token = NULL, lease_expires_at = NULL, \
                 aggregate_attempts = aggregate_attempts + 1, aggregate_next_at = $3, updated_at = $4 \
                 WHERE id = $1 AND claim_token IS NOT DISTINCT FROM $2",
            )
            .bind(job.id)
            .bind(token)
            .bind(next_at)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if held {
                sqlx::query::<Db>(&members_update)
                .bind(job.id)
                .bind(status.as_str())
                .bind(&code)
                .bind(&message)
                .bind(remaining)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for (sql, vals) in &follow {
                    execute!(Db, tx, sql, vals);
                }
                write_log!(Db, tx, &logs, now);
            }
            tx.commit().await?;
            held
        });
        Ok(held)
    }
}
