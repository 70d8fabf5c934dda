//! Webhook pushes: their jobs and the receipts that make a repeated delivery a duplicate,
//! committed together with other pushes arriving at the same time.

use uuid::Uuid;

use super::batch::{execute, keep_prepared, rows_insert, Rows, CHUNK};
use super::handoff::Reservation;
use super::history::write_log;
use super::{on_pool, BeginWrite, Bind, NewEvent, NewJob, StatementText, Store, StoreResult, Val};
use crate::domain::Timestamp;

/// A push ready to commit: its jobs' rows and the job ids to answer with.
pub(in crate::store) struct Push {
    pub source_id: Uuid,
    pub delivery_id: Option<String>,
    pub ids: Vec<Uuid>,
    pub(in crate::store) rows: Rows,
    /// The events inserted claimed, handed to this process's workers once committed (and the
    /// count of those inserted unclaimed, for the handoff's figures).
    pub(in crate::store) handed: Option<Reservation>,
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
    /// A lock wait ends the one-statement commit soon (see [`at_once`]); the usual way
    /// then waits without a limit, its request free to give up meanwhile.
    fn connection(options: sqlx::postgres::PgConnectOptions) -> sqlx::postgres::PgConnectOptions {
        options.options([("lock_timeout", AT_ONCE_LOCK_WAIT)])
    }
}

/// How long the one-statement commit of pushes waits for a lock (another transaction taking
/// the same receipt, a table locked by hand) before the batch is committed the usual way.
const AT_ONCE_LOCK_WAIT: &str = "100ms";

impl Store {
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
        let handoff = self.handoff();
        let (mut reserved, mut unclaimed) = (0, 0);
        for j in jobs {
            let id = match j.events {
                Some(events) => {
                    let claim = handoff.as_ref().and_then(|h| h.reserve(events.len()));
                    if claim.is_some() {
                        reserved += events.len();
                    } else {
                        unclaimed += events.len();
                    }
                    rows.job_with_events(j.new, &j.data_type, events, now, claim)
                        .0
                }
                None => rows.pending_job(j.new, now),
            };
            ids.push(id);
        }
        let released = std::mem::take(&mut rows.released);
        if let (Some(h), true) = (&handoff, released > 0) {
            h.cancel((released, 0));
            (reserved, unclaimed) = (reserved - released, unclaimed + released);
        }
        let handed = handoff.filter(|_| reserved + unclaimed > 0).map(|h| {
            let events = std::mem::take(&mut rows.handed);
            let spilled = std::mem::take(&mut rows.spilled);
            debug_assert_eq!(events.len() + spilled.len(), reserved);
            Reservation::new(h, events, spilled, unclaimed)
        });
        if ids.is_empty() {
            return Ok(Ingested::Created(ids));
        }
        let push = Push {
            source_id,
            delivery_id: delivery_id.map(str::to_string),
            ids,
            rows,
            handed,
        };
        self.shared.pushes.submit(self, push, gate).await
    }

    /// Commits pushes in one transaction; one answer per push, in order.
    pub(in crate::store) async fn ingest_together(
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
        let mut notify = false;
        let at_once = match &self.pool {
            super::Pool::Pg(pool) => {
                at_once(pool, pushes, &repeat_of, &receipts, gates, now).await?
            }
            super::Pool::Sqlite(_) => None,
        };
        let answers = if let Some((answers, woken)) = at_once {
            notify = woken;
            answers
        } else {
            on_pool!(self, pool, Db => {
                let mut tx = pool.begin_write().await?;
                if Db::BACKEND == super::Backend::Postgres {
                    // The writers' connections wait for locks only so long (see `at_once`):
                    // not here, where a request can still give up while its write waits.
                    sqlx::query::<Db>("SET LOCAL lock_timeout = 0").execute(&mut *tx).await?;
                }
                // Receipts taken by an earlier delivery (committed, or committing concurrently:
                // the insert waits for it) are not returned.
                let mut fresh: std::collections::HashSet<(Uuid, String)> = Default::default();
                for chunk in receipts.chunks(CHUNK) {
                    let (mut sql, vals) = receipts_insert(Db::BACKEND, chunk, now);
                    sql.push_str(" ON CONFLICT (source_id, delivery_id) DO NOTHING RETURNING source_id, delivery_id");
                    let taken = sqlx::query_as::<Db, (Uuid, String)>(&Db::text(&sql))
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
                    for (sql, vals) in Rows::statements(Db::BACKEND, stored.iter().copied(), now) {
                        execute!(Db, tx, &sql, &vals);
                    }
                    // Other nodes' workers are told only of work this process did not keep.
                    notify = stored.iter().any(|r| r.for_any_worker());
                    write_log!(Db, tx, stored.iter().flat_map(|r| r.logs.iter()), now);
                }
                super::writer::enter_commit(gates)?;
                tx.commit().await?;
                answers
            })
        };
        if notify {
            self.notify_work();
        }
        // Settled before anyone is answered, so that a caller's next push finds the places.
        for (p, a) in pushes.iter().zip(&answers) {
            match (&p.handed, a) {
                (Some(handed), Some(Ingested::Created(_))) => handed.fill(),
                (Some(handed), _) => handed.cancel(),
                (None, _) => {}
            }
        }
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
}

