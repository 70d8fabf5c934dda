//! Completions: a worker's change to an event it holds, with the delivery attempt, log entries,
//! entity and split-off events, committed together with other workers' changes.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::{EventStatus, EventStep, Timestamp};
use crate::store::batch::{
    execute, keep_prepared, rows_insert, sql_status_check, EventRow, Rows, Statement, CHUNK,
};
use crate::store::columns::{columns, unnest};
use crate::store::history::{write_log, EntityRow, LogWrite};
use crate::store::jobs::finish_jobs_in;
use crate::store::{
    on_pool, printable, printable_ref, Backend, BeginWrite, Bind, Event, JsonText, StatementText,
    Store, StoreResult, Val,
};

/// A delivery attempt to record.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Chosen by the worker, so that storing the same attempt again (its first commit failed,
    /// or its answer was lost) records it once.
    pub id: Uuid,
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

impl NewAttempt {
    /// The row of [`ATTEMPT_INSERT`] recording this attempt, as `id`, for the event `ev`; what
    /// the other system answered as the store can keep it (see `store::nul`).
    pub(in crate::store) fn row(&self, id: Uuid, ev: &Event) -> Vec<Val> {
        vec![
            Val::from(id),
            Val::from(ev.org_id),
            Val::from(ev.id),
            Val::from(ev.job_id),
            Val::from(self.destination_id),
            Val::from(self.started_at),
            Val::from(self.finished_at),
            Val::from(self.outcome),
            Val::Text(self.error_code.clone().map(printable)),
            Val::Int(self.http_status),
            Val::Text(self.http_status_name.clone().map(printable)),
            Val::Text(self.response_excerpt.clone().map(printable)),
            Val::from(self.duration_ms),
        ]
    }
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
    /// The id the destination system gave what the delivery created or changed.
    pub destination_ref: Option<String>,
    /// Apply also when the event is held by no one: the outcome of a delivery whose first
    /// commit failed, stored again once storage answers, after the lease may have run out and
    /// the rescue freed the event. What happened is recorded rather than done again; an event
    /// another worker has claimed since is left to it (the attempt is recorded all the same).
    pub or_unclaimed: bool,
}

impl Rows {
    /// The extra events of a split record (see `EventChange::siblings`), with their log
    /// entries.
    pub(in crate::store) fn add_siblings(
        &mut self,
        ev: &Event,
        change: &EventChange,
        now: Timestamp,
    ) {
        // Every sibling carries the record it was split from: serialised once, shared.
        let payload_in = ev.payload_in.as_ref().map(|j| JsonText::of(&j.0));
        for out in &change.siblings {
            let id = Uuid::now_v7();
            self.events.push(EventRow {
                id,
                org_id: ev.org_id,
                stream_id: ev.stream_id,
                job_id: ev.job_id,
                status: EventStatus::Transformed.as_str(),
                data_type: ev.data_type.clone(),
                entity_id: ev.entity_id.clone(),
                payload_in: payload_in.clone(),
                payload_out: Some(JsonText::of(out)),
                retries_remaining: change.siblings_retries,
                next_attempt_at: change.siblings_due,
                original_event_id: None,
                origin: ev.origin.clone(),
                claim: None,
                created_at: now,
            });
            self.logs.push(LogWrite {
                org_id: ev.org_id,
                kind: "EVENT_STATUS_CHANGE",
                stream_id: ev.stream_id,
                job_id: ev.job_id,
                event_id: Some(id),
                from: None,
                to: EventStatus::Transformed.as_str(),
                details: json!({"split_from": ev.id}),
            });
        }
    }
}

pub(in crate::store) const ATTEMPT_INSERT: &str =
    "INSERT INTO delivery_attempts (id, org_id, event_id, job_id, \
    destination_id, started_at, finished_at, outcome, error_code, http_status, http_status_name, \
    response_excerpt, duration_ms)";

/// An update of one event: `UPDATE events SET {sets} WHERE {filter}`, the placeholders `$n`
/// numbering `vals` (`$1` the event's id). Updates with the same `sets` and `filter` have the
/// same shape: the same columns, from the same statuses, values of the same types.
pub(in crate::store) struct EventUpdate {
    sets: String,
    filter: String,
    vals: Vec<Val>,
}

impl EventUpdate {
    fn sql(&self) -> String {
        format!("UPDATE events SET {} WHERE {}", self.sets, self.filter)
    }

