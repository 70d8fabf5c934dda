//! History: the event log (every status change, read in an order no later commit changes) and
//! entities (the last status of each business object events are about).

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::batch::{rows_insert, Statement};
use super::{
    on_pool, Backend, JsonText, LogEntry, LogPosition, Store, StoreError, StoreResult, Val,
};
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

/// Most entries one event-log row holds: a reader decodes a whole row to read part of it.
const ENTRIES_PER_ROW: usize = 128;

/// The event-log rows of `entries` (organisation, entries): the entries of one organisation
/// written in one transaction share a row (up to [`ENTRIES_PER_ROW`]), so a commit of a
/// hundred status changes writes a row or two, not a hundred rows with their index entries. A
/// row's entries keep their order. Each row's entries are serialised straight from `entries`,
/// with no value tree built, copied and dropped on the way (that took about 2 % of the
/// server's time under load).
pub(in crate::store) fn log_rows<'a>(
    entries: impl IntoIterator<Item = &'a LogWrite>,
) -> StoreResult<Vec<(Uuid, JsonText)>> {
    let mut by_org: Vec<(Uuid, Vec<NewEntry<'a>>)> = Vec::new();
    for e in entries {
        let entry = NewEntry::from(e);
        match by_org.iter_mut().find(|(org, _)| *org == e.org_id) {
            Some((_, list)) => list.push(entry),
            None => by_org.push((e.org_id, vec![entry])),
        }
    }
    let mut rows = Vec::new();
    for (org, list) in by_org {
        for chunk in list.chunks(ENTRIES_PER_ROW) {
            let text = serde_json::to_string(chunk).map_err(|e| StoreError::Other(e.into()))?;
            rows.push((org, JsonText::serialised(text)));
        }
    }
    Ok(rows)
}

/// An event-log entry as a row is written with it (read back as a [`StoredEntry`]), its
/// fields in the order of their names (as a JSON object with sorted keys writes them).
#[derive(Serialize)]
struct NewEntry<'a> {
    details: &'a Value,
    event_id: Option<Uuid>,
    from: Option<&'a str>,
    job_id: Uuid,
    stream_id: Uuid,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

impl<'a> From<&'a LogWrite> for NewEntry<'a> {
    fn from(e: &'a LogWrite) -> Self {
        NewEntry {
            details: &e.details,
            event_id: e.event_id,
            from: e.from,
            job_id: e.job_id,
            stream_id: e.stream_id,
            to: e.to,
            kind: e.kind,
        }
    }
}

/// The insert of `rows` (see [`log_rows`]). Their positions come with the insert: the
/// `horizon` column's default and the id (see `migrations/postgres/0012_log_horizon.sql`).
pub(in crate::store) fn log_insert(
    backend: Backend,
    rows: Vec<(Uuid, JsonText)>,
    now: Timestamp,
) -> Statement {
    rows_insert(
        backend,
        "INSERT INTO event_log (org_id, entries, created_at)",
        rows.into_iter().map(|(org, entries)| {
            vec![Val::from(org), Val::JsonText(Some(entries)), Val::from(now)]
        }),
    )
}

/// Writes event-log entries in the open transaction `$tx` of backend `$db`: a row per
/// organisation (see [`log_rows`]), committed with the changes they record.
macro_rules! write_log {
    ($db:ident, $tx:ident, $entries:expr, $now:expr) => {{
        let rows = $crate::store::history::log_rows($entries)?;
        if !rows.is_empty() {
            let (sql, vals) = $crate::store::history::log_insert(
                <$db as $crate::store::StatementText>::BACKEND,
                rows,
                $now,
            );
            $crate::store::batch::execute!($db, $tx, &sql, &vals);
        }
    }};
}
pub(in crate::store) use write_log;

/// An entry as a row stores it (see [`log_insert`]).
#[derive(serde::Deserialize)]
struct StoredEntry {
    #[serde(rename = "type")]
    kind: String,
    stream_id: Option<Uuid>,
    job_id: Option<Uuid>,
    event_id: Option<Uuid>,
    from: Option<String>,
    to: String,
    #[serde(default)]
    details: Value,
}

impl StoredEntry {
    /// The entry at `position` of a row written at `at`.
    fn at(self, position: LogPosition, at: Timestamp) -> LogEntry {
        LogEntry {
            position,
            kind: self.kind,
            stream_id: self.stream_id,
            job_id: self.job_id,
            event_id: self.event_id,
            from_status: self.from,
            to_status: self.to,
            details: self.details,
            event_at: at,
            created_at: at,
        }
    }
}

