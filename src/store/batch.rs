//! Building blocks shared by the store's writes: multi-row inserts of new jobs, events, log
//! entries and entities, collected in [`Rows`] and run in one transaction.

use std::sync::Arc;

use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::handoff::{Claim, Handed, Spilled};

use super::columns::{columns, unnest};
use super::history::{entity_upsert, write_log, EntityChange, EntityRow, LogWrite};
use super::{
    on_pool, Backend, BeginWrite, Event, Job, JsonText, NewEvent, NewJob, Payload, Store,
    StoreResult, StoredJson, Val,
};
use crate::domain::{EventStatus, JobStatus, Timestamp};

/// Runs a [`Statement`] (`$sql`, `$vals`) in the open transaction `$tx` of backend `$db`, as
/// that backend is best given it (see [`super::StatementText`]), kept prepared only when small
/// (see [`keep_prepared`]); answers its result.
macro_rules! execute {
    ($db:ident, $tx:ident, $sql:expr, $vals:expr) => {{
        let vals: &[$crate::store::Val] = $vals;
        $crate::store::Bind::bind_all(
            sqlx::query::<$db>(&<$db as $crate::store::StatementText>::text($sql)),
            vals,
        )
        .persistent($crate::store::batch::keep_prepared(vals))
        .execute(&mut *$tx)
        .await?
    }};
}
pub(in crate::store) use execute;

/// A statement and its values, to run in a transaction with others.
pub(in crate::store) type Statement = (String, Vec<Val>);

/// Statements binding more values than this are one-off shapes (a batch's multi-row insert):
/// prepared and dropped, not kept in the connection's statement cache, where on SQLite each
/// would hold its compiled program and on Postgres would evict the statements that repeat.
pub(in crate::store) const KEEP_PREPARED: usize = 64;

pub(in crate::store) fn keep_prepared(vals: &[Val]) -> bool {
    vals.len() <= KEEP_PREPARED
}

/// The placeholders `$first, …, $(first + n - 1)`, for an `IN (…)` list of `n` bound values.
pub(in crate::store) fn sql_marks(first: usize, n: usize) -> String {
    let marks: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    marks.join(", ")
}

/// A condition that `column` holds one of `ids`, bound from `$first` on, and the values to bind,
/// as each backend is best given it. Postgres gets one array, `column = ANY($first::uuid[])`: the
/// statement's text is the same however many ids there are, so each connection prepares it
/// once and keeps it (an `IN` list is a statement of its own for each length: the bench saw
/// about 50 shapes each of the job and held-event reads, crowding each other out of the
/// connections' statement caches). SQLite gets `IN ($first, …)`: it has no arrays, and
/// compiles statements in process, cheaply. `ids` is not empty. (The job finish keeps its list:
/// see `finish_jobs_in`.)
pub(in crate::store) fn among_ids(
    backend: Backend,
    column: &str,
    first: usize,
    ids: &[Uuid],
) -> (String, Vec<Val>) {
    debug_assert!(!ids.is_empty(), "an empty list of ids");
    match backend {
        Backend::Postgres => (
            format!("{column} = ANY(${first}::uuid[])"),
            vec![Val::Column(super::columns::Column::Uuid(
                ids.iter().copied().map(Some).collect(),
            ))],
        ),
        Backend::Sqlite => (
            format!("{column} IN ({})", sql_marks(first, ids.len())),
            ids.iter().copied().map(Val::from).collect(),
        ),
    }
}

/// Whether to keep a statement of a list of ids prepared (see [`among_ids`]): on Postgres
/// always (one array, one text for every length); on SQLite for one id only, as each length
/// is a program of its own in the connection's statement cache, where it would push out the
/// statements that repeat.
pub(in crate::store) fn keep_list_prepared(vals: &[Val]) -> bool {
    vals.len() == 1
}

/// `AND id NOT IN (…)` over the `n` ids bound from `$first` on; nothing when there are none
/// (the statement's text is then the same as without the list, and stays prepared).
pub(in crate::store) fn sql_not_among_ids(first: usize, n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" AND id NOT IN ({})", sql_marks(first, n))
    }
}