    fn same_shape(&self, other: &EventUpdate) -> bool {
        self.sets == other.sets && self.filter == other.filter
    }
}

/// One statement for several updates of one shape (see [`EventUpdate`]) to different events
/// (Postgres): their values as one array a column (see [`crate::store::columns`]), or as rows
/// of `VALUES` should their types differ, each placeholder `$n` of the shape read from the
/// row's column `cn`. It answers the ids of the events it changed.
fn updates_together(updates: &[&EventUpdate]) -> Statement {
    let width = updates[0].vals.len();
    let names: Vec<String> = (1..=width).map(|k| format!("c{k}")).collect();
    let column = |sql: &str| placeholders(sql, |n| format!("v.c{n}"));
    let statement = |rows: &str| {
        format!(
            "UPDATE events SET {} FROM {rows} AS v({}) WHERE {} RETURNING events.id",
            column(&updates[0].sets),
            names.join(", "),
            column(&updates[0].filter)
        )
    };
    let rows = match columns(updates.iter().map(|u| u.vals.clone()).collect()) {
        Ok(columns) => {
            let sql = statement(&unnest(&columns, 1));
            return (sql, columns.into_iter().map(Val::Column).collect());
        }
        Err(rows) => rows,
    };
    let mut marks = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        let row: Vec<String> = (1..=width).map(|k| format!("${}", i * width + k)).collect();
        marks.push(format!("({})", row.join(", ")));
    }
    let sql = statement(&format!("(VALUES {})", marks.join(", ")));
    (sql, rows.into_iter().flatten().collect())
}

/// `sql` with each placeholder `$n` replaced by `to(n)`.
fn placeholders(sql: &str, to: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(c);
            continue;
        }
        let mut n = 0usize;
        while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
            n = n * 10 + d as usize;
            chars.next();
        }
        out.push_str(&to(n));
    }
    out
}

/// An event change ready to commit, alone or with others.
pub(in crate::store) struct Planned {
    pub(in crate::store) job_id: Uuid,
    pub(in crate::store) event_id: Uuid,
    /// The delivery attempt's row, written whatever the update does.
    pub(in crate::store) attempt: Option<Vec<Val>>,
    /// Changes the event if it is still held and in a status the move starts from.
    pub(in crate::store) update: EventUpdate,
    /// Written only if the update changed the event: log entries, the entity, split-off
    /// events.
    pub(in crate::store) rows: Rows,
    pub(in crate::store) terminal: bool,
}

impl crate::store::writer::Batch for Planned {
    type Answer = bool;
    const MAX: usize = 128;
    fn commit<'a>(
        store: &'a Store,
        items: &'a [Self],
        // Event changes carry no gates: a worker's change commits whatever became of it.
        _: &'a [Option<std::sync::Arc<crate::store::writer::CommitGate>>],
    ) -> crate::store::writer::Committing<'a, bool> {
        Box::pin(store.change_together(items))
    }
}

