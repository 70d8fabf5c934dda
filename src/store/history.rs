//! History: the event log (every status change, published in commit order) and entities
//! (the last status of each business object events are about).

use serde_json::{json, Value};
use uuid::Uuid;

use super::batch::{rows_insert, Statement};
use super::{on_pool, BeginWrite, LogEntry, Store, StoreResult, Val};
use crate::domain::{JobStatus, Timestamp};

/// An event-log entry and entity change to write with a status change.
pub(in crate::store) struct LogWrite {
    pub(in crate::store) org_id: Uuid,
    pub(in crate::store) kind: &'static str,
    pub(in crate::store) stream_id: Uuid,
    pub(in crate::store) job_id: Uuid,
    pub(in crate::store) event_id: Option<Uuid>,
    pub(in crate::store) from: Option<&'static str>,
    pub(in crate::store) to: &'static str,
    pub(in crate::store) details: Value,
}

impl LogWrite {
    /// The log entry of a job's status change: the one shape every job change is logged in.
    pub(in crate::store) fn job(
        org_id: Uuid,
        stream_id: Uuid,
        job_id: Uuid,
        from: Option<JobStatus>,
        to: JobStatus,
        details: Value,
    ) -> LogWrite {
        LogWrite {
            org_id,
            kind: "JOB_STATUS_CHANGE",
            stream_id,
            job_id,
            event_id: None,
            from: from.map(JobStatus::as_str),
            to: to.as_str(),
            details,
        }
    }
}

pub(in crate::store) fn log_insert<'a>(
    entries: impl IntoIterator<Item = &'a LogWrite>,
    now: Timestamp,
) -> Statement {
    rows_insert(
        "INSERT INTO event_log (org_id, type, stream_id, job_id, event_id, from_status, \
         to_status, details, event_at, created_at)",
        entries.into_iter().map(|e| {
            vec![
                Val::from(e.org_id),
                Val::from(e.kind),
                Val::from(e.stream_id),
                Val::from(e.job_id),
                Val::from(e.event_id),
                Val::Text(e.from.map(str::to_string)),
                Val::from(e.to),
                Val::Json(Some(e.details.clone())),
                Val::from(now),
                Val::from(now),
            ]
        }),
    )
}

/// The last status of one entity, as an event leaves it.
pub(in crate::store) struct EntityChange<'a> {
    pub(in crate::store) org: Uuid,
    pub(in crate::store) data_type: &'a str,
    pub(in crate::store) entity: &'a str,
    pub(in crate::store) status: &'a str,
    pub(in crate::store) event: Uuid,
    pub(in crate::store) code: Option<&'a str>,
    pub(in crate::store) message: Option<&'a str>,
}

/// Entities keep the last status of the business object events are about.
pub(in crate::store) fn entity_upsert(rows: &[EntityChange<'_>], now: Timestamp) -> Statement {
    let (mut sql, vals) = rows_insert(
        "INSERT INTO entities (id, org_id, data_type, entity_id, last_status, last_event_id, \
         last_error_code, last_message, created_at, updated_at)",
        rows.iter().map(|r| {
            vec![
                Val::from(Uuid::now_v7()),
                Val::from(r.org),
                Val::from(r.data_type),
                Val::from(r.entity),
                Val::from(r.status),
                Val::from(r.event),
                Val::Text(r.code.map(str::to_string)),
                Val::Text(r.message.map(str::to_string)),
                Val::from(now),
                Val::from(now),
            ]
        }),
    );
    sql.push_str(
        " ON CONFLICT (org_id, data_type, entity_id) DO UPDATE SET \
         last_status = excluded.last_status, last_event_id = excluded.last_event_id, \
         last_error_code = excluded.last_error_code, last_message = excluded.last_message, \
         updated_at = excluded.updated_at",
    );
    (sql, vals)
}

/// An entity's last status, owned (see [`EntityChange`]).
pub(in crate::store) struct EntityRow {
    pub(in crate::store) org: Uuid,
    pub(in crate::store) data_type: String,
    pub(in crate::store) entity: String,
    pub(in crate::store) status: &'static str,
    pub(in crate::store) event: Uuid,
    pub(in crate::store) code: Option<String>,
    pub(in crate::store) message: Option<String>,
}

/// The event-log entry of a job finished by [`finish_jobs_sql`].
pub(in crate::store) fn finish_log(
    org: Uuid,
    stream: Uuid,
    job_id: Uuid,
    status: &str,
    now: Timestamp,
) -> Statement {
    log_insert(&[finish_entry(org, stream, job_id, status)], now)
}

pub(in crate::store) fn finish_entry(
    org: Uuid,
    stream: Uuid,
    job_id: Uuid,
    status: &str,
) -> LogWrite {
    let to = JobStatus::parse(status).unwrap_or(JobStatus::Finished);
    LogWrite::job(
        org,
        stream,
        job_id,
        Some(JobStatus::Processing),
        to,
        json!({}),
    )
}

impl Store {
    /// Publishes event-log entries in commit order (Postgres). Writers insert entries without
    /// a position; this single sequencer (one at a time across nodes, by advisory lock) gives
    /// every unpublished entry the next positions in one commit. An entry that commits late
    /// simply gets a later position, so readers following `seq` never see a gap filled in
    /// behind them. `wait` takes the lock even if another node holds it for now.
    pub async fn sequence_event_log(&self, wait: bool) -> StoreResult<u64> {
        if !self.backend().sequenced_log() {
            return Ok(0);
        }
        let n = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let locked: bool = if wait {
                sqlx::query::<Db>("SELECT pg_advisory_xact_lock(7270001)").execute(&mut *tx).await?;
                true
            } else {
                sqlx::query_scalar::<Db, bool>("SELECT pg_try_advisory_xact_lock(7270001)")
                    .fetch_one(&mut *tx)
                    .await?
            };
            if !locked {
                return Ok(0);
            }
            let n = sqlx::query::<Db>(
                "WITH next AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) + \
                   (SELECT COALESCE(MAX(seq), 0) FROM event_log) AS n \
                   FROM event_log WHERE seq IS NULL ORDER BY id LIMIT 10000) \
                 UPDATE event_log SET seq = next.n FROM next WHERE event_log.id = next.id",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    /// Event-log entries of `org` after position `after`, oldest first.
    pub async fn event_log(&self, org: Uuid, after: i64, limit: u32) -> StoreResult<Vec<LogEntry>> {
        let position = self.backend().log_position();
        let sql = format!(
            "SELECT {position} AS seq, type, stream_id, job_id, event_id, from_status, to_status, \
             details, event_at, created_at FROM event_log \
             WHERE org_id = $1 AND {position} > $2 ORDER BY {position} LIMIT $3"
        );
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, LogEntry>(&sql)
                .bind(org)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}
