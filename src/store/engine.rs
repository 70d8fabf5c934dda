//! The engine's side of the store: jobs and events as queue rows, delivery attempts, the event
//! log and entities.
//!
//! Claims follow River: one statement marks rows as held (a fresh claim token and a lease) and
//! returns them; Postgres skips rows other workers hold (`FOR UPDATE SKIP LOCKED`), SQLite has
//! one writer at a time. Every completion names the claim token, so a worker whose lease ran
//! out and whose work was taken over changes nothing. Every status change is written with its
//! event-log entry (and the entity's last status) in one transaction.

use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

use super::{on_pool, Backend, BeginWrite, Bind, Event, Job, LogEntry, Store, StoreResult, Val};
use crate::domain::{EventStatus, JobStatus, Timestamp};

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub org_id: Uuid,
    pub stream_id: Uuid,
    pub trigger: &'static str,
    pub settings: Value,
    /// Records given with the job (upload, webhook, replicate) instead of read by the source.
    pub payload: Option<Value>,
    pub original_job_id: Option<Uuid>,
    pub run_at: Timestamp,
}

/// An event a job's source produced.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub payload_in: Value,
    pub entity_id: Option<String>,
    pub original_event_id: Option<Uuid>,
}

/// A delivery attempt to record.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub destination_id: Uuid,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: &'static str,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub http_status_name: Option<String>,
    pub response_excerpt: Option<String>,
    pub duration_ms: i64,
}

/// What an attempt means for its event.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Ok,
    /// Stay TRANSFORMED; try again at this time.
    Retry {
        at: Timestamp,
        retries_remaining: i64,
    },
    Failed,
}

/// Which open events an abort ends.
#[derive(Debug, Clone, Copy)]
pub enum AbortScope {
    Event(Uuid),
    Job(Uuid),
    /// Every open event of a stream (it was deactivated).
    Stream(Uuid),
}

/// A change to a held event, applied only if the event is still held under the token and in a
/// status from which the domain allows the move.
#[derive(Debug, Clone, Default)]
pub struct EventChange {
    /// The new status; `None` keeps the status (a retry scheduled).
    pub to: Option<EventStatus>,
    pub payload_out: Option<Value>,
    pub error_code: Option<Option<String>>,
    pub message: Option<Option<String>>,
    pub retries_remaining: Option<Option<i64>>,
    pub next_attempt_at: Option<Option<Timestamp>>,
    /// An attempt was made: bump the count and stamp `last_attempt_at`.
    pub attempted: bool,
    /// Give up the claim (the worker is done with the event for now).
    pub release: bool,
    /// What the transformation logged.
    pub logs: Option<Vec<String>>,
    /// Further outputs of a record the transformation split: each becomes a TRANSFORMED
    /// event of the same job and entity, in the same commit.
    pub siblings: Vec<Value>,
    /// When the siblings' first delivery is due (`None`: they wait for a combined delivery).
    pub siblings_due: Option<Timestamp>,
    /// The siblings' delivery attempts to come.
    pub siblings_retries: Option<i64>,
}

/// An event-log entry and entity change to write with a status change.
struct LogWrite {
    org_id: Uuid,
    kind: &'static str,
    stream_id: Uuid,
    job_id: Uuid,
    event_id: Option<Uuid>,
    from: Option<&'static str>,
    to: &'static str,
    details: Value,
}