/// A list of statuses as SQL literals for `IN (…)`, built from the domain's tables so that no
/// status is spelled by hand in SQL text. An empty list gives `NULL`, which matches nothing: a
/// step the domain does not allow changes no row.
pub(in crate::store) fn sql_in<S: std::fmt::Display>(list: &[S]) -> String {
    if list.is_empty() {
        return "NULL".into();
    }
    list.iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A condition that a column holds one of `list`: `= 'A'` for one status, `IN ('A', 'B')` for
/// more. SQLite takes a partial index (`WHERE status = <one status>`) only for a condition it
/// can match to the index's own: an `IN` list of that one status is not matched, and the job claim
/// read the whole jobs table (24 ms a claim after 40,000 orders, holding the write lock).
pub(in crate::store) fn sql_among<S: std::fmt::Display>(list: &[S]) -> String {
    match list {
        [one] => format!("= {}", sql_lit(one)),
        _ => format!("IN ({})", sql_in(list)),
    }
}

/// A check, never an index's way in, that `status` is one of `list`: for statements that reach
/// their rows by key (`id = …`), the status being what the step starts from. Written plainly
/// (`status IN (…)`), the condition matches the indexes that hold the status, and statistics
/// gathered at a quiet moment (few events `NEW`) make the planner take it as the way in: it
/// then reads every row of that status, the whole backlog, for each statement (seen in the
/// bench: each batch of event completions read every waiting event, 10–20 ms a statement, 35
/// a second, until autovacuum's ANALYZE gave the planner other figures). As `(…) IS TRUE` the
/// check is only a filter on the rows the key found, and means the same in a `WHERE`.
pub(in crate::store) fn sql_status_check<S: std::fmt::Display>(list: &[S]) -> String {
    format!("(status IN ({})) IS TRUE", sql_in(list))
}

/// One status as an SQL literal (see [`sql_in`]).
pub(in crate::store) fn sql_lit<S: std::fmt::Display>(s: S) -> String {
    format!("'{s}'")
}

/// Rows per multi-row insert: well under SQLite's bound-parameter limit.
pub(in crate::store) const CHUNK: usize = 300;

/// A multi-row insert: `head` is `INSERT INTO t (cols…)`, each row one value per column. On
/// Postgres the rows go as one array a column (see [`super::columns`]): one statement text
/// whatever the number of rows, prepared once.
pub(in crate::store) fn rows_insert(
    backend: Backend,
    head: &str,
    rows: impl IntoIterator<Item = Vec<Val>>,
) -> Statement {
    let rows: Vec<Vec<Val>> = rows.into_iter().collect();
    let rows = match backend {
        Backend::Postgres => match columns(rows) {
            Ok(columns) => {
                let sql = format!("{head} SELECT * FROM {}", unnest(&columns, 1));
                return (sql, columns.into_iter().map(Val::Column).collect());
            }
            Err(rows) => rows,
        },
        Backend::Sqlite => rows,
    };
    let mut sql = format!("{head} VALUES ");
    let mut vals = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for k in 0..row.len() {
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", vals.len() + k + 1));
        }
        sql.push(')');
        vals.extend(row);
    }
    (sql, vals)
}

/// One new row of `events`.
pub(in crate::store) struct EventRow {
    pub(in crate::store) id: Uuid,
    pub(in crate::store) org_id: Uuid,
    pub(in crate::store) stream_id: Uuid,
    pub(in crate::store) job_id: Uuid,
    pub(in crate::store) status: &'static str,
    pub(in crate::store) data_type: String,
    pub(in crate::store) entity_id: Option<String>,
    pub(in crate::store) payload_in: Option<JsonText>,
    pub(in crate::store) payload_out: Option<JsonText>,
    pub(in crate::store) retries_remaining: Option<i64>,
    pub(in crate::store) next_attempt_at: Option<Timestamp>,
    pub(in crate::store) original_event_id: Option<Uuid>,
    pub(in crate::store) origin: Option<String>,
    /// Inserted claimed (handed to this process's workers, see [`super::handoff`]).
    pub(in crate::store) claim: Option<Claim>,
    /// When the event came to be (its push's receipt, its split): also its `updated_at`.
    pub(in crate::store) created_at: Timestamp,
}