/// The insert of `receipts` (source, delivery id, job), received `now`.
fn receipts_insert(
    backend: super::Backend,
    receipts: &[(Uuid, &str, Uuid)],
    now: Timestamp,
) -> super::batch::Statement {
    rows_insert(
        backend,
        "INSERT INTO webhook_receipts (source_id, delivery_id, job_id, received_at)",
        receipts
            .iter()
            .map(|(s, d, j)| vec![Val::from(*s), Val::from(*d), Val::from(*j), Val::from(now)]),
    )
}

/// Commits a batch of pushes in one statement when none of their delivery ids was received
/// before (nearly always): the receipts, jobs, events and log entries are inserted by one
/// statement of data-modifying `WITH` parts, which Postgres runs as one transaction. That is
/// one round trip to the database instead of one per table plus `BEGIN` and `COMMIT`, and no
/// transaction left open between them waiting for this process's next statement (under load
/// the database spent most of its time waiting so). A receipt already taken makes the
/// statement fail and nothing of it is stored: `None`, and the batch is committed the usual
/// way, which answers duplicates; so does a lock the statement would wait for. Returns the answers and whether other nodes' workers are to
/// be woken.
async fn at_once(
    pool: &sqlx::PgPool,
    pushes: &[Push],
    repeat_of: &[Option<usize>],
    receipts: &[(Uuid, &str, Uuid)],
    gates: &[Option<std::sync::Arc<super::writer::CommitGate>>],
    now: Timestamp,
) -> StoreResult<Option<(Vec<Option<Ingested>>, bool)>> {
    let backend = super::Backend::Postgres;
    let mut statements = Vec::new();
    for chunk in receipts.chunks(CHUNK) {
        statements.push(receipts_insert(backend, chunk, now));
    }
    let stored: Vec<&Rows> = pushes
        .iter()
        .zip(repeat_of)
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| &p.rows)
        .collect();
    statements.extend(Rows::statements(backend, stored.iter().copied(), now));
    let log = super::history::log_rows(stored.iter().flat_map(|r| r.logs.iter()))?;
    if !log.is_empty() {
        statements.push(super::history::log_insert(backend, log, now));
    }
    let (sql, vals) = one_statement(statements);
    // A connection first: while the pool waits for one (the database out of reach), the
    // requests can still give up and be answered 503.
    let mut conn = pool.acquire().await?;
    // The statement is the commit: once it is sent, the requests await its outcome. It waits
    // for no lock for long (`AT_ONCE_LOCK_WAIT`): a batch that would is refused, and its
    // requests may give up again while the usual way waits.
    let entered = super::writer::enter(gates)?;
    let run = sqlx::query::<sqlx::Postgres>(&sql)
        .bind_all(&vals)
        .persistent(keep_prepared(&vals))
        .execute(&mut *conn)
        .await;
    match run {
        Ok(_) => {}
        // Refused (a receipt taken, or a value the database cannot store): nothing of it was
        // stored; the usual way sorts out which push it was.
        Err(sqlx::Error::Database(e)) => {
            super::writer::reopen(&entered);
            tracing::debug!(error = %e, pushes = pushes.len(), "one-statement commit refused; committing the usual way");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    let answers = pushes
        .iter()
        .zip(repeat_of)
        .map(|(p, r)| r.is_none().then(|| Ingested::Created(p.ids.clone())))
        .collect();
    let woken = stored.iter().any(|r| r.for_any_worker());
    Ok(Some((answers, woken)))
}

/// `statements` as one: all but the last as `WITH` parts, their placeholders numbered on
/// from the one before.
fn one_statement(statements: Vec<(String, Vec<Val>)>) -> (String, Vec<Val>) {
    let n = statements.len();
    let mut sql = String::new();
    let mut vals: Vec<Val> = Vec::new();
    for (i, (text, values)) in statements.into_iter().enumerate() {
        let text = renumbered(&text, vals.len());
        if i + 1 < n {
            sql.push_str(if i == 0 { "WITH " } else { ", " });
            sql.push_str(&format!("w{i} AS ({text})"));
        } else {
            if n > 1 {
                sql.push(' ');
            }
            sql.push_str(&text);
        }
        vals.extend(values);
    }
    (sql, vals)
}

/// `sql` with each placeholder `$n` made `$(n + by)` (outside quoted text).
fn renumbered(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\'' {
            quoted = !quoted;
        } else if c == '$' && !quoted {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            match digits.parse::<usize>() {
                Ok(n) => out.push_str(&(n + by).to_string()),
                Err(_) => out.push_str(&digits),
            }
        }
    }
    out
}