/// Tells workers of every node that work was queued (Postgres NOTIFY, delivered at commit).
macro_rules! notify_work {
    ($store:expr, $db:ident, $tx:ident) => {
        if $store.backend() == Backend::Postgres {
            sqlx::query::<$db>("SELECT pg_notify('wharf_work', '')")
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// The event-log entry of a job finished by [`finish_jobs_sql`].
fn finish_log(org: Uuid, stream: Uuid, job_id: Uuid, status: &str, now: Timestamp) -> Statement {
    log_insert(&[finish_entry(org, stream, job_id, status)], now)
}

fn finish_entry(org: Uuid, stream: Uuid, job_id: Uuid, status: &str) -> LogWrite {
    let to = JobStatus::parse(status)
        .unwrap_or(JobStatus::Finished)
        .as_str();
    LogWrite {
        org_id: org,
        kind: "JOB_STATUS_CHANGE",
        stream_id: stream,
        job_id,
        event_id: None,
        from: Some("PROCESSING"),
        to,
        details: json!({}),
    }
}

/// A statement and its values, to run in a transaction with others.
type Statement = (String, Vec<Val>);

/// Statements binding more values than this are one-off shapes (a batch's multi-row insert):
/// prepared and dropped, not kept in the connection's statement cache, where on SQLite each
/// would hold its compiled program and on Postgres would evict the statements that repeat.
const KEEP_PREPARED: usize = 64;

fn keep_prepared(vals: &[Val]) -> bool {
    vals.len() <= KEEP_PREPARED
}

/// Rows per multi-row insert: well under SQLite's bound-parameter limit.
const CHUNK: usize = 300;

/// A multi-row insert: `head` is `INSERT INTO t (cols…)`, each row one value per column.
fn rows_insert(head: &str, rows: impl IntoIterator<Item = Vec<Val>>) -> Statement {
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

fn log_insert<'a>(entries: impl IntoIterator<Item = &'a LogWrite>, now: Timestamp) -> Statement {
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
struct EntityChange<'a> {
    org: Uuid,
    data_type: &'a str,
    entity: &'a str,
    status: &'a str,
    event: Uuid,
    code: Option<&'a str>,
    message: Option<&'a str>,
}

/// Entities keep the last status of the business object events are about.
fn entity_upsert(rows: &[EntityChange<'_>], now: Timestamp) -> Statement {
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

/// One new row of `events`.
struct EventRow {
    id: Uuid,
    org_id: Uuid,
    stream_id: Uuid,
    job_id: Uuid,
    status: &'static str,
    data_type: String,
    entity_id: Option<String>,
    payload_in: Option<Value>,
    payload_out: Option<Value>,
    retries_remaining: Option<i64>,
    next_attempt_at: Option<Timestamp>,
    original_event_id: Option<Uuid>,
}

fn events_insert<'a>(rows: impl IntoIterator<Item = &'a EventRow>, now: Timestamp) -> Statement {
    rows_insert(
        "INSERT INTO events (id, org_id, stream_id, job_id, status, data_type, entity_id, \
         payload_in, payload_out, retries_remaining, next_attempt_at, original_event_id, \
         attempt_count, ignored, created_at, updated_at)",
        rows.into_iter().map(|r| {
            vec![
                Val::from(r.id),
                Val::from(r.org_id),
                Val::from(r.stream_id),
                Val::from(r.job_id),
                Val::from(r.status),
                Val::from(r.data_type.as_str()),
                Val::Text(r.entity_id.clone()),
                Val::Json(r.payload_in.clone()),
                Val::Json(r.payload_out.clone()),
                Val::Int(r.retries_remaining),
                Val::Ts(r.next_attempt_at),
                Val::from(r.original_event_id),
                Val::Int(Some(0)),
                Val::Bool(false),
                Val::from(now),
                Val::from(now),
            ]
        }),
    )
}

/// New rows of one write or of several batched together (webhook pushes): jobs, events,
/// event-log entries and entities, inserted with one multi-row statement per table and chunk.
#[derive(Default)]
pub(super) struct Rows {
    jobs: Vec<Job>,
    events: Vec<EventRow>,
    logs: Vec<LogWrite>,
    entities: Vec<EntityRow>,
}

/// An entity's last status, owned (see [`EntityChange`]).
struct EntityRow {
    org: Uuid,
    data_type: String,
    entity: String,
    status: &'static str,
    event: Uuid,
    code: Option<String>,
    message: Option<String>,
}

impl Rows {
    /// A job's new (NEW) events, with their event-log entries and entities; their ids.
    fn add_events(
        &mut self,
        job: &Job,
        data_type: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
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
                to: "NEW",
                details: json!({}),
            });
            if let Some(entity) = &e.entity_id {
                self.entities.push(EntityRow {
                    org: job.org_id,
                    data_type: data_type.to_string(),
                    entity: entity.clone(),
                    status: "NEW",
                    event: id,
                    code: None,
                    message: None,
                });
            }
            self.events.push(EventRow {
                id,
                org_id: job.org_id,
                stream_id: job.stream_id,
                job_id: job.id,
                status: "NEW",
                data_type: data_type.to_string(),
                entity_id: e.entity_id,
                payload_in: Some(e.payload_in),
                payload_out: None,
                retries_remaining: None,
                next_attempt_at: Some(now),
                original_event_id: e.original_event_id,
            });
        }
        ids
    }

    /// The inserts of `parts`, in an order the foreign keys accept.
    fn statements<'a>(
        parts: impl Iterator<Item = &'a Rows> + Clone,
        now: Timestamp,
    ) -> Vec<Statement> {
        let mut statements = Vec::new();
        let jobs: Vec<&Job> = parts.clone().flat_map(|r| r.jobs.iter()).collect();
        for chunk in jobs.chunks(CHUNK) {
            statements.push(jobs_insert(chunk));
        }
        let events: Vec<&EventRow> = parts.clone().flat_map(|r| r.events.iter()).collect();
        for chunk in events.chunks(CHUNK) {
            statements.push(events_insert(chunk.iter().copied(), now));
        }
        let logs: Vec<&LogWrite> = parts.clone().flat_map(|r| r.logs.iter()).collect();
        for chunk in logs.chunks(CHUNK) {
            statements.push(log_insert(chunk.iter().copied(), now));
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
            statements.push(entity_upsert(&changes, now));
        }
        statements
    }
}

impl Rows {
    /// The extra events of a split record (see `EventChange::siblings`), with their log
    /// entries.
    fn add_siblings(&mut self, ev: &Event, change: &EventChange) {
        for out in &change.siblings {
            let id = Uuid::now_v7();
            self.events.push(EventRow {
                id,
                org_id: ev.org_id,
                stream_id: ev.stream_id,
                job_id: ev.job_id,
                status: "TRANSFORMED",
                data_type: ev.data_type.clone(),
                entity_id: ev.entity_id.clone(),
                payload_in: ev.payload_in.as_ref().map(|j| j.0.clone()),
                payload_out: Some(out.clone()),
                retries_remaining: change.siblings_retries,
                next_attempt_at: change.siblings_due,
                original_event_id: None,
            });
            self.logs.push(LogWrite {
                org_id: ev.org_id,
                kind: "EVENT_STATUS_CHANGE",
                stream_id: ev.stream_id,
                job_id: ev.job_id,
                event_id: Some(id),
                from: None,
                to: "TRANSFORMED",
                details: json!({"split_from": ev.id}),
            });
        }
    }
}

const ATTEMPT_INSERT: &str = "INSERT INTO delivery_attempts (id, org_id, event_id, job_id, \
    destination_id, started_at, finished_at, outcome, error_code, http_status, http_status_name, \
    response_excerpt, duration_ms)";

/// Finishes the jobs `$2…$(n+1)` (at `$1`) whose source is done and whose events are all
/// terminal: FINISHED when every event is OK, FINISHED_WITH_ISSUES otherwise. Matches nothing
/// else.
fn finish_jobs_sql(n: usize) -> String {
    let ids: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
    format!(
        "UPDATE jobs SET status = CASE WHEN EXISTS (SELECT 1 FROM events \
           WHERE events.job_id = jobs.id AND events.status IN ('ERROR', 'FAILED', 'ABORTED')) \
           THEN 'FINISHED_WITH_ISSUES' ELSE 'FINISHED' END, finished_at = $1, updated_at = $1 \
         WHERE id IN ({}) AND status = 'PROCESSING' AND source_done_at IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM events WHERE events.job_id = jobs.id \
             AND events.status IN ('NEW', 'TRANSFORMED')) \
         RETURNING id, org_id, stream_id, status",
        ids.join(", ")
    )
}

/// An event change ready to commit, alone or with others.
pub(super) struct Planned {
    job_id: Uuid,
    /// The delivery attempt's row, written whatever the update does.
    attempt: Option<Vec<Val>>,
    /// Changes the event if it is still held and in a status the move starts from.
    update: Statement,
    /// Written only if the update changed the event: log entries, the entity, split-off
    /// events.
    rows: Rows,
    terminal: bool,
}

