//! Events outside the worker's claims: aborting open ones, marking one ignored, reading them.

use serde_json::{json, Value};
use uuid::Uuid;

use super::history::{entity_upsert, log_insert, EntityChange, LogWrite};
use super::{on_pool, BeginWrite, Bind, Event, Store, StoreResult};
use crate::domain::{EventStatus, Timestamp};

/// An event a job's source produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub payload_in: Value,
    pub entity_id: Option<String>,
    pub original_event_id: Option<Uuid>,
}

/// Which open events an abort ends.
#[derive(Debug, Clone, Copy)]
pub enum AbortScope {
    Event(Uuid),
    Job(Uuid),
    /// Every open event of a stream (it was deactivated).
    Stream(Uuid),
}

impl Store {
    /// Aborts the open (NEW or TRANSFORMED) events in `scope`: they end ABORTED whoever holds
    /// them, and a worker's later completion changes nothing. Returns how many, and the jobs
    /// they belong to (which may now be able to finish).
    pub async fn abort_events(
        &self,
        org: Uuid,
        scope: AbortScope,
        message: &str,
    ) -> StoreResult<(usize, Vec<Uuid>)> {
        let now = Timestamp::now();
        let (col, id) = match scope {
            AbortScope::Event(id) => ("id", id),
            AbortScope::Job(id) => ("job_id", id),
            AbortScope::Stream(id) => ("stream_id", id),
        };
        let select = format!(
            "SELECT * FROM events WHERE org_id = $1 AND {col} = $2 AND status IN ('NEW', 'TRANSFORMED')"
        );
        let n = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let open = sqlx::query_as::<Db, Event>(&select).bind(org).bind(id).fetch_all(&mut *tx).await?;
            let mut n = 0;
            for ev in &open {
                let changed = sqlx::query::<Db>(
                    "UPDATE events SET status = 'ABORTED', error_code = 'ABORTED', message = $3, \
                     claim_token = NULL, lease_expires_at = NULL, next_attempt_at = NULL, \
                     updated_at = $4 WHERE id = $1 AND status = $2",
                )
                .bind(ev.id)
                .bind(&ev.status)
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    continue;
                }
                n += 1;
                let (s, v) = log_insert(
                    &[LogWrite {
                        org_id: ev.org_id,
                        kind: "EVENT_STATUS_CHANGE",
                        stream_id: ev.stream_id,
                        job_id: ev.job_id,
                        event_id: Some(ev.id),
                        from: EventStatus::parse(&ev.status).map(EventStatus::as_str),
                        to: "ABORTED",
                        details: json!({"error_code": "ABORTED"}),
                    }],
                    now,
                );
                sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
                if let Some(entity) = ev.entity_id.as_deref() {
                    let (s, v) = entity_upsert(
                        &[EntityChange {
                            org: ev.org_id,
                            data_type: &ev.data_type,
                            entity,
                            status: "ABORTED",
                            event: ev.id,
                            code: Some("ABORTED"),
                            message: Some(message),
                        }],
                        now,
                    );
                    sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            n
        });
        let mut jobs: Vec<Uuid> = Vec::new();
        if n > 0 {
            let sql =
                format!("SELECT DISTINCT job_id FROM events WHERE org_id = $1 AND {col} = $2");
            jobs = on_pool!(self, pool, Db => {
                sqlx::query_scalar::<Db, Uuid>(&sql).bind(org).bind(id).fetch_all(pool).await?
            });
        }
        Ok((n, jobs))
    }

    /// Marks an event ignored (or not), for reports; its status is untouched.
    pub async fn set_event_ignored(&self, org: Uuid, id: Uuid, ignored: bool) -> StoreResult<()> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>("UPDATE events SET ignored = $3, updated_at = $4 WHERE id = $1 AND org_id = $2")
                .bind(id)
                .bind(org)
                .bind(ignored)
                .bind(Timestamp::now())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(super::StoreError::NotFound("event"));
        }
        Ok(())
    }

    /// The events of `org` with these ids, in no particular order (an id of another
    /// organisation, or of no event, is left out; duplicates are read once). One query per
    /// thousand ids.
    pub async fn events_by_id(&self, org: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Event>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut events = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let marks: Vec<String> = (2..=chunk.len() + 1).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT * FROM events WHERE org_id = $1 AND id IN ({})",
                marks.join(", ")
            );
            let found = on_pool!(self, pool, Db => {
                let mut q = sqlx::query_as::<Db, Event>(&sql).bind(org).persistent(false);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(pool).await?
            });
            events.extend(found);
        }
        Ok(events)
    }
}