/// The statements of `change` to the event `ev` held under `token` (see
/// [`Store::change_event`]).
pub(in crate::store) fn plan_change(
    ev: &Event,
    token: Uuid,
    change: &EventChange,
    attempt: Option<NewAttempt>,
    now: Timestamp,
) -> Planned {
    let mut sets = vec!["updated_at = $3".to_string()];
    let mut vals = vec![Val::from(ev.id), Val::from(token), Val::from(now)];
    // What the change says about the event, as the store can keep it (see `store::nul`).
    let error_code = change.error_code.clone().map(|c| c.map(printable));
    let message = change.message.clone().map(|m| m.map(printable));
    fn put(sets: &mut Vec<String>, vals: &mut Vec<Val>, col: &str, v: Val) {
        vals.push(v);
        sets.push(format!("{col} = ${}", vals.len()));
    }
    // The domain names the step; the update applies only from the statuses it starts from,
    // and changes no row when no step makes this change. A NEW event transformed and
    // delivered in one go records both hops in one commit: a crash before it leaves the
    // event NEW, to be processed again, as any crash before a delivery's commit does.
    let step = EventStep::between(ev.status, change.to, change.payload_out.is_some());
    let from = step.map_or(&[][..], EventStep::from);
    let path = step.map_or(&[][..], EventStep::path);
    if let Some(&to) = path.last() {
        put(&mut sets, &mut vals, "status", Val::from(to));
    }
    if let Some(v) = &change.payload_out {
        // Serialised here, by the worker, not by the writer that commits many changes.
        put(
            &mut sets,
            &mut vals,
            "payload_out",
            Val::JsonText(Some(JsonText::of(v))),
        );
    }
    if let Some(v) = &error_code {
        put(&mut sets, &mut vals, "error_code", Val::Text(v.clone()));
    }
    if let Some(v) = &message {
        put(&mut sets, &mut vals, "message", Val::Text(v.clone()));
    }
    if let Some(v) = change.retries_remaining {
        put(&mut sets, &mut vals, "retries_remaining", Val::Int(v));
    }
    if let Some(v) = change.next_attempt_at {
        put(&mut sets, &mut vals, "next_attempt_at", Val::Ts(v));
    }
    if let Some(lines) = &change.logs {
        let v = (!lines.is_empty()).then(|| {
            Value::Array(
                lines
                    .iter()
                    .map(|l| Value::String(printable_ref(l).into_owned()))
                    .collect(),
            )
        });
        let v = v.as_ref().map(JsonText::of);
        put(&mut sets, &mut vals, "transform_logs", Val::JsonText(v));
    }
    if let Some(v) = &change.destination_ref {
        put(
            &mut sets,
            &mut vals,
            "destination_ref",
            Val::Text(Some(printable(v.clone()))),
        );
    }
    if change.attempted {
        sets.push("attempt_count = attempt_count + 1".into());
        put(&mut sets, &mut vals, "last_attempt_at", Val::from(now));
    }
    if change.release {
        sets.push("claim_token = NULL".into());
        sets.push("lease_expires_at = NULL".into());
    }
    let filter = format!(
        "id = $1 AND {} AND {}",
        if change.or_unclaimed {
            "(claim_token = $2 OR claim_token IS NULL)"
        } else {
            // Not `=` (see `store::queue`).
            "claim_token IS NOT DISTINCT FROM $2"
        },
        sql_status_check(from)
    );
    let mut rows = Rows::default();
    if !change.siblings.is_empty() {
        rows.add_siblings(ev, change, now);
    }
    let event_log = |from: Option<&'static str>, to: EventStatus| LogWrite {
        org_id: ev.org_id,
        kind: "EVENT_STATUS_CHANGE",
        stream_id: ev.stream_id,
        job_id: ev.job_id,
        event_id: Some(ev.id),
        from,
        to: to.as_str(),
        details: json!({"error_code": error_code.clone().flatten()}),
    };
    let mut at = ev.status;
    for &next in path {
        rows.logs.push(event_log(Some(at.as_str()), next));
        at = next;
    }
    // The entity takes the outcome of each event about it that finishes (see
    // `entity_upsert`); the steps before are in the event and its log.
    if let Some(&to) = path.last().filter(|to| to.is_terminal()) {
        if let Some(entity) = &ev.entity_id {
            rows.entities.push(EntityRow {
                org: ev.org_id,
                data_type: ev.data_type.clone(),
                entity: entity.clone(),
                status: to.as_str(),
                event: ev.id,
                code: error_code.clone().flatten(),
                message: message.clone().flatten(),
            });
        }
    }
    let attempt = attempt.map(|a| a.row(a.id, ev));
    Planned {
        job_id: ev.job_id,
        event_id: ev.id,
        attempt,
        update: EventUpdate {
            sets: sets.join(", "),
            filter,
            vals,
        },
        rows,
        terminal: path.last().is_some_and(|s| s.is_terminal()),
    }
}