#[cfg(test)]
mod one_statement_tests {
    use super::{one_statement, renumbered};
    use crate::store::Val;

    #[test]
    fn placeholders_are_numbered_on_outside_quoted_text() {
        assert_eq!(
            renumbered(
                "INSERT INTO t SELECT * FROM unnest($1::uuid[], $2::text[]) WHERE x = '$1'",
                4
            ),
            "INSERT INTO t SELECT * FROM unnest($5::uuid[], $6::text[]) WHERE x = '$1'"
        );
        assert_eq!(renumbered("SELECT $10", 0), "SELECT $10");
    }

    #[test]
    fn statements_become_parts_of_one() {
        let (sql, vals) = one_statement(vec![
            (
                "INSERT INTO a SELECT * FROM unnest($1::uuid[])".into(),
                vec![Val::from(1i64)],
            ),
            (
                "INSERT INTO b SELECT * FROM unnest($1::text[], $2::int8[])".into(),
                vec![Val::from(2i64), Val::from(3i64)],
            ),
            (
                "INSERT INTO c SELECT * FROM unnest($1::jsonb[])".into(),
                vec![Val::from(4i64)],
            ),
        ]);
        assert_eq!(
            sql,
            "WITH w0 AS (INSERT INTO a SELECT * FROM unnest($1::uuid[])), \
             w1 AS (INSERT INTO b SELECT * FROM unnest($2::text[], $3::int8[])) \
             INSERT INTO c SELECT * FROM unnest($4::jsonb[])"
        );
        assert_eq!(vals.len(), 4);
        let (alone, _) = one_statement(vec![(
            "INSERT INTO a VALUES ($1)".into(),
            vec![Val::from(1i64)],
        )]);
        assert_eq!(alone, "INSERT INTO a VALUES ($1)");
    }
}