pub(in crate::store) fn events_insert<'a>(
    backend: Backend,
    rows: impl IntoIterator<Item = &'a EventRow>,
) -> Statement {
    rows_insert(
        backend,
        "INSERT INTO events (id, org_id, stream_id, job_id, status, data_type, entity_id, \
         payload_in, payload_out, retries_remaining, next_attempt_at, original_event_id, origin, \
         attempt_count, ignored, created_at, updated_at, claim_token, lease_expires_at)",
        rows.into_iter().map(|r| {
            vec![
                Val::from(r.id),
                Val::from(r.org_id),
                Val::from(r.stream_id),
                Val::from(r.job_id),
                Val::from(r.status),
                Val::from(r.data_type.as_str()),
                Val::Text(r.entity_id.clone()),
                Val::JsonText(r.payload_in.clone()),
                Val::JsonText(r.payload_out.clone()),
                Val::Int(r.retries_remaining),
                Val::Ts(r.next_attempt_at),
                Val::from(r.original_event_id),
                Val::Text(r.origin.clone()),
                Val::Int(Some(0)),
                Val::Bool(false),
                Val::from(r.created_at),
                Val::from(r.created_at),
                Val::from(r.claim.map(|c| c.token)),
                Val::Ts(r.claim.map(|c| c.lease_end)),
            ]
        }),
    )
}

/// New rows of one write or of several batched together (webhook pushes): jobs, events,
/// event-log entries and entities, inserted with one multi-row statement per table and chunk.
#[derive(Default)]
pub(in crate::store) struct Rows {
    pub(in crate::store) jobs: Vec<Job>,
    pub(in crate::store) events: Vec<EventRow>,
    pub(in crate::store) logs: Vec<LogWrite>,
    pub(in crate::store) entities: Vec<EntityRow>,
    /// Events inserted claimed, for this process's workers once committed.
    pub(in crate::store) handed: Vec<Handed>,
    /// Events inserted claimed whose ids alone wait for this process's workers.
    pub(in crate::store) spilled: Vec<Spilled>,
    /// Events given places in the queue but inserted unclaimed instead (see
    /// [`Rows::add_events`]): their places are to be given back.
    pub(in crate::store) released: usize,
}