/// The order in which to apply the updates of `plans`, as groups of indices: one statement a
/// group. With `together`, updates of one shape to different events form a group (up to
/// [`CHUNK`]), in the order their first appears; an event's second update comes after, alone,
/// as one statement cannot change a row twice. Otherwise each update alone, in order.
fn update_groups(plans: &[Planned], together: bool) -> Vec<Vec<usize>> {
    if !together {
        return (0..plans.len()).map(|i| vec![i]).collect();
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut again = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, p) in plans.iter().enumerate() {
        if !seen.insert(p.event_id) {
            again.push(vec![i]);
            continue;
        }
        let open = groups
            .iter_mut()
            .find(|g| g.len() < CHUNK && plans[g[0]].update.same_shape(&p.update));
        match open {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups.extend(again);
    groups
}

impl Store {
    /// Applies `change` to an event held under `token`, with the attempt (if any), the
    /// event-log entry and the entity's last status, in one transaction; a terminal change
    /// finishes the job when it was the job's last open event. The attempt is recorded even
    /// if the claim was lost: the delivery happened. Returns whether the event changed.
    ///
    /// Changes from concurrent workers commit together (see [`crate::store::writer`]).
    pub async fn change_event(
        &self,
        ev: &Event,
        token: Uuid,
        change: impl std::borrow::Borrow<EventChange>,
        attempt: Option<NewAttempt>,
    ) -> StoreResult<bool> {
        let planned = plan_change(ev, token, change.borrow(), attempt, Timestamp::now());
        self.shared.changes.submit(self, planned, None).await
    }

    /// Commits planned changes in one transaction; whether each changed its event.
    pub(in crate::store) async fn change_together(
        &self,
        plans: &[Planned],
    ) -> StoreResult<Vec<bool>> {
        let now = Timestamp::now();
        let mut changed = vec![false; plans.len()];
        let attempts: Vec<&Vec<Val>> = plans.iter().filter_map(|p| p.attempt.as_ref()).collect();
        let mut finishing: Vec<Uuid> = Vec::new();
        let finished: Vec<Uuid> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            for chunk in attempts.chunks(CHUNK) {
                let (sql, vals) = rows_insert(Db::BACKEND, ATTEMPT_INSERT, chunk.iter().map(|r| (*r).clone()));
                // An attempt stored again (see `NewAttempt::id`) is recorded once.
                let sql = format!("{sql} ON CONFLICT (id) DO NOTHING");
                execute!(Db, tx, &sql, &vals);
            }
            for group in update_groups(plans, self.backend() == Backend::Postgres) {
                if let [i] = group[..] {
                    let p = &plans[i];
                    let n = sqlx::query::<Db>(&p.update.sql())
                        .bind_all(&p.update.vals)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    changed[i] = n == 1;
                    continue;
                }
                let updates: Vec<&EventUpdate> = group.iter().map(|i| &plans[*i].update).collect();
                let (sql, vals) = updates_together(&updates);
                let sql = Db::text(&sql);
                let ids = sqlx::query_scalar::<Db, Uuid>(&sql)
                    .bind_all(&vals)
                    .persistent(keep_prepared(&vals))
                    .fetch_all(&mut *tx)
                    .await?;
                for i in group {
                    changed[i] = ids.contains(&plans[i].event_id);
                }
            }
            let held = plans.iter().zip(&changed).filter(|(_, c)| **c).map(|(p, _)| p);
            for (sql, vals) in Rows::statements(Db::BACKEND, held.clone().map(|p| &p.rows), now) {
                execute!(Db, tx, &sql, &vals);
            }
            let logs = held.clone().flat_map(|p| p.rows.logs.iter());
            finishing.extend(held.filter(|p| p.terminal).map(|p| p.job_id));
            finishing.sort();
            finishing.dedup();
            // A job's last event usually finishes it in the same commit (always for a
            // one-event webhook job).
            let mut finish_logs = Vec::new();
            let finished = finish_jobs_in!(Db, tx, finishing, now, finish_logs);
            write_log!(Db, tx, logs.chain(finish_logs.iter()), now);
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
}

#[cfg(test)]
mod tests {
    use super::EventChange;
    use super::{placeholders, plan_change, update_groups, updates_together, EventUpdate, Planned};
    use crate::domain::{EventStatus, Timestamp};
    use crate::store::batch::Rows;
    use crate::store::handoff::Claim;
    use crate::store::Val;
    use crate::store::{Event, NewEvent, NewJob};
    use uuid::Uuid;

    fn plan(event: Uuid, status: &str) -> Planned {
        Planned {
            job_id: Uuid::nil(),
            event_id: event,
            attempt: None,
            update: EventUpdate {
                sets: "updated_at = $3".into(),
                filter: format!(
                    "id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND (status IN ('{status}')) IS TRUE"
                ),
                vals: vec![Val::from(event), Val::from(Uuid::nil()), Val::Int(Some(1))],
            },
            rows: Rows::default(),
            terminal: false,
        }
    }

    #[test]
    fn updates_group_by_shape_and_an_event_s_second_update_comes_after_alone() {
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let plans = [
            plan(a, "NEW"),
            plan(b, "TRANSFORMED"),
            plan(c, "NEW"),
            plan(a, "TRANSFORMED"),
            plan(b, "NEW"),
        ];
        assert_eq!(
            update_groups(&plans, true),
            vec![vec![0, 2], vec![1], vec![3], vec![4]]
        );
        // One at a time, in order, where updates do not share statements (SQLite).
        assert_eq!(
            update_groups(&plans, false),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
    }

    #[test]
    fn placeholders_are_renamed_whole() {
        let sql = "a = $1, b = $12, c = $2 WHERE d = $10 AND e = 'x$' AND f = $";
        assert_eq!(
            placeholders(sql, |n| format!("v.c{n}")),
            "a = v.c1, b = v.c12, c = v.c2 WHERE d = v.c10 AND e = 'x$' AND f = $"
        );
    }

    #[test]
    fn updates_of_one_shape_share_a_statement_reading_each_row_s_values() {
        let update = || EventUpdate {
            sets: "updated_at = $3, status = $4, attempt_count = attempt_count + 1".into(),
            filter:
                "id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND (status IN ('S1')) IS TRUE"
                    .into(),
            vals: vec![
                Val::from(Uuid::nil()),
                Val::from(Uuid::nil()),
                Val::Int(Some(1)),
                Val::from("OK"),
            ],
        };
        let (a, b) = (update(), update());
        assert!(a.same_shape(&b));
        let (sql, vals) = updates_together(&[&a, &b]);
        assert_eq!(
            sql,
            "UPDATE events SET updated_at = v.c3, status = v.c4, attempt_count = attempt_count \
             + 1 FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[]) AS v(c1, c2, c3, \
             c4) WHERE id = v.c1 AND claim_token IS NOT DISTINCT FROM v.c2 AND (status IN ('S1')) IS TRUE \
             RETURNING events.id"
        );
        assert_eq!(vals.len(), 4, "one array a column");
        // Values whose types differ from row to row go as rows of VALUES.
        let odd = EventUpdate {
            vals: vec![
                Val::from(Uuid::nil()),
                Val::from(Uuid::nil()),
                Val::from("1"),
                Val::from("OK"),
            ],
            ..update()
        };
        let (sql, vals) = updates_together(&[&a, &odd]);
        assert_eq!(
            sql,
            "UPDATE events SET updated_at = v.c3, status = v.c4, attempt_count = attempt_count \
             + 1 FROM (VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)) AS v(c1, c2, c3, c4) \
             WHERE id = v.c1 AND claim_token IS NOT DISTINCT FROM v.c2 AND (status IN ('S1')) IS TRUE \
             RETURNING events.id"
        );
        assert_eq!(vals.len(), 8);
        let other = EventUpdate {
            filter:
                "id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND (status IN ('S2')) IS TRUE"
                    .into(),
            ..update()
        };
        assert!(!a.same_shape(&other));
    }

    #[test]
    fn a_change_checks_the_status_it_starts_from_as_a_filter_only() {
        let now = Timestamp::now();
        // A waiting event as the store builds it when a job's events are stored claimed.
        let mut rows = Rows::default();
        let new = NewJob {
            org_id: Uuid::nil(),
            stream_id: Uuid::nil(),
            trigger: "webhook",
            settings: serde_json::json!({}),
            payload: None,
            original_job_id: None,
            run_at: now,
        };
        let record = NewEvent {
            payload_in: crate::store::Payload::Value(serde_json::json!({"n": 1})),
            entity_id: None,
            original_event_id: None,
            origin: None,
        };
        let claim = Claim {
            token: Uuid::nil(),
            lease_end: now,
            spilled: false,
        };
        rows.job_with_events(new, "orders", vec![record], now, Some(claim));
        let waiting = rows.handed.remove(0).event;
        assert_eq!(waiting.status, EventStatus::New);
        let event = |status| Event {
            status,
            ..waiting.clone()
        };
        let delivered = EventChange {
            to: Some(EventStatus::Ok),
            payload_out: Some(serde_json::json!({"out": true})),
            attempted: true,
            release: true,
            ..Default::default()
        };
        let planned = plan_change(&event(EventStatus::New), Uuid::nil(), &delivered, None, now);
        assert_eq!(
            planned.update.filter,
            format!(
                "id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND (status IN ('{}')) IS TRUE",
                EventStatus::New.as_str()
            )
        );
        // No step makes this change from OK: the check matches no row.
        let planned = plan_change(&event(EventStatus::Ok), Uuid::nil(), &delivered, None, now);
        assert_eq!(
            planned.update.filter,
            "id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND (status IN (NULL)) IS TRUE"
        );
    }
}