/// The entries of the row at (`horizon`, `id`), written at `at`, at their positions.
fn row_entries(
    horizon: i64,
    id: i64,
    entries: Vec<StoredEntry>,
    at: Timestamp,
) -> impl Iterator<Item = LogEntry> {
    entries.into_iter().enumerate().map(move |(k, e)| {
        let k = k as i64;
        e.at(LogPosition { horizon, id, k }, at)
    })
}

#[derive(sqlx::FromRow)]
struct LogRow {
    horizon: i64,
    id: i64,
    entries: Json<Vec<StoredEntry>>,
    created_at: Timestamp,
}

/// The last status of one entity, as a finished event leaves it.
pub(in crate::store) struct EntityChange<'a> {
    pub(in crate::store) org: Uuid,
    pub(in crate::store) data_type: &'a str,
    pub(in crate::store) entity: &'a str,
    pub(in crate::store) status: &'a str,
    pub(in crate::store) event: Uuid,
    pub(in crate::store) code: Option<&'a str>,
    pub(in crate::store) message: Option<&'a str>,
}

/// Entities keep the outcome of the latest event about each business object: written once
/// per event, when it finishes (OK, ERROR, FAILED, ABORTED), and only by an event at least as
/// new as the one the entity names (event ids grow with time), so an older event finishing
/// late, after a retry, does not hide the newer one's outcome.
pub(in crate::store) fn entity_upsert(
    backend: Backend,
    rows: &[EntityChange<'_>],
    now: Timestamp,
) -> Statement {
    let (mut sql, vals) = rows_insert(
        backend,
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
         updated_at = excluded.updated_at \
         WHERE entities.last_event_id IS NULL OR entities.last_event_id <= excluded.last_event_id",
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

/// The event-log entry of a job finished by [`super::jobs::finish_jobs_sql`].
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

/// Longest a reader of the event log waits for the transactions begun before its read to end
/// (see [`Store::event_log`]). A transaction open longer holds back only the entries after it,
/// which come with a later read.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(1);

impl Store {
    /// Waits until every transaction that had begun writing when called has ended (Postgres,
    /// at most [`CATCH_UP`]), so that a read of the log after it holds every change committed
    /// before the call: a row is readable once the transactions before it have ended (see
    /// `Backend::log_readable`). Their transactions last milliseconds.
    async fn log_caught_up(&self) -> StoreResult<()> {
        let super::Pool::Pg(pool) = &self.pool else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        // Every transaction that committed before now has an id below `target`; none is open
        // when the oldest still running is at or past it (with none running, they are equal).
        let (target, mut oldest): (i64, i64) = sqlx::query_as(
            "SELECT pg_snapshot_xmax(s)::text::bigint, pg_snapshot_xmin(s)::text::bigint \
             FROM pg_current_snapshot() s",
        )
        .fetch_one(pool)
        .await?;
        let mut pause = std::time::Duration::from_millis(1);
        while oldest < target && started.elapsed() < CATCH_UP {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
            oldest =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(pool)
                    .await?;
        }
        Ok(())
    }

    /// Up to `limit` event-log entries of `org` after position `after`, oldest first: every
    /// entry committed before the call among them (unless a transaction begun before it stays
    /// open for more than [`CATCH_UP`]).
    pub async fn event_log(
        &self,
        org: Uuid,
        after: LogPosition,
        limit: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        // Rows from the one holding `after` on; a few at a time, as a row holds many entries.
        const ROWS: i64 = 16;
        let sql = format!(
            "SELECT horizon, id, entries, created_at FROM event_log \
             WHERE org_id = $1 AND (horizon, id) >= ($2, $3) AND {readable} \
             ORDER BY horizon, id LIMIT {ROWS}",
            readable = self.backend().log_readable()
        );
        let limit = limit as usize;
        self.log_caught_up().await?;
        let mut out = Vec::new();
        let mut from = (after.horizon, after.id);
        loop {
            let rows: Vec<LogRow> = on_pool!(self, pool, Db => {
                sqlx::query_as::<Db, LogRow>(&sql)
                    .bind(org)
                    .bind(from.0)
                    .bind(from.1)
                    .fetch_all(pool)
                    .await?
            });
            let full = rows.len() as i64 == ROWS;
            for row in rows {
                from = (row.horizon, row.id + 1);
                for e in row_entries(row.horizon, row.id, row.entries.0, row.created_at) {
                    if e.position <= after {
                        continue;
                    }
                    out.push(e);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }
}

impl Store {
    /// Up to `rows` event-log rows of every organisation after the row at `after` (a row's
    /// place: [`LogPosition::k`] is not looked at), oldest first: the entries with their
    /// organisation, the place of the last row read (to read on from), and how many rows were
    /// read.
    pub async fn event_log_rows_after(
        &self,
        after: LogPosition,
        rows: i64,
    ) -> StoreResult<(Vec<(Uuid, LogEntry)>, LogPosition, usize)> {
        #[derive(sqlx::FromRow)]
        struct OrgRow {
            org_id: Uuid,
            horizon: i64,
            id: i64,
            entries: Json<Vec<StoredEntry>>,
            created_at: Timestamp,
        }
        let sql = format!(
            "SELECT org_id, horizon, id, entries, created_at FROM event_log \
             WHERE (horizon, id) > ($1, $2) AND {} ORDER BY horizon, id LIMIT $3",
            self.backend().log_readable()
        );
        let found: Vec<OrgRow> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, OrgRow>(&sql)
                .bind(after.horizon)
                .bind(after.id)
                .bind(rows)
                .fetch_all(pool)
                .await?
        });
        let mut last = LogPosition::row(after.horizon, after.id);
        let mut out = Vec::new();
        let read = found.len();
        for row in found {
            last = LogPosition::row(row.horizon, row.id);
            let org = row.org_id;
            out.extend(
                row_entries(row.horizon, row.id, row.entries.0, row.created_at).map(|e| (org, e)),
            );
        }
        Ok((out, last, read))
    }

    /// The place of the newest event-log row readers may read now (see
    /// [`Store::event_log_rows_after`]; the start for none).
    pub async fn event_log_head(&self) -> StoreResult<LogPosition> {
        let sql = format!(
            "SELECT horizon, id FROM event_log WHERE {} ORDER BY horizon DESC, id DESC LIMIT 1",
            self.backend().log_readable()
        );
        let head = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (i64, i64)>(&sql).fetch_optional(pool).await?
        });
        Ok(head.map_or_else(LogPosition::default, |(h, id)| LogPosition::row(h, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(org: Uuid, n: u32) -> LogWrite {
        LogWrite {
            org_id: org,
            kind: "EVENT_STATUS_CHANGE",
            stream_id: Uuid::from_u128(1),
            job_id: Uuid::from_u128(2),
            event_id: n.is_multiple_of(2).then(|| Uuid::from_u128(n.into())),
            from: n.is_multiple_of(3).then_some("NEW"),
            to: "OK",
            details: json!({"n": n, "error_code": null}),
        }
    }

    #[test]
    fn rows_hold_an_organisation_s_entries_in_order_as_their_readers_read_them() {
        let (a, b) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let writes: Vec<LogWrite> = (0..300)
            .map(|n| write(if n % 5 == 4 { b } else { a }, n))
            .collect();
        let rows = log_rows(&writes).unwrap();
        // 240 entries of `a` in two rows (128 + 112), then 60 of `b` in one.
        let orgs: Vec<Uuid> = rows.iter().map(|(org, _)| *org).collect();
        assert_eq!(orgs, vec![a, a, b]);
        let mut read = Vec::new();
        for (org, text) in &rows {
            let entries: Vec<StoredEntry> = serde_json::from_str(text.as_str()).unwrap();
            read.extend(entries.into_iter().map(|e| (*org, e)));
        }
        let mut expected: Vec<&LogWrite> = writes.iter().filter(|w| w.org_id == a).collect();
        expected.extend(writes.iter().filter(|w| w.org_id == b));
        assert_eq!(read.len(), expected.len());
        for ((org, e), w) in read.iter().zip(expected) {
            assert_eq!(*org, w.org_id);
            assert_eq!(e.kind, w.kind);
            assert_eq!(
                (e.stream_id, e.job_id, e.event_id),
                (Some(w.stream_id), Some(w.job_id), w.event_id)
            );
            assert_eq!((e.from.as_deref(), e.to.as_str()), (w.from, w.to));
            assert_eq!(e.details, w.details);
        }
        // The text an entry is written as: the object with sorted keys it was before.
        let w = write(a, 0);
        let (_, text) = &log_rows([&w]).unwrap()[0];
        let before = json!([{
            "type": w.kind, "stream_id": w.stream_id, "job_id": w.job_id, "event_id": w.event_id,
            "from": w.from, "to": w.to, "details": w.details,
        }]);
        assert_eq!(text.as_str(), before.to_string());
    }
}