impl Rows {
    /// A job's new (NEW) events, with their event-log entries; their ids (an entity is written
    /// when an event about it finishes, see [`super::history::entity_upsert`]). With
    /// `hand`, the events are inserted claimed and kept for this process's workers.
    pub(in crate::store) fn add_events(
        &mut self,
        job: &Job,
        data_type: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        hand: Option<(Claim, &Arc<Job>)>,
    ) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            let id = Uuid::now_v7();
            ids.push(id);
            self.logs.push(LogWrite {
                org_id: job.org_id,
                kind: "EVENT_STATUS_CHANGE",
                stream_id: job.stream_id,
                job_id: job.id,
                event_id: Some(id),
                from: None,
                to: EventStatus::New.as_str(),
                details: json!({}),
            });
            let (payload_in, value) = match e.payload_in {
                Payload::Value(v) => (JsonText::of(&v), Some(v)),
                Payload::Received(text) => (text, None),
            };
            // Received text is parsed only for an event handed to the workers at once. It
            // parsed when received (`ingest::scan` reads by the same rules), so this does not
            // fail; if it did, the event would be stored unclaimed, for any worker to read.
            let (hand, value) = match (hand, value) {
                (Some((claim, job)), None) if !claim.spilled => match payload_in.value() {
                    Ok(v) => (Some((claim, job)), Some(v)),
                    Err(_) => {
                        self.released += 1;
                        (None, None)
                    }
                },
                other => other,
            };
            if let Some((claim, _)) = hand.filter(|(c, _)| c.spilled) {
                self.spilled.push(Spilled {
                    id,
                    stream_id: job.stream_id,
                    lease_end: claim.lease_end,
                });
            } else if let Some((claim, job)) = hand {
                self.handed.push(Handed {
                    event: Event {
                        id,
                        org_id: job.org_id,
                        stream_id: job.stream_id,
                        job_id: job.id,
                        status: EventStatus::New,
                        data_type: data_type.to_string(),
                        entity_id: e.entity_id.clone(),
                        payload_in: value.map(StoredJson),
                        payload_out: None,
                        error_code: None,
                        message: None,
                        retries_remaining: None,
                        next_attempt_at: Some(now),
                        last_attempt_at: None,
                        attempt_count: 0,
                        claim_token: Some(claim.token),
                        lease_expires_at: Some(claim.lease_end),
                        original_event_id: e.original_event_id,
                        origin: e.origin.clone(),
                        destination_ref: None,
                        ignored: false,
                        transform_logs: None,
                        created_at: now,
                        updated_at: now,
                    },
                    job: job.clone(),
                });
            }
            self.events.push(EventRow {
                id,
                org_id: job.org_id,
                stream_id: job.stream_id,
                job_id: job.id,
                status: EventStatus::New.as_str(),
                data_type: data_type.to_string(),
                entity_id: e.entity_id,
                payload_in: Some(payload_in),
                payload_out: None,
                retries_remaining: None,
                next_attempt_at: Some(now),
                original_event_id: e.original_event_id,
                origin: e.origin,
                claim: hand.map(|(c, _)| c),
                created_at: now,
            });
        }
        ids
    }

    /// Whether any of these rows is work for whichever worker claims it: an event not handed
    /// to this process's workers, or a job to run.
    pub(in crate::store) fn for_any_worker(&self) -> bool {
        self.events.iter().any(|e| e.claim.is_none())
            || self.jobs.iter().any(|j| j.source_done_at.is_none())
    }

    /// The inserts of `parts`, in an order the foreign keys accept; their log entries are
    /// written apart, a row per organisation (see [`write_log`]).
    pub(in crate::store) fn statements<'a>(
        backend: Backend,
        parts: impl Iterator<Item = &'a Rows> + Clone,
        now: Timestamp,
    ) -> Vec<Statement> {
        let mut statements = Vec::new();
        let jobs: Vec<&Job> = parts.clone().flat_map(|r| r.jobs.iter()).collect();
        for chunk in jobs.chunks(CHUNK) {
            statements.push(jobs_insert(backend, chunk));
        }
        let events: Vec<&EventRow> = parts.clone().flat_map(|r| r.events.iter()).collect();
        for chunk in events.chunks(CHUNK) {
            statements.push(events_insert(backend, chunk.iter().copied()));
        }
        let mut entities: Vec<&EntityRow> = parts.flat_map(|r| r.entities.iter()).collect();
        // One order for every writer avoids deadlocks between concurrent upserts; one row per
        // entity (a statement cannot upsert a row twice), the newest event's.
        entities.sort_by(|a, b| {
            (a.org, &a.data_type, &a.entity, std::cmp::Reverse(a.event)).cmp(&(
                b.org,
                &b.data_type,
                &b.entity,
                std::cmp::Reverse(b.event),
            ))
        });
        entities
            .dedup_by(|a, b| a.org == b.org && a.data_type == b.data_type && a.entity == b.entity);
        for chunk in entities.chunks(CHUNK) {
            let changes: Vec<EntityChange<'_>> = chunk
                .iter()
                .map(|e| EntityChange {
                    org: e.org,
                    data_type: &e.data_type,
                    entity: &e.entity,
                    status: e.status,
                    event: e.event,
                    code: e.code.as_deref(),
                    message: e.message.as_deref(),
                })
                .collect();
            statements.push(entity_upsert(backend, &changes, now));
        }
        statements
    }
}

pub(in crate::store) fn jobs_insert(backend: Backend, jobs: &[&Job]) -> Statement {
    let cols: Vec<&'static str> = jobs
        .first()
        .map(|j| {
            super::Record::values(*j)
                .into_iter()
                .map(|(c, _)| c)
                .collect()
        })
        .unwrap_or_default();
    rows_insert(
        backend,
        &format!("INSERT INTO jobs ({})", cols.join(", ")),
        jobs.iter().map(|j| {
            super::Record::values(*j)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        }),
    )
}

pub(in crate::store) fn job_log(job: &Job, from: Option<JobStatus>, to: JobStatus) -> LogWrite {
    LogWrite::job(
        job.org_id,
        job.stream_id,
        job.id,
        from,
        to,
        json!({"trigger": job.trigger, "original_job_id": job.original_job_id}),
    )
}

