//! The queue: workers claim due jobs and events, complete them, and give up claims whose
//! worker died or stopped.
//!
//! Claims follow River: one statement marks rows as held (a fresh claim token and a lease) and
//! returns them; Postgres skips rows other workers hold (`FOR UPDATE SKIP LOCKED`), SQLite has
//! one writer at a time. Every completion names the claim token, so a worker whose lease ran
//! out and whose work was taken over changes nothing. Every status change is written with its
//! event-log entry (and the entity's last status) in one transaction.
//!
//! Statements that find rows by id and check their claim compare the token with `IS NOT
//! DISTINCT FROM`, never `=`: `claim_token = $n` implies `claim_token IS NOT NULL`, the
//! predicate of the partial indexes of claimed rows (`events_leased`, `jobs_leased`), and
//! Postgres then prefers scanning that index to the primary key whenever its statistics were
//! gathered while few rows were claimed (a database with much history, analysed between
//! bursts) — reading every claimed row of a backlog for each event it completes. Only the
//! rescue and a release by token read those indexes, as they should.

mod change;

use serde_json::{json, Value};
use sqlx::types::Json;
use uuid::Uuid;

pub use change::{Delivery, EventChange, NewAttempt};
pub(in crate::store) use change::{Planned, ATTEMPT_INSERT};

use super::batch::{
    among_ids, execute, keep_list_prepared, sql_among, sql_in, sql_lit, sql_marks,
    sql_not_among_ids, sql_status_check, Rows, CHUNK,
};
use super::history::{write_log, LogWrite};
use super::{
    on_pool, Backend, BeginWrite, Bind, Event, Job, NewEvent, Record, StatementText, Store,
    StoreResult,
};
use crate::domain::status::OPEN_EVENTS;
use crate::domain::{JobStatus, JobStep, Timestamp};

/// What a source's read stores besides its events (see [`Store::complete_source_read`]).
#[derive(Debug, Default)]
pub struct SourceRead {
    pub cursor: Option<SourceCursor>,
    pub summary: Option<Value>,
}

/// A source's state for its next run, and the version of the state this run started from.
#[derive(Debug)]
pub struct SourceCursor {
    pub source_id: Uuid,
    pub version: i64,
    pub state: Value,
}

/// How storing a source's read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Stored,
    /// The job's claim was lost: another worker has it. Nothing was stored.
    Lost,
    /// Another run of the source stored its state first (it read the same files). Nothing was
    /// stored.
    Stale,
}

/// How many of the oldest due events a claim that leaves some streams out looks at (see
/// [`Store::claim_events_except`]).
pub const SKIP_WINDOW: usize = 1000;

/// The job claim: due jobs, and jobs whose source run lost its lease, oldest first — except
/// the `held` jobs bound from `$6` on, which the claiming node is running (its heartbeat was
/// late): taking one again would run its source a second time beside the first.
fn claim_jobs_sql(backend: Backend, held: usize) -> String {
    let except = sql_not_among_ids(6, held);
    format!(
        "UPDATE jobs SET status = {to}, claim_token = $1, claimed_by = $2, \
         lease_expires_at = $3, attempt = attempt + 1, started_at = COALESCE(started_at, $4), \
         updated_at = $4 \
         WHERE id IN (SELECT id FROM jobs WHERE (status {from} AND run_at <= $4) \
           OR (status = {to} AND source_done_at IS NULL AND claim_token IS NOT NULL \
           AND lease_expires_at < $4{except}) \
           ORDER BY run_at LIMIT $5 {lock}) RETURNING *",
        to = sql_lit(JobStep::Claim.to()),
        // Each side of the OR is read through its partial index (`jobs_claimable`,
        // `jobs_leased`) on both stores, however many jobs the history holds.
        from = sql_among(JobStep::Claim.from()),
        lock = backend.skip_locked()
    )
}

