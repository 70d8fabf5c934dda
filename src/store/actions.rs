//! Actions users take that change several rows, each in one transaction: an abort ends the
//! job's source run, the open events and the jobs they leave settled together, and
//! deactivating a stream does the same for the stream's open work with the stream's own
//! change. A failure at any step leaves everything as it was, and no reader sees half of it.

use std::collections::BTreeSet;

use serde_json::json;
use uuid::Uuid;

use super::batch::{execute, sql_in, sql_lit};
use super::events::AbortScope;
use super::history::{entity_upsert, write_log, EntityChange, LogWrite};
use super::jobs::finish_jobs_in;
use super::resources::update_statement;
use super::{
    audit_in, on_pool, BeginWrite, Event, StatementText, Store, StoreError, StoreResult, Stream,
    Val,
};
use crate::domain::error_code::ErrorCode;
use crate::domain::{EventStatus, EventStep, JobStatus, JobStep, Timestamp};

/// What an abort ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    /// The job's source run had not produced its events and was ended (job scope only).
    pub source_ended: bool,
    /// Open events that are now ABORTED.
    pub events: usize,
}

impl Store {
    /// Aborts what `scope` covers, in one transaction: for a job, its source run if it has not
    /// produced its events (the job ends FINISHED_WITH_ISSUES); the open (NEW or TRANSFORMED)
    /// events, which end ABORTED whoever holds them, so a worker's later completion changes
    /// nothing; and the jobs those events belong to, finished if nothing else is open.
    pub async fn abort(&self, org: Uuid, scope: AbortScope, message: &str) -> StoreResult<Aborted> {
        self.abort_then(org, scope, message, None).await
    }

    /// Saves a changed stream; when `deactivated`, its open events end ABORTED with `message`
    /// and their jobs are settled, in the same transaction as the change.
    pub async fn save_stream(
        &self,
        org: Uuid,
        stream: &Stream,
        deactivated: bool,
        message: &str,
    ) -> StoreResult<()> {
        let update = update_statement(org, stream);
        if deactivated {
            self.abort_then(org, AbortScope::Stream(stream.id), message, Some(update))
                .await?;
        } else {
            self.update(org, stream).await?;
        }
        self.forget_config();
        Ok(())
    }

    /// The abort of `scope`, and then `then` (an update that must change one row), in one
    /// transaction.
    async fn abort_then(
        &self,
        org: Uuid,
        scope: AbortScope,
        message: &str,
        then: Option<(String, Vec<Val>)>,
    ) -> StoreResult<Aborted> {
        let now = Timestamp::now();
        let (col, id) = match scope {
            AbortScope::Event(id) => ("id", id),
            AbortScope::Job(id) => ("job_id", id),
            AbortScope::Stream(id) => ("stream_id", id),
        };
        let select = format!(
            "SELECT * FROM events WHERE org_id = $1 AND {col} = $2 AND status IN ({from})",
            from = sql_in(EventStep::Abort.from()),
        );
        let abort_event = format!(
            "UPDATE events SET status = {to}, error_code = $5, message = $3, \
             claim_token = NULL, lease_expires_at = NULL, next_attempt_at = NULL, \
             updated_at = $4 WHERE id = $1 AND status = $2 AND status IN ({from})",
            to = sql_lit(EventStatus::Aborted),
            from = sql_in(EventStep::Abort.from()),
        );
        // The source has not produced its events: PENDING, or PROCESSING with no
        // `source_done_at` (a PENDING job never has one).
        let select_job = format!(
            "SELECT stream_id, status FROM jobs WHERE id = $1 AND org_id = $2 \
             AND status IN ({from}) AND source_done_at IS NULL",
            from = sql_in(JobStep::AbortSource.from()),
        );
        let abort_source = format!(
            "UPDATE jobs SET status = {to}, message = $3, finished_at = $4, \
             updated_at = $4, claim_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND status = $2 AND status IN ({from}) AND source_done_at IS NULL",
            to = sql_lit(JobStep::AbortSource.to()),
            from = sql_in(JobStep::AbortSource.from()),
        );
        let (source_ended, events, unfinished) = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let mut source_ended = false;
            let mut logs: Vec<LogWrite> = Vec::new();
            if let AbortScope::Job(job_id) = scope {
                let row = sqlx::query_as::<Db, (Uuid, String)>(&select_job)
                .bind(job_id)
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((stream_id, from)) = row {
                    let n = sqlx::query::<Db>(&abort_source)
                    .bind(job_id)
                    .bind(&from)
                    .bind(message)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 1 {
                        source_ended = true;
                        logs.push(LogWrite::job(
                            org,
                            stream_id,
                            job_id,
                            JobStatus::parse(&from),
                            JobStep::AbortSource.to(),
                            json!({"message": message}),
                        ));
                    }
                }
            }
            let open = sqlx::query_as::<Db, Event>(&select).bind(org).bind(id).fetch_all(&mut *tx).await?;
            let mut events = 0;
            // The jobs of the events aborted here: only these can have been settled by it.
            let mut touched = BTreeSet::new();
            for ev in &open {
                let changed = sqlx::query::<Db>(&abort_event)
                .bind(ev.id)
                .bind(ev.status.as_str())
                .bind(message)
                .bind(now)
                .bind(ErrorCode::Aborted.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    continue;
                }
                events += 1;
                touched.insert(ev.job_id);
                logs.push(LogWrite {
                    org_id: ev.org_id,
                    kind: "EVENT_STATUS_CHANGE",
                    stream_id: ev.stream_id,
                    job_id: ev.job_id,
                    event_id: Some(ev.id),
                    from: Some(ev.status.as_str()),
                    to: EventStatus::Aborted.as_str(),
                    details: json!({"error_code": ErrorCode::Aborted.as_str()}),
                });
                if let Some(entity) = ev.entity_id.as_deref() {
                    let (s, v) = entity_upsert(
                        Db::BACKEND,
                        &[EntityChange {
                            org: ev.org_id,
                            data_type: &ev.data_type,
                            entity,
                            status: EventStatus::Aborted.as_str(),
                            event: ev.id,
                            code: Some(ErrorCode::Aborted.as_str()),
                            message: Some(message),
                        }],
                        now,
                    );
                    execute!(Db, tx, &s, &v);
                }
            }
            // The jobs whose last open events these were finish now, in the same commit.
            let touched: Vec<Uuid> = touched.into_iter().collect();
            let finished = finish_jobs_in!(Db, tx, touched, now, logs);
            if let Some((sql, vals)) = &then {
                let n = execute!(Db, tx, sql, vals).rows_affected();
                if n == 0 {
                    return Err(StoreError::NotFound("stream"));
                }
            }
            write_log!(Db, tx, &logs, now);
            // An abort that found nothing open changed nothing: no audit entry.
            if source_ended || events > 0 || then.is_some() {
                audit_in!(self, Db, tx);
            }
            tx.commit().await?;
            let unfinished: Vec<Uuid> =
                touched.into_iter().filter(|j| !finished.contains(j)).collect();
            (source_ended, events, unfinished)
        });
        // A worker committing a job's last other event at the same moment as this abort may
        // not see it, nor it the worker's commit (Postgres reads what committed before it
        // began); a check after both commits sees both. Only the jobs of the events aborted
        // here that this commit left open.
        for job in unfinished {
            self.finish_job(job).await?;
        }
        Ok(Aborted {
            source_ended,
            events,
        })
    }
}