pub(in crate::store) fn new_job_row(new: NewJob, now: Timestamp, status: JobStatus) -> Job {
    let started = status == JobStatus::Processing;
    Job {
        id: Uuid::now_v7(),
        org_id: new.org_id,
        stream_id: new.stream_id,
        status,
        trigger: new.trigger.into(),
        message: None,
        settings: Json(new.settings),
        payload: new.payload.map(StoredJson),
        original_job_id: new.original_job_id,
        run_at: if started { now } else { new.run_at },
        attempt: i64::from(started),
        claim_token: None,
        claimed_by: None,
        lease_expires_at: None,
        source_done_at: started.then_some(now),
        aggregate_next_at: None,
        aggregate_attempts: 0,
        created_at: now,
        updated_at: now,
        started_at: started.then_some(now),
        finished_at: None,
    }
}

impl Rows {
    /// A PENDING job and its log entry; its id.
    pub(in crate::store) fn pending_job(&mut self, new: NewJob, now: Timestamp) -> Uuid {
        let job = new_job_row(new, now, JobStatus::Pending);
        self.logs.push(job_log(&job, None, JobStatus::Pending));
        let id = job.id;
        self.jobs.push(job);
        id
    }

    /// A job whose source is done, with its events queued (claimed for this process's
    /// workers with `claim`); its id and the events' ids.
    pub(in crate::store) fn job_with_events(
        &mut self,
        new: NewJob,
        data_type: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        claim: Option<Claim>,
    ) -> (Uuid, Vec<Uuid>) {
        let job = new_job_row(new, now, JobStatus::Processing);
        self.logs.push(job_log(&job, None, JobStatus::Pending));
        self.logs.push(job_log(
            &job,
            Some(JobStatus::Pending),
            JobStatus::Processing,
        ));
        let shared = claim.map(|c| (c, Arc::new(job.clone())));
        let hand = shared.as_ref().map(|(c, j)| (*c, j));
        let ids = self.add_events(&job, data_type, events, now, hand);
        let id = job.id;
        self.jobs.push(job);
        (id, ids)
    }
}

impl Store {
    /// Tells workers of every node that work was queued (Postgres NOTIFY), once the work has
    /// committed: never in the transaction that writes. At commit a NOTIFY takes a lock that
    /// every notifying transaction of the database shares and holds it until its commit is on
    /// disk, so writes that notify would commit one after another; the two commit writers
    /// would wait for each other's WAL flush (sampled waits of the bench's ingest phase:
    /// `Lock:object` beside `IO:WALSync`). Nor is it waited for: the notification is a hint,
    /// sent by the store's [`super::wake::Waker`]; if it is lost (the database went away just
    /// after the commit), the workers find the work at their next poll.
    /// (SQLite serves one node, whose workers are woken in process.)
    pub(in crate::store) fn notify_work(&self) {
        if let Some(waker) = &self.shared.waker {
            waker.wake();
        }
    }

    /// Writes `rows` and their log entries in one transaction, waking other nodes' workers if
    /// asked.
    pub(in crate::store) async fn run_rows(
        &self,
        rows: &Rows,
        now: Timestamp,
        notify: bool,
    ) -> StoreResult<()> {
        let statements = Rows::statements(self.backend(), std::iter::once(rows), now);
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for (sql, vals) in &statements {
                execute!(Db, tx, sql, vals);
            }
            write_log!(Db, tx, &rows.logs, now);
            super::audit_in!(self, Db, tx);
            tx.commit().await?;
        });
        if notify {
            self.notify_work();
        }
        Ok(())
    }
}

#[cfg(test)]
mod marks_tests {
    use super::{sql_marks, sql_not_among_ids};

    #[test]
    fn placeholder_lists_start_where_they_are_told() {
        assert_eq!(sql_marks(3, 2), "$3, $4");
        assert_eq!(sql_marks(1, 1), "$1");
        assert_eq!(sql_marks(5, 0), "");
        assert_eq!(sql_not_among_ids(6, 2), " AND id NOT IN ($6, $7)");
        assert_eq!(sql_not_among_ids(6, 0), "");
    }
}