impl super::writer::Batch for Planned {
    type Answer = bool;
    const MAX: usize = 128;
    fn commit<'a>(
        store: &'a Store,
        items: &'a [Self],
        // Event changes carry no gates: a worker's change commits whatever became of it.
        _: &'a [Option<std::sync::Arc<super::writer::CommitGate>>],
    ) -> super::writer::Committing<'a, bool> {
        Box::pin(store.change_together(items))
    }
}

impl super::writer::Batch for Push {
    type Answer = Ingested;
    const MAX: usize = 256;
    fn commit<'a>(
        store: &'a Store,
        items: &'a [Self],
        gates: &'a [Option<std::sync::Arc<super::writer::CommitGate>>],
    ) -> super::writer::Committing<'a, Ingested> {
        Box::pin(store.ingest_together(items, gates))
    }
}

/// The statements of `change` to the event `ev` held under `token` (see
/// [`Store::change_event`]).
fn plan_change(
    ev: &Event,
    token: Uuid,
    mut change: EventChange,
    attempt: Option<NewAttempt>,
    now: Timestamp,
) -> Planned {
    let mut sets = vec!["updated_at = $3".to_string()];
    let mut vals = vec![Val::from(ev.id), Val::from(token), Val::from(now)];
    fn put(sets: &mut Vec<String>, vals: &mut Vec<Val>, col: &str, v: Val) {
        vals.push(v);
        sets.push(format!("{col} = ${}", vals.len()));
    }
    // A NEW event transformed and delivered in one go records both steps in one commit:
    // a crash before it leaves the event NEW, to be processed again, as any crash before
    // a delivery's commit does.
    let combined = ev.status == EventStatus::New.as_str()
        && change.payload_out.is_some()
        && change.to != Some(EventStatus::Transformed);
    let from: Vec<EventStatus> = match change.to {
        _ if combined => {
            let to = change.to.unwrap_or(EventStatus::Transformed);
            put(&mut sets, &mut vals, "status", Val::from(to.as_str()));
            vec![EventStatus::New]
        }
        Some(to) => {
            put(&mut sets, &mut vals, "status", Val::from(to.as_str()));
            EventStatus::sources_of(to).to_vec()
        }
        None => EventStatus::parse(&ev.status).into_iter().collect(),
    };
    if let Some(v) = change.payload_out.take() {
        put(&mut sets, &mut vals, "payload_out", Val::Json(Some(v)));
    }
    if let Some(v) = &change.error_code {
        put(&mut sets, &mut vals, "error_code", Val::Text(v.clone()));
    }
    if let Some(v) = &change.message {
        put(&mut sets, &mut vals, "message", Val::Text(v.clone()));
    }
    if let Some(v) = change.retries_remaining {
        put(&mut sets, &mut vals, "retries_remaining", Val::Int(v));
    }
    if let Some(v) = change.next_attempt_at {
        put(&mut sets, &mut vals, "next_attempt_at", Val::Ts(v));
    }
    if let Some(lines) = &change.logs {
        let v = (!lines.is_empty()).then(|| json!(lines));
        put(&mut sets, &mut vals, "transform_logs", Val::Json(v));
    }
    if change.attempted {
        sets.push("attempt_count = attempt_count + 1".into());
        put(&mut sets, &mut vals, "last_attempt_at", Val::from(now));
    }
    if change.release {
        sets.push("claim_token = NULL".into());
        sets.push("lease_expires_at = NULL".into());
    }
    let sql = format!(
        "UPDATE events SET {} WHERE id = $1 AND claim_token = $2 AND status IN ({})",
        sets.join(", "),
        if from.is_empty() {
            "''".to_string()
        } else {
            statuses_sql(&from)
        }
    );
    let mut rows = Rows::default();
    if !change.siblings.is_empty() {
        rows.add_siblings(ev, &change);
    }
    let event_log = |from: Option<&'static str>, to: EventStatus| LogWrite {
        org_id: ev.org_id,
        kind: "EVENT_STATUS_CHANGE",
        stream_id: ev.stream_id,
        job_id: ev.job_id,
        event_id: Some(ev.id),
        from,
        to: to.as_str(),
        details: json!({"error_code": change.error_code.clone().flatten()}),
    };
    if combined {
        rows.logs
            .push(event_log(Some("NEW"), EventStatus::Transformed));
    }
    if let Some(to) = change
        .to
        .filter(|t| *t != EventStatus::Transformed || !combined)
    {
        let from = if combined {
            Some("TRANSFORMED")
        } else {
            EventStatus::parse(&ev.status).map(EventStatus::as_str)
        };
        rows.logs.push(event_log(from, to));
    }
    if let Some(to) = change.to.or(combined.then_some(EventStatus::Transformed)) {
        if let Some(entity) = &ev.entity_id {
            rows.entities.push(EntityRow {
                org: ev.org_id,
                data_type: ev.data_type.clone(),
                entity: entity.clone(),
                status: to.as_str(),
                event: ev.id,
                code: change.error_code.clone().flatten(),
                message: change.message.clone().flatten(),
            });
        }
    }
    let attempt = attempt.map(|a| {
        vec![
            Val::from(Uuid::now_v7()),
            Val::from(ev.org_id),
            Val::from(ev.id),
            Val::from(ev.job_id),
            Val::from(a.destination_id),
            Val::from(a.started_at),
            Val::from(a.finished_at),
            Val::from(a.outcome),
            Val::Text(a.error_code),
            Val::Int(a.http_status),
            Val::Text(a.http_status_name),
            Val::Text(a.response_excerpt),
            Val::from(a.duration_ms),
        ]
    });
    Planned {
        job_id: ev.job_id,
        attempt,
        update: (sql, vals),
        rows,
        terminal: change.to.is_some_and(EventStatus::is_terminal),
    }
}

/// A push ready to commit: its jobs' rows and the job ids to answer with.
pub(super) struct Push {
    pub source_id: Uuid,
    pub delivery_id: Option<String>,
    pub ids: Vec<Uuid>,
    rows: Rows,
}