impl Store {
    pub(in crate::store) fn skip_locked(&self) -> &'static str {
        self.backend().skip_locked()
    }

    /// Claims up to `limit` due jobs (or jobs whose source run lost its lease) for `worker`,
    /// never one of `held` (the jobs the claiming process has in hand: see `claim_jobs_sql`).
    pub async fn claim_jobs(
        &self,
        worker: &str,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
        held: &[Uuid],
    ) -> StoreResult<Vec<Job>> {
        let now = Timestamp::now();
        let sql = claim_jobs_sql(self.backend(), held.len());
        let lease_end = Timestamp::from_datetime(now.0 + lease);
        let jobs: Vec<Job> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let mut q = sqlx::query_as::<Db, Job>(&sql)
                .bind(token)
                .bind(worker)
                .bind(lease_end)
                .bind(now)
                .bind(i64::from(limit))
                // A statement per length of the list would crowd the statement cache.
                .persistent(held.is_empty());
            for id in held {
                q = q.bind(*id);
            }
            let jobs = q.fetch_all(&mut *tx).await?;
            // Only a first claim is a status change; a re-claim after a lost lease is not.
            let logs: Vec<_> = jobs
                .iter()
                .filter(|j| j.attempt == 1)
                .map(|j| {
                    LogWrite::job(
                        j.org_id,
                        j.stream_id,
                        j.id,
                        Some(JobStatus::Pending),
                        JobStep::Claim.to(),
                        json!({}),
                    )
                })
                .collect();
            write_log!(Db, tx, &logs, now);
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
        let done = self
            .complete_source_read(job, token, data_type, events, SourceRead::default())
            .await?;
        Ok(done == Completion::Stored)
    }

    /// [`complete_source`](Self::complete_source) with what the source's read adds: its
    /// state for the next run, stored only if no other run of the source stored one since
    /// this run read it (else nothing is stored: [`Completion::Stale`]), and a summary for
    /// the job's `settings.source`.
    pub async fn complete_source_read(
        &self,
        job: &Job,
        token: Uuid,
        data_type: &str,
        events: Vec<NewEvent>,
        read: SourceRead,
    ) -> StoreResult<Completion> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        rows.add_events(job, data_type, events, now, None);
        // No event read: the job finishes at once.
        let empty = rows.events.is_empty();
        let statements = Rows::statements(self.backend(), std::iter::once(&rows), now);
        let settings = read.summary.map(|summary| {
            let mut settings = job.settings.0.clone();
            if !settings.is_object() {
                settings = Value::Object(Default::default());
            }
            settings["source"] = summary;
            Json(settings)
        });
        let update =
            format!(
            "UPDATE jobs SET source_done_at = $3, claim_token = NULL, lease_expires_at = NULL, \
             updated_at = $3{} WHERE id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND status = {}",
            if settings.is_some() { ", settings = $4" } else { "" },
            sql_lit(JobStatus::Processing)
        );
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let mut query = sqlx::query::<Db>(&update)
                .bind(job.id)
                .bind(token)
                .bind(now);
            if let Some(settings) = &settings {
                query = query.bind(settings);
            }
            let held = query.execute(&mut *tx).await?.rows_affected();
            if held == 0 {
                return Ok(Completion::Lost);
            }
            if let Some(cursor) = &read.cursor {
                let fresh = sqlx::query::<Db>(
                    "UPDATE sources SET read_state = $1, read_version = read_version + 1 \
                     WHERE id = $2 AND read_version = $3",
                )
                .bind(Json(&cursor.state))
                .bind(cursor.source_id)
                .bind(cursor.version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fresh == 0 {
                    return Ok(Completion::Stale);
                }
            }
            for (sql, vals) in &statements {
                execute!(Db, tx, sql, vals);
            }
            write_log!(Db, tx, &rows.logs, now);
            tx.commit().await?;
        });
        if !empty {
            self.notify_work();
        }
        if empty {
            self.finish_job(job.id).await?;
        }
        Ok(Completion::Stored)
    }

    /// Ends a job whose source failed, if still held under `token`.
    pub async fn fail_job(&self, job: &Job, token: Uuid, message: &str) -> StoreResult<bool> {
        let now = Timestamp::now();
        // A source's error may quote what it read: kept as the store can keep it.
        let message = crate::store::printable_ref(message);
        let message = message.as_ref();
        let log = LogWrite::job(
            job.org_id,
            job.stream_id,
            job.id,
            Some(JobStatus::Processing),
            JobStep::Fail.to(),
            json!({"message": message}),
        );
        let update = format!(
            "UPDATE jobs SET status = {to}, message = $3, finished_at = $4, updated_at = $4, \
             claim_token = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND claim_token IS NOT DISTINCT FROM $2 AND status IN ({from})",
            to = sql_lit(JobStep::Fail.to()),
            from = sql_in(JobStep::Fail.from()),
        );
        let done = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query::<Db>(&update)
            .bind(job.id)
            .bind(token)
            .bind(message)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                write_log!(Db, tx, [&log], now);
                tx.commit().await?;
            }
            n == 1
        });
        Ok(done)
    }

    /// Claims up to `limit` events due for transformation or delivery.
    pub async fn claim_events(
        &self,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<Event>> {
        self.claim_events_except(token, limit, lease, &[]).await
    }

    /// Claims up to `limit` due events of any stream but those in `skip` (streams whose
    /// destination has as many deliveries in flight as it may have). The events left out are
    /// the oldest (a slow destination's backlog), so the claim looks at no more than the
    /// [`SKIP_WINDOW`] oldest due events: its cost does not grow with that backlog. Events
    /// of other streams queued behind more than that wait until it shrinks.
    pub async fn claim_events_except(
        &self,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
        skip: &[Uuid],
    ) -> StoreResult<Vec<Event>> {
        // Beyond a few hundred streams left out, the rest are claimed and given back.
        let skip = &skip[..skip.len().min(CHUNK)];
        let open = sql_in(OPEN_EVENTS);
        let sql = if skip.is_empty() {
            format!(
                "UPDATE events SET claim_token = $1, lease_expires_at = $2 \
                 WHERE id IN (SELECT id FROM events WHERE status IN ({open}) \
                   AND next_attempt_at <= $3 AND claim_token IS NULL \
                   ORDER BY next_attempt_at LIMIT $4 {}) RETURNING *",
                self.skip_locked()
            )
        } else {
            // Rows are not locked while the window is read (that would write each one): the
            // update checks again that each is open and unclaimed, and on Postgres waits for
            // a concurrent claim of the same row to commit, then passes over it.
            let chosen = format!(
                "SELECT id FROM (SELECT id, stream_id, next_attempt_at FROM events \
                   WHERE status IN ({open}) AND next_attempt_at <= $3 AND claim_token IS NULL \
                   ORDER BY next_attempt_at LIMIT {SKIP_WINDOW}) AS due \
                 WHERE stream_id NOT IN ({}) ORDER BY next_attempt_at LIMIT $4",
                sql_marks(5, skip.len())
            );
            // On Postgres the ids are gathered once, into an array (`id IN (…)` with a LIMIT
            // inside is run again for each row the update looks at).
            let which = match self.backend() {
                super::Backend::Postgres => format!("id = ANY(ARRAY({chosen}))"),
                super::Backend::Sqlite => format!("id IN ({chosen})"),
            };
            // The status checked, never the way in (see `sql_status_check`): the ids are.
            format!(
                "UPDATE events SET claim_token = $1, lease_expires_at = $2 \
                 WHERE {which} AND claim_token IS NULL AND {} RETURNING *",
                sql_status_check(OPEN_EVENTS)
            )
        };
        self.claim_rows(&sql, token, limit, lease, skip).await
    }

    /// Runs a claim `sql` that binds the claim token (`$1`), the lease's end (`$2`), now
    /// (`$3`), the limit (`$4`) and then each of `ids`, and returns the rows it claimed.
    pub(in crate::store) async fn claim_rows<R: Record>(
        &self,
        sql: &str,
        token: Uuid,
        limit: u32,
        lease: chrono::Duration,
        ids: &[Uuid],
    ) -> StoreResult<Vec<R>> {
        let now = Timestamp::now();
        let rows = on_pool!(self, pool, Db => {
            let mut q = sqlx::query_as::<Db, R>(sql)
                .bind(token)
                .bind(Timestamp::from_datetime(now.0 + lease))
                .bind(now)
                .bind(i64::from(limit))
                // A statement per length of the list would crowd the statement cache.
                .persistent(ids.is_empty());
            for id in ids {
                q = q.bind(*id);
            }
            q.fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// Which of `ids` are still held under `token`, open and within their lease: an abort, or
    /// a rescue after the lease ran out, takes an event from its holder.
    pub async fn still_held(
        &self,
        token: Uuid,
        ids: &[Uuid],
    ) -> StoreResult<std::collections::HashSet<Uuid>> {
        let mut held = std::collections::HashSet::new();
        let now = Timestamp::now();
        for chunk in ids.chunks(CHUNK) {
            let (among, vals) = among_ids(self.backend(), "id", 3, chunk);
            let sql = held_sql("id", &among);
            let found = on_pool!(self, pool, Db => {
                let sql = Db::text(&sql);
                sqlx::query_scalar::<Db, Uuid>(&sql)
                    .bind(token)
                    .bind(now)
                    .persistent(keep_list_prepared(&vals))
                    .bind_all(&vals)
                    .fetch_all(pool)
                    .await?
            });
            held.extend(found);
        }
        Ok(held)
    }

    /// The events of `ids` still held under `token`, as [`Store::still_held`] finds them, read
    /// back whole (spilled events, see [`super::Handoff`]), oldest first. (The engine renews
    /// leases near their end first: see `Engine::read_back`.)
    pub async fn held_events(&self, token: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Event>> {
        let mut events = Vec::with_capacity(ids.len());
        let now = Timestamp::now();
        for chunk in ids.chunks(CHUNK) {
            let (among, vals) = among_ids(self.backend(), "id", 3, chunk);
            let sql = format!("{} ORDER BY id", held_sql("*", &among));
            let found = on_pool!(self, pool, Db => {
                let sql = Db::text(&sql);
                sqlx::query_as::<Db, Event>(&sql)
                    .bind(token)
                    .bind(now)
                    .persistent(keep_list_prepared(&vals))
                    .bind_all(&vals)
                    .fetch_all(pool)
                    .await?
            });
            events.extend(found);
        }
        Ok(events)
    }

    /// Gives up the claims on `ids` held under `token`: the events become claimable.
    pub async fn release_events(&self, token: Uuid, ids: &[Uuid]) -> StoreResult<()> {
        for chunk in ids.chunks(CHUNK) {
            let (among, vals) = among_ids(self.backend(), "id", 2, chunk);
            let sql = format!(
                "UPDATE events SET claim_token = NULL, lease_expires_at = NULL \
                 WHERE claim_token IS NOT DISTINCT FROM $1 AND {among}"
            );
            on_pool!(self, pool, Db => {
                let sql = Db::text(&sql);
                sqlx::query::<Db>(&sql)
                    .bind(token)
                    .persistent(keep_list_prepared(&vals))
                    .bind_all(&vals)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(())
    }

    /// Renews the leases of work a worker still has in hand: `held` names each row (an event
    /// when `.2` is false, a job's source run or combined delivery when true) with the token
    /// it is held under. Only leases ending within three quarters of `lease` are written, so
    /// work that finishes quickly is never renewed (and a missed heartbeat still leaves half a
    /// lease); a row no longer held under its token is left alone.
    /// Returns how many leases were renewed.
    pub async fn renew_leases(
        &self,
        held: &[(Uuid, Uuid, bool)],
        lease: chrono::Duration,
    ) -> StoreResult<u64> {
        let now = Timestamp::now();
        let until = Timestamp::from_datetime(now.0 + lease);
        let soon = Timestamp::from_datetime(now.0 + lease * 3 / 4);
        let mut by_token: std::collections::BTreeMap<(Uuid, bool), Vec<Uuid>> = Default::default();
        for (id, token, job) in held {
            by_token.entry((*token, *job)).or_default().push(*id);
        }
        let mut renewed = 0;
        for ((token, job), ids) in by_token {
            let table = if job { "jobs" } else { "events" };
            for chunk in ids.chunks(CHUNK) {
                let (among, vals) = among_ids(self.backend(), "id", 4, chunk);
                let sql = format!(
                    "UPDATE {table} SET lease_expires_at = $1 \
                     WHERE claim_token IS NOT DISTINCT FROM $2 AND lease_expires_at < $3 \
                     AND {among}"
                );
                renewed += on_pool!(self, pool, Db => {
                    let sql = Db::text(&sql);
                    sqlx::query::<Db>(&sql)
                        .bind(until)
                        .bind(token)
                        .bind(soon)
                        .persistent(keep_list_prepared(&vals))
                        .bind_all(&vals)
                        .execute(pool)
                        .await?
                        .rows_affected()
                });
            }
        }
        Ok(renewed)
    }

    /// Frees every claim at once: for a store only one process uses (SQLite), whatever is
    /// claimed when that process starts was held by its predecessor, which is gone. Events
    /// become claimable, and jobs whose source run or combined delivery was under way are
    /// claimable again. Returns how many events and jobs were freed.
    pub async fn release_all_claims(&self) -> StoreResult<(u64, u64)> {
        let now = Timestamp::now();
        let freed = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let events = sqlx::query::<Db>(
                "UPDATE events SET claim_token = NULL, lease_expires_at = NULL \
                 WHERE claim_token IS NOT NULL",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let jobs = sqlx::query::<Db>(
                "UPDATE jobs SET lease_expires_at = $1 \
                 WHERE claim_token IS NOT NULL AND lease_expires_at > $1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            (events, jobs)
        });
        Ok(freed)
    }

    /// Gives up claims whose lease ran out (their worker died): the events become claimable.
    pub async fn rescue_events(&self) -> StoreResult<u64> {
        self.rescue_events_at(Timestamp::now()).await
    }

    /// Gives up claims whose lease had run out at `now`: the events become claimable.
    pub async fn rescue_events_at(&self, now: Timestamp) -> StoreResult<u64> {
        const RESCUE: &str = "UPDATE events SET claim_token = NULL, lease_expires_at = NULL \
                              WHERE claim_token IS NOT NULL AND lease_expires_at < $1";
        let n = match &self.pool {
            super::Pool::Pg(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query::<sqlx::Postgres>(THROUGH_LEASED_INDEX)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query(RESCUE)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                n
            }
            super::Pool::Sqlite(pool) => sqlx::query(RESCUE)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(n)
    }

    /// The events held under one of `tokens` whose lease had run out at `now`, each with its
    /// token: what a rescue at `now` would take from their holder.
    pub async fn expired_claims(
        &self,
        tokens: &[Uuid],
        now: Timestamp,
    ) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let mut expired = Vec::new();
        for chunk in tokens.chunks(CHUNK) {
            let (among, vals) = among_ids(self.backend(), "claim_token", 2, chunk);
            let sql = format!(
                "SELECT id, claim_token FROM events \
                 WHERE claim_token IS NOT NULL AND lease_expires_at < $1 AND {among}"
            );
            let found = match &self.pool {
                super::Pool::Pg(pool) => {
                    let mut tx = pool.begin().await?;
                    sqlx::query::<sqlx::Postgres>(THROUGH_LEASED_INDEX)
                        .execute(&mut *tx)
                        .await?;
                    let found = sqlx::query_as::<_, (Uuid, Uuid)>(&sql)
                        .bind(now)
                        .bind_all(&vals)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    found
                }
                super::Pool::Sqlite(pool) => {
                    let sql = <sqlx::Sqlite as StatementText>::text(&sql);
                    sqlx::query_as::<_, (Uuid, Uuid)>(&sql)
                        .bind(now)
                        .persistent(keep_list_prepared(&vals))
                        .bind_all(&vals)
                        .fetch_all(pool)
                        .await?
                }
            };
            expired.extend(found);
        }
        Ok(expired)
    }

    /// Releases everything held under `tokens` at once (graceful shutdown): events become
    /// claimable, jobs whose source had not finished are claimable again, and other nodes'
    /// workers are told.
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
        // Other nodes take the released work at once, not at their next poll.
        if !tokens.is_empty() {
            self.notify_work();
        }
        Ok(())
    }
}

/// `SELECT {columns}` of the events that meet `ids` (a condition on `id` over the parameters
/// from `$3` on) and are still held under the token `$1`, open, and within their lease at `$2`:
/// an abort, or a rescue after the lease ran out, takes an event from its holder. The ids are
/// the way in, the status only checked (see `sql_status_check`): written plainly, statistics
/// of a quiet moment made the planner read every event's entry of `events_job` for each check.
fn held_sql(columns: &str, ids: &str) -> String {
    format!(
        "SELECT {columns} FROM events WHERE claim_token IS NOT DISTINCT FROM $1 \
         AND lease_expires_at > $2 AND {} AND {ids}",
        sql_status_check(OPEN_EVENTS),
    )
}

/// Steers the planner, for the rest of an open Postgres transaction, off reading a whole table
/// (it still would if nothing else could answer): the looks for claimed events then read them
/// through their partial index (`events_leased`, the one index their conditions match). The
/// maintenance looks for leases that ran out every second; its plan followed the statistics of
/// the moment they were last gathered, and statistics gathered while a backlog was claimed say
/// a third of the table is claimed (and, once those leases' times are past, that they ran out):
/// the planner then read the whole events table, 50 ms a look at 20,000 events in the bench, a
/// cost growing with the history. The claimed events are bounded (what the workers have in
/// hand, and what dead nodes left until it is rescued), so the index is always the right way.
const THROUGH_LEASED_INDEX: &str = "SET LOCAL enable_seqscan = off";

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite's planner says it reads for `sql` in a database of the store's schema.
    async fn sqlite_plan(sql: &str) -> Vec<String> {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        crate::store::SQLITE_MIGRATOR.run(&pool).await.unwrap();
        sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect()
    }

    /// The job claim runs every poll interval while the write lock is held: it must read the
    /// claimable and leased jobs through their partial indexes, never the whole jobs table
    /// (it did, for an `IN` list of the one claimable status, and took 24 ms a claim after 40,000 orders).
    #[tokio::test]
    async fn the_job_claim_reads_through_its_indexes_on_sqlite() {
        // With none held, and with jobs held that it must leave out.
        for held in [0, 3] {
            let plan = sqlite_plan(&claim_jobs_sql(Backend::Sqlite, held)).await;
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN jobs")),
                "the claim reads the whole jobs table: {plan:?}"
            );
            for index in ["jobs_claimable", "jobs_leased"] {
                assert!(
                    plan.iter().any(|step| step.contains(index)),
                    "the claim does not use {index}: {plan:?}"
                );
            }
        }
    }
}