/// A job a push creates.
#[derive(Debug, Clone)]
pub struct IngestJob {
    pub new: NewJob,
    pub data_type: String,
    /// The events, when the push carries the records; `None` queues the job with its
    /// `payload` for a worker to complete (thin payloads fetched from the system).
    pub events: Option<Vec<NewEvent>>,
}

/// What storing a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// New jobs, one per active stream of the source.
    Created(Vec<Uuid>),
    /// The delivery id was received before; nothing was stored. The first delivery's job.
    Duplicate(Uuid),
}

fn jobs_insert(jobs: &[&Job]) -> Statement {
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
        &format!("INSERT INTO jobs ({})", cols.join(", ")),
        jobs.iter().map(|j| {
            super::Record::values(*j)
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        }),
    )
}

fn job_log(job: &Job, from: Option<&'static str>, to: &'static str) -> LogWrite {
    LogWrite {
        org_id: job.org_id,
        kind: "JOB_STATUS_CHANGE",
        stream_id: job.stream_id,
        job_id: job.id,
        event_id: None,
        from,
        to,
        details: json!({"trigger": job.trigger, "original_job_id": job.original_job_id}),
    }
}

fn new_job_row(new: NewJob, now: Timestamp, status: JobStatus) -> Job {
    let started = status == JobStatus::Processing;
    Job {
        id: Uuid::now_v7(),
        org_id: new.org_id,
        stream_id: new.stream_id,
        status: status.as_str().into(),
        trigger: new.trigger.into(),
        message: None,
        settings: Json(new.settings),
        payload: new.payload.map(Json),
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
    fn pending_job(&mut self, new: NewJob, now: Timestamp) -> Uuid {
        let job = new_job_row(new, now, JobStatus::Pending);
        self.logs.push(job_log(&job, None, "PENDING"));
        let id = job.id;
        self.jobs.push(job);
        id
    }

    /// A job whose source is done, with its events queued; its id and the events' ids.
    fn job_with_events(
        &mut self,
        new: NewJob,
        data_type: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> (Uuid, Vec<Uuid>) {
        let job = new_job_row(new, now, JobStatus::Processing);
        self.logs.push(job_log(&job, None, "PENDING"));
        self.logs.push(job_log(&job, Some("PENDING"), "PROCESSING"));
        let ids = self.add_events(&job, data_type, events, now);
        let id = job.id;
        self.jobs.push(job);
        (id, ids)
    }
}

fn statuses_sql(list: &[EventStatus]) -> String {
    list.iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    fn skip_locked(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Queues a job (PENDING) and logs it.
    pub async fn create_job(&self, new: NewJob) -> StoreResult<Job> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        rows.pending_job(new, now);
        self.run_statements(&Rows::statements(std::iter::once(&rows), now), true)
            .await?;
        Ok(rows.jobs.remove(0))
    }

    /// Creates a job whose records are already known (an upload, events created by hand,
    /// replicas) together with its events, in one transaction: the job starts PROCESSING with
    /// its source done, and the events are queued. Returns the job and the events' ids.
    pub async fn create_job_with_events(
        &self,
        new: NewJob,
        data_type: &str,
        events: Vec<NewEvent>,
    ) -> StoreResult<(Job, Vec<Uuid>)> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        let (_, ids) = rows.job_with_events(new, data_type, events, now);
        self.run_statements(&Rows::statements(std::iter::once(&rows), now), true)
            .await?;
        let job = rows.jobs.remove(0);
        if ids.is_empty() {
            self.finish_job(job.id).await?;
        }
        Ok((job, ids))
    }

    /// Stores a received push: its jobs (with their events, or queued with the records for
    /// the worker to complete) and, when the sender gave a delivery id, the receipt that makes
    /// a repeat of it a duplicate, all in one transaction. A delivery id already received
    /// (even by a concurrent request) stores nothing and names the first delivery's job.
    ///
    /// Pushes arriving together are committed together (group commit, see
    /// [`super::writer`]): one transaction and one multi-row insert per table for all of them,
    /// and every caller is answered only after that commit. With the request's `gate`, the push
    /// is never committed once its request has given up (see [`super::writer`]).
    pub async fn ingest(
        &self,
        source_id: Uuid,
        delivery_id: Option<&str>,
        jobs: Vec<IngestJob>,
        gate: Option<std::sync::Arc<super::writer::CommitGate>>,
    ) -> StoreResult<Ingested> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        let mut ids = Vec::new();
        for j in jobs {
            let id = match j.events {
                Some(events) => rows.job_with_events(j.new, &j.data_type, events, now).0,
                None => rows.pending_job(j.new, now),
            };
            ids.push(id);
        }
        if ids.is_empty() {
            return Ok(Ingested::Created(ids));
        }
        let push = Push {
            source_id,
            delivery_id: delivery_id.map(str::to_string),
            ids,
            rows,
        };
        self.shared.pushes.submit(self, push, gate).await
    }

    /// Commits pushes in one transaction; one answer per push, in order.
    pub(super) async fn ingest_together(
        &self,
        pushes: &[Push],
        gates: &[Option<std::sync::Arc<super::writer::CommitGate>>],
    ) -> StoreResult<Vec<Ingested>> {
        let now = Timestamp::now();
        // A delivery id seen twice in one batch: the later push is a duplicate of the first.
        let mut first: std::collections::HashMap<(Uuid, &str), usize> = Default::default();
        let mut repeat_of: Vec<Option<usize>> = vec![None; pushes.len()];
        let mut receipts: Vec<(Uuid, &str, Uuid)> = Vec::new();
        for (i, p) in pushes.iter().enumerate() {
            if let Some(d) = p.delivery_id.as_deref() {
                match first.entry((p.source_id, d)) {
                    std::collections::hash_map::Entry::Occupied(o) => repeat_of[i] = Some(*o.get()),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(i);
                        receipts.push((p.source_id, d, p.ids[0]));
                    }
                }
            }
        }
        // One order for every writer: concurrent batches never wait on each other in a cycle.
        receipts.sort();
        let answers = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            // Receipts taken by an earlier delivery (committed, or committing concurrently:
            // the insert waits for it) are not returned.
            let mut fresh: std::collections::HashSet<(Uuid, String)> = Default::default();
            for chunk in receipts.chunks(CHUNK) {
                let (mut sql, vals) = rows_insert(
                    "INSERT INTO webhook_receipts (source_id, delivery_id, job_id, received_at)",
                    chunk.iter().map(|(s, d, j)| vec![Val::from(*s), Val::from(*d), Val::from(*j), Val::from(now)]),
                );
                sql.push_str(" ON CONFLICT (source_id, delivery_id) DO NOTHING RETURNING source_id, delivery_id");
                let taken = sqlx::query_as::<Db, (Uuid, String)>(&sql)
                    .bind_all(&vals)
                    .persistent(keep_prepared(&vals))
                    .fetch_all(&mut *tx)
                    .await?;
                fresh.extend(taken);
            }
            let mut answers: Vec<Option<Ingested>> = vec![None; pushes.len()];
            let mut stored = Vec::new();
            for (i, p) in pushes.iter().enumerate() {
                if repeat_of[i].is_some() {
                    continue;
                }
                match p.delivery_id.as_deref() {
                    Some(d) if !fresh.contains(&(p.source_id, d.to_string())) => {
                        let original = sqlx::query_scalar::<Db, Uuid>(
                            "SELECT job_id FROM webhook_receipts WHERE source_id = $1 AND delivery_id = $2",
                        )
                        .bind(p.source_id)
                        .bind(d)
                        .fetch_one(&mut *tx)
                        .await?;
                        answers[i] = Some(Ingested::Duplicate(original));
                    }
                    _ => {
                        answers[i] = Some(Ingested::Created(p.ids.clone()));
                        stored.push(&p.rows);
                    }
                }
            }
            if !stored.is_empty() {
                for (sql, vals) in Rows::statements(stored.iter().copied(), now) {
                    sqlx::query::<Db>(&sql)
                        .bind_all(&vals)
                        .persistent(keep_prepared(&vals))
                        .execute(&mut *tx)
                        .await?;
                }
                notify_work!(self, Db, tx);
            }
            super::writer::enter_commit(gates)?;
            tx.commit().await?;
            answers
        });
        let mut out: Vec<Ingested> = Vec::with_capacity(pushes.len());
        for (i, a) in answers.into_iter().enumerate() {
            let answer = match (a, repeat_of[i]) {
                (Some(a), _) => a,
                (None, Some(j)) => match &out[j] {
                    Ingested::Created(ids) => Ingested::Duplicate(ids[0]),
                    Ingested::Duplicate(id) => Ingested::Duplicate(*id),
                },
                (None, None) => {
                    return Err(super::StoreError::Other(anyhow::anyhow!(
                        "push {i} of a batch was neither stored nor a repeat"
                    )))
                }
            };
            out.push(answer);
        }
        Ok(out)
    }

    /// Forgets receipts older than the dedup window.
    pub async fn purge_receipts(&self, before: Timestamp) -> StoreResult<u64> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>("DELETE FROM webhook_receipts WHERE received_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    /// Runs statements in one transaction, waking other nodes' workers if asked.
    async fn run_statements(
        &self,
        statements: &[(String, Vec<Val>)],
        notify: bool,
    ) -> StoreResult<()> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for (sql, vals) in statements {
                sqlx::query::<Db>(sql)
                    .bind_all(vals)
                    .persistent(keep_prepared(vals))
                    .execute(&mut *tx)
                    .await?;
            }
            if notify {
                notify_work!(self, Db, tx);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due jobs (or jobs whose source run lost its lease) for `worker`.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Job>> {
        let now = Timestamp::now();
        let sql = format!(
            "UPDATE jobs SET status = 'PROCESSING', claim_token = $1, claimed_by = $2, \
             lease_expires_at = $3, attempt = attempt + 1, started_at = COALESCE(started_at, $4), \
             updated_at = $4 \
             WHERE id IN (SELECT id FROM jobs WHERE (status = 'PENDING' AND run_at <= $4) \
               OR (status = 'PROCESSING' AND source_done_at IS NULL AND claim_token IS NOT NULL \
               AND lease_expires_at < $4) \
               ORDER BY run_at LIMIT $5 {}) RETURNING *",
            self.skip_locked()
        );
        let lease_end = Timestamp::from_datetime(now.0 + lease);
        let jobs: Vec<Job> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let jobs = sqlx::query_as::<Db, Job>(&sql)
                .bind(token)
                .bind(worker)
                .bind(lease_end)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            // Only a first claim is a status change; a re-claim after a lost lease is not.
            let logs: Vec<_> = jobs
                .iter()
                .filter(|j| j.attempt == 1)
                .map(|j| LogWrite {
                    org_id: j.org_id,
                    kind: "JOB_STATUS_CHANGE",
                    stream_id: j.stream_id,
                    job_id: j.id,
                    event_id: None,
                    from: Some("PENDING"),
                    to: "PROCESSING",
                    details: json!({}),
                })
                .collect();
            if !logs.is_empty() {
                let (s, v) = log_insert(&logs, now);
                sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            jobs
        });
        Ok(jobs)
    }

    /// Stores the events a job's source produced and marks the source done, if the job is
    /// still held under `token`. A job with no events finishes at once. Returns false (and
    /// stores nothing) when the claim was lost.
    pub async fn complete_source(
        &self,
        job: &Job,
        token: Uuid,
        data_type: &str,
        events: Vec<NewEvent>,
    ) -> StoreResult<bool> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        let empty = rows.add_events(job, data_type, events, now).is_empty();
        let statements = Rows::statements(std::iter::once(&rows), now);
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let held = sqlx::query::<Db>(
                "UPDATE jobs SET source_done_at = $3, claim_token = NULL, lease_expires_at = NULL, \
                 updated_at = $3 WHERE id = $1 AND claim_token = $2 AND status = 'PROCESSING'",
            )
            .bind(job.id)
            .bind(token)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if held == 0 {
                return Ok(false);
            }
            for (sql, vals) in &statements {
                sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?;
            }
            if !empty {
                notify_work!(self, Db, tx);
            }
            tx.commit().await?;
        });
        if empty {
            self.finish_job(job.id).await?;
        }
        Ok(true)
    }

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

    /// Ends a job that has not produced its events yet (PENDING, or its source still
    /// running): FINISHED_WITH_ISSUES with the message. A worker running its source then
    /// stores nothing. Returns whether the job was ended here.
    pub async fn abort_job_source(
        &self,
        org: Uuid,
        job_id: Uuid,
        message: &str,
    ) -> StoreResult<bool> {
        let now = Timestamp::now();
        let ended = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as::<Db, (Uuid, String)>(
                "SELECT stream_id, status FROM jobs WHERE id = $1 AND org_id = $2 \
                 AND (status = 'PENDING' OR (status = 'PROCESSING' AND source_done_at IS NULL))",
            )
            .bind(job_id)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((stream_id, from)) = row else {
                return Ok(false);
            };
            let n = sqlx::query::<Db>(
                "UPDATE jobs SET status = 'FINISHED_WITH_ISSUES', message = $3, finished_at = $4, \
                 updated_at = $4, claim_token = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND status = $2 AND source_done_at IS NULL",
            )
            .bind(job_id)
            .bind(&from)
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                let from = JobStatus::parse(&from).map(JobStatus::as_str);
                let (s, v) = log_insert(
                    &[LogWrite {
                        org_id: org,
                        kind: "JOB_STATUS_CHANGE",
                        stream_id,
                        job_id,
                        event_id: None,
                        from,
                        to: "FINISHED_WITH_ISSUES",
                        details: json!({"message": message}),
                    }],
                    now,
                );
                sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(ended)
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

    /// The input payloads of a job's events, oldest first (to replicate the job).
    pub async fn job_payloads(&self, job_id: Uuid) -> StoreResult<Vec<(Uuid, Value)>> {
        let rows: Vec<(Uuid, Option<Json<Value>>)> = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (Uuid, Option<Json<Value>>)>(
                "SELECT id, payload_in FROM events WHERE job_id = $1 ORDER BY id",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, p)| (id, p.map(|j| j.0).unwrap_or(Value::Null)))
            .collect())
    }

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
            for stream_id in streams {
                let id = Uuid::now_v7();
                sqlx::query::<Db>(
                    "INSERT INTO jobs (id, org_id, stream_id, status, trigger, settings, run_at, \
                     attempt, created_at, updated_at) VALUES ($1, $2, $3, 'PENDING', 'scheduled', \
                     $4, $5, 0, $6, $6)",
                )
                .bind(id)
                .bind(source.org_id)
                .bind(stream_id)
                .bind(Json(json!({})))
                .bind(due)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let (s, v) = log_insert(
                    &[LogWrite {
                        org_id: source.org_id,
                        kind: "JOB_STATUS_CHANGE",
                        stream_id,
                        job_id: id,
                        event_id: None,
                        from: None,
                        to: "PENDING",
                        details: json!({"trigger": "scheduled", "scheduled_for": due}),
                    }],
                    now,
                );
                sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
                ids.push(id);
            }
            notify_work!(self, Db, tx);
            tx.commit().await?;
            ids
        });
        Ok(ids)
    }

    /// Makes a job's combined delivery due once every event of it is transformed (aggregate
    /// destinations). Like `finish_job`, it runs after each transformation commits, so the
    /// run after the last one always sees every event.
    pub async fn mark_aggregate_ready(&self, job_id: Uuid) -> StoreResult<bool> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "UPDATE jobs SET aggregate_next_at = $2 WHERE id = $1 AND status = 'PROCESSING' \
                 AND source_done_at IS NOT NULL AND aggregate_next_at IS NULL AND aggregate_attempts = 0 \
                 AND NOT EXISTS (SELECT 1 FROM events WHERE job_id = $1 AND status = 'NEW') \
                 AND EXISTS (SELECT 1 FROM events WHERE job_id = $1 AND status = 'TRANSFORMED' \
                   AND next_attempt_at IS NULL)",
            )
            .bind(job_id)
            .bind(Timestamp::now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Claims jobs whose combined delivery is due.
    pub async fn claim_aggregates(
        &self,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Job>> {
        let now = Timestamp::now();
        let sql = format!(
            "UPDATE jobs SET claim_token = $1, lease_expires_at = $2 \
             WHERE id IN (SELECT id FROM jobs WHERE status = 'PROCESSING' AND aggregate_next_at <= $3 \
               AND (claim_token IS NULL OR lease_expires_at < $3) \
               ORDER BY aggregate_next_at LIMIT $4 {}) RETURNING *",
            self.skip_locked()
        );
        let jobs = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Job>(&sql)
                .bind(token)
                .bind(Timestamp::from_datetime(now.0 + lease))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(jobs)
    }

    /// The events a job's combined delivery carries: transformed, waiting for it.
    pub async fn aggregate_members(&self, job_id: Uuid) -> StoreResult<Vec<Event>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Event>(
                "SELECT * FROM events WHERE job_id = $1 AND status = 'TRANSFORMED' \
                 AND next_attempt_at IS NULL ORDER BY id",
            )
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
            let mut sql = String::from(
                "INSERT INTO delivery_attempts (id, org_id, event_id, job_id, destination_id, \
                 started_at, finished_at, outcome, error_code, http_status, http_status_name, \
                 response_excerpt, duration_ms) VALUES ",
            );
            let mut vals = Vec::new();
            for (i, ev) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = vals.len();
                let marks: Vec<String> = (1..=13).map(|k| format!("${}", b + k)).collect();
                sql.push_str(&format!("({})", marks.join(", ")));
                vals.extend([
                    Val::from(Uuid::now_v7()),
                    Val::from(ev.org_id),
                    Val::from(ev.id),
                    Val::from(ev.job_id),
                    Val::from(attempt.destination_id),
                    Val::from(attempt.started_at),
                    Val::from(attempt.finished_at),
                    Val::from(attempt.outcome),
                    Val::Text(attempt.error_code.clone()),
                    Val::Int(attempt.http_status),
                    Val::Text(attempt.http_status_name.clone()),
                    Val::Text(attempt.response_excerpt.clone()),
                    Val::from(attempt.duration_ms),
                ]);
            }
            attempt_stmts.push((sql, vals));
        }
        let code = change.error_code.clone().flatten();
        let message = change.message.clone().flatten();
        let remaining = change.retries_remaining.flatten();
        let mut follow = Vec::new();
        if let Some(to) = change.to {
            for chunk in members.chunks(CHUNK) {
                let logs: Vec<_> = chunk
                    .iter()
                    .map(|ev| LogWrite {
                        org_id: ev.org_id,
                        kind: "EVENT_STATUS_CHANGE",
                        stream_id: ev.stream_id,
                        job_id: ev.job_id,
                        event_id: Some(ev.id),
                        from: Some("TRANSFORMED"),
                        to: to.as_str(),
                        details: json!({"error_code": code, "aggregate": true}),
                    })
                    .collect();
                follow.push(log_insert(&logs, now));
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
                entities.sort_by(|a, b| a.entity.cmp(b.entity));
                entities.dedup_by(|a, b| a.entity == b.entity);
                if !entities.is_empty() {
                    follow.push(entity_upsert(&entities, now));
                }
            }
        }
        let status = change.to.map(|t| t.as_str()).unwrap_or("TRANSFORMED");
        let held = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for (sql, vals) in &attempt_stmts {
                sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?;
            }
            let held = sqlx::query::<Db>(
                "UPDATE jobs SET claim_token = NULL, lease_expires_at = NULL, \
                 aggregate_attempts = aggregate_attempts + 1, aggregate_next_at = $3, updated_at = $4 \
                 WHERE id = $1 AND claim_token = $2",
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
                sqlx::query::<Db>(
                    "UPDATE events SET status = $2, error_code = $3, message = $4, \
                     retries_remaining = $5, attempt_count = attempt_count + 1, last_attempt_at = $6, \
                     updated_at = $6 WHERE job_id = $1 AND status = 'TRANSFORMED' AND next_attempt_at IS NULL",
                )
                .bind(job.id)
                .bind(status)
                .bind(&code)
                .bind(&message)
                .bind(remaining)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                for (sql, vals) in &follow {
                    sqlx::query::<Db>(sql).bind_all(vals).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            held
        });
        Ok(held)
    }

    /// Ends a job whose source failed, if still held under `token`.
    pub async fn fail_job(&self, job: &Job, token: Uuid, message: &str) -> StoreResult<bool> {
        let now = Timestamp::now();
        let (log_sql, log_vals) = log_insert(
            &[LogWrite {
                org_id: job.org_id,
                kind: "JOB_STATUS_CHANGE",
                stream_id: job.stream_id,
                job_id: job.id,
                event_id: None,
                from: Some("PROCESSING"),
                to: "FAILED",
                details: json!({"message": message}),
            }],
            now,
        );
        let done = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query::<Db>(
                "UPDATE jobs SET status = 'FAILED', message = $3, finished_at = $4, updated_at = $4, \
                 claim_token = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND claim_token = $2 AND status = 'PROCESSING'",
            )
            .bind(job.id)
            .bind(token)
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query::<Db>(&log_sql).bind_all(&log_vals).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            n == 1
        });
        Ok(done)
    }

    /// Finishes a job whose source is done and whose events are all terminal: FINISHED when
    /// every event is OK, FINISHED_WITH_ISSUES otherwise. Run after every terminal event
    /// commit, it is idempotent, and the run after the last commit always sees every event.
    pub async fn finish_job(&self, job_id: Uuid) -> StoreResult<Option<JobStatus>> {
        let now = Timestamp::now();
        let row: Option<(Uuid, Uuid, String)> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as::<Db, (Uuid, Uuid, Uuid, String)>(&finish_jobs_sql(1))
                .bind(now)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|(_, org, stream, status)| (org, stream, status));
            if let Some((org, stream, status)) = &row {
                let (s, v) = finish_log(*org, *stream, job_id, status, now);
                sqlx::query::<Db>(&s).bind_all(&v).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            row
        });
        Ok(row.and_then(|(_, _, s)| JobStatus::parse(&s)))
    }

    /// Jobs whose source is done and whose events are all terminal but which are still
    /// PROCESSING (a worker died between an event's commit and the job's finishing).
    pub async fn finish_stragglers(&self) -> StoreResult<usize> {
        let ids: Vec<Uuid> = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>(
                "SELECT id FROM jobs j WHERE status = 'PROCESSING' AND source_done_at IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.id \
                   AND e.status IN ('NEW', 'TRANSFORMED')) LIMIT 100",
            )
            .fetch_all(pool)
            .await?
        });
        let mut n = 0;
        for id in ids {
            if self.finish_job(id).await?.is_some() {
                n += 1;
            }
        }
        // Aggregate jobs whose last transformation committed without making the delivery due.
        let waiting: Vec<Uuid> = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>(
                "SELECT id FROM jobs j WHERE status = 'PROCESSING' AND source_done_at IS NOT NULL \
                 AND aggregate_next_at IS NULL AND aggregate_attempts = 0 \
                 AND EXISTS (SELECT 1 FROM events e WHERE e.job_id = j.id AND e.status = 'TRANSFORMED' \
                   AND e.next_attempt_at IS NULL) LIMIT 100",
            )
            .fetch_all(pool)
            .await?
        });
        for id in waiting {
            self.mark_aggregate_ready(id).await?;
        }
        Ok(n)
    }

    /// The jobs with these ids (duplicates allowed).
    pub async fn jobs_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<Job>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT * FROM jobs WHERE id IN ({})", marks.join(", "));
            let found = on_pool!(self, pool, Db => {
                let mut q = sqlx::query_as::<Db, Job>(&sql).persistent(chunk.len() <= 8);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(pool).await?
            });
            jobs.extend(found);
        }
        Ok(jobs)
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

    /// Claims up to `limit` events due for transformation or delivery.
    pub async fn claim_events(
        &self,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Event>> {
        let now = Timestamp::now();
        let sql = format!(
            "UPDATE events SET claim_token = $1, lease_expires_at = $2 \
             WHERE id IN (SELECT id FROM events WHERE status IN ('NEW', 'TRANSFORMED') \
               AND next_attempt_at <= $3 AND claim_token IS NULL \
               ORDER BY next_attempt_at LIMIT $4 {}) RETURNING *",
            self.skip_locked()
        );
        let events = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, Event>(&sql)
                .bind(token)
                .bind(Timestamp::from_datetime(now.0 + lease))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(events)
    }

    /// Applies `change` to an event held under `token`, with the attempt (if any), the
    /// event-log entry and the entity's last status, in one transaction; a terminal change
    /// finishes the job when it was the job's last open event. The attempt is recorded even
    /// if the claim was lost: the delivery happened. Returns whether the event changed.
    ///
    /// Changes from concurrent workers commit together (see [`super::writer`]).
    pub async fn change_event(
        &self,
        ev: &Event,
        token: Uuid,
        change: EventChange,
        attempt: Option<NewAttempt>,
    ) -> StoreResult<bool> {
        let planned = plan_change(ev, token, change, attempt, Timestamp::now());
        self.shared.changes.submit(self, planned, None).await
    }

    /// Commits planned changes in one transaction; whether each changed its event.
    pub(super) async fn change_together(&self, plans: &[Planned]) -> StoreResult<Vec<bool>> {
        let now = Timestamp::now();
        let mut changed = vec![false; plans.len()];
        let attempts: Vec<&Vec<Val>> = plans.iter().filter_map(|p| p.attempt.as_ref()).collect();
        let mut finishing: Vec<Uuid> = Vec::new();
        let finished: Vec<Uuid> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for chunk in attempts.chunks(CHUNK) {
                let (sql, vals) = rows_insert(ATTEMPT_INSERT, chunk.iter().map(|r| (*r).clone()));
                sqlx::query::<Db>(&sql)
                    .bind_all(&vals)
                    .persistent(keep_prepared(&vals))
                    .execute(&mut *tx)
                    .await?;
            }
            for (i, p) in plans.iter().enumerate() {
                let n = sqlx::query::<Db>(&p.update.0)
                    .bind_all(&p.update.1)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                changed[i] = n == 1;
            }
            let held = plans.iter().zip(&changed).filter(|(_, c)| **c).map(|(p, _)| p);
            for (sql, vals) in Rows::statements(held.clone().map(|p| &p.rows), now) {
                sqlx::query::<Db>(&sql)
                    .bind_all(&vals)
                    .persistent(keep_prepared(&vals))
                    .execute(&mut *tx)
                    .await?;
            }
            finishing.extend(held.filter(|p| p.terminal).map(|p| p.job_id));
            finishing.sort();
            finishing.dedup();
            // A job's last event usually finishes it in the same commit (always for a
            // one-event webhook job).
            let mut finished = Vec::new();
            let mut logs = Vec::new();
            for chunk in finishing.chunks(CHUNK) {
                let sql = finish_jobs_sql(chunk.len());
                let mut q = sqlx::query_as::<Db, (Uuid, Uuid, Uuid, String)>(&sql)
                    .persistent(chunk.len() <= 8)
                    .bind(now);
                for id in chunk {
                    q = q.bind(*id);
                }
                for (id, org, stream, status) in q.fetch_all(&mut *tx).await? {
                    logs.push(finish_entry(org, stream, id, &status));
                    finished.push(id);
                }
            }
            if !logs.is_empty() {
                let (sql, vals) = log_insert(&logs, now);
                sqlx::query::<Db>(&sql).bind_all(&vals).persistent(keep_prepared(&vals)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            finished
        });
        // When another event of the job committed concurrently, neither transaction saw the
        // other's event closed: look again now that this one is committed. Failing that,
        // maintenance finishes the job.
        for job in finishing.iter().filter(|j| !finished.contains(j)) {
            if let Err(e) = self.finish_job(*job).await {
                tracing::warn!(job = %job, error = %e, "could not finish the job; maintenance will");
            }
        }
        Ok(changed)
    }

    /// Gives up claims whose lease ran out (their worker died): the events become claimable.
    pub async fn rescue_events(&self) -> StoreResult<u64> {
        let n = on_pool!(self, pool, Db => {
            sqlx::query::<Db>(
                "UPDATE events SET claim_token = NULL, lease_expires_at = NULL \
                 WHERE claim_token IS NOT NULL AND lease_expires_at < $1",
            )
            .bind(Timestamp::now())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Releases everything held under `tokens` at once (graceful shutdown): events become
    /// claimable, jobs whose source had not finished are claimable again.
    pub async fn release_claims(&self, tokens: &[Uuid]) -> StoreResult<()> {
        let now = Timestamp::now();
        for token in tokens {
            on_pool!(self, pool, Db => {
                let mut tx = pool.begin_write().await?;
                sqlx::query::<Db>(
                    "UPDATE events SET claim_token = NULL, lease_expires_at = NULL WHERE claim_token = $1",
                )
                .bind(token)
                .execute(&mut *tx)
                .await?;
                sqlx::query::<Db>(
                    "UPDATE jobs SET lease_expires_at = $2 WHERE claim_token = $1 AND source_done_at IS NULL",
                )
                .bind(token)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            });
        }
        Ok(())
    }

    /// Event counts by status of a job.
    pub async fn job_counts(&self, job_id: Uuid) -> StoreResult<Vec<(String, i64)>> {
        let rows = on_pool!(self, pool, Db => {
            sqlx::query_as::<Db, (String, i64)>(
                "SELECT status, COUNT(*) FROM events WHERE job_id = $1 GROUP BY status",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Publishes event-log entries in commit order (Postgres). Writers insert entries without
    /// a position; this single sequencer (one at a time across nodes, by advisory lock) gives
    /// every unpublished entry the next positions in one commit. An entry that commits late
    /// simply gets a later position, so readers following `seq` never see a gap filled in
    /// behind them. `wait` takes the lock even if another node holds it for now.
    pub async fn sequence_event_log(&self, wait: bool) -> StoreResult<u64> {
        let Backend::Postgres = self.backend() else {
            return Ok(0);
        };
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
        // SQLite commits one writer at a time, so its row ids already are commit order.
        let position = match self.backend() {
            Backend::Postgres => "seq",
            Backend::Sqlite => "id",
        };
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
