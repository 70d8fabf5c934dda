//! Jobs: creating them (alone or with their records), finishing them when their events are
//! done, and reading them. Aborting one is an action of its own (`actions.rs`).

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::aggregates::aggregate_ready_sql;
use super::batch::{among_ids, keep_list_prepared, sql_in, sql_lit, Rows, CHUNK};
use super::history::{finish_entry, write_log};
use super::{on_pool, BeginWrite, Bind, Job, NewEvent, StatementText, Store, StoreResult};
use crate::domain::status::{ISSUE_EVENTS, OPEN_EVENTS};
use crate::domain::{EventStatus, JobStatus, JobStep, Timestamp};

/// Finishes, in the open transaction `$tx` of backend `$db`, those of the jobs `$ids` (a
/// slice) whose source is done and whose events are all terminal, adding their log entries to
/// `$logs` (for the transaction's [`write_log`](crate::store::history::write_log));
/// evaluates to the ids it finished. A job another transaction holds open work for is left as
/// it is: see [`Store::finish_job`] for the check after commit.
macro_rules! finish_jobs_in {
    ($db:ident, $tx:ident, $ids:expr, $now:expr, $logs:ident) => {{
        let mut finished: Vec<Uuid> = Vec::new();
        for chunk in $ids.chunks($crate::store::batch::CHUNK) {
            // An `IN` list, not one array (see `among_ids`): as an array, the finish cost four
            // times as much Postgres time in the bench (plans reading the jobs table whole were
            // seen; not looked into further).
            let ids = format!(
                "id IN ({})",
                $crate::store::batch::sql_marks(2, chunk.len())
            );
            let sql = $crate::store::jobs::finish_jobs_sql(&ids);
            let mut q = sqlx::query_as::<$db, (Uuid, Uuid, Uuid, String)>(&sql)
                .persistent(chunk.len() <= 8)
                .bind($now);
            for id in chunk {
                q = q.bind(*id);
            }
            for (id, org, stream, status) in q.fetch_all(&mut *$tx).await? {
                $logs.push($crate::store::history::finish_entry(
                    org, stream, id, &status,
                ));
                finished.push(id);
            }
        }
        finished
    }};
}
pub(in crate::store) use finish_jobs_in;

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

/// Finishes the jobs that meet `ids` (a condition on `id` over the parameters from `$2` on) at
/// `$1`, those whose source is done and whose events are all terminal: FINISHED when every
/// event is OK, FINISHED_WITH_ISSUES otherwise. Matches nothing else.
pub(in crate::store) fn finish_jobs_sql(ids: &str) -> String {
    debug_assert_eq!(JobStep::Finish.from(), JobStep::FinishWithIssues.from());
    format!(
        "UPDATE jobs SET status = CASE WHEN EXISTS (SELECT 1 FROM events \
           WHERE events.job_id = jobs.id AND events.status IN ({issues})) \
           THEN {with_issues} ELSE {finished} END, finished_at = $1, updated_at = $1 \
         WHERE {ids} AND status IN ({from}) AND source_done_at IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM events WHERE events.job_id = jobs.id \
             AND events.status IN ({open})) \
         RETURNING id, org_id, stream_id, status",
        issues = sql_in(ISSUE_EVENTS),
        with_issues = sql_lit(JobStep::FinishWithIssues.to()),
        finished = sql_lit(JobStep::Finish.to()),
        from = sql_in(JobStep::Finish.from()),
        open = sql_in(OPEN_EVENTS),
    )
}

impl Store {
    /// Queues a job (PENDING) and logs it.
    pub async fn create_job(&self, new: NewJob) -> StoreResult<Job> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        rows.pending_job(new, now);
        self.run_rows(&rows, now, true).await?;
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
        let (_, ids) = rows.job_with_events(new, data_type, events, now, None);
        self.run_rows(&rows, now, true).await?;
        let job = rows.jobs.remove(0);
        if ids.is_empty() {
            self.finish_job(job.id).await?;
        }
        Ok((job, ids))
    }

    /// Queues several jobs, each with its events (at least one each), in one transaction:
    /// all of them are stored or none. Returns each job with its events' ids, in order.
    pub async fn create_jobs_with_events(
        &self,
        jobs: Vec<(NewJob, &str, Vec<NewEvent>)>,
    ) -> StoreResult<Vec<(Job, Vec<Uuid>)>> {
        let now = Timestamp::now();
        let mut rows = Rows::default();
        let mut ids = Vec::with_capacity(jobs.len());
        for (new, data_type, events) in jobs {
            debug_assert!(!events.is_empty(), "a job without events is finished apart");
            ids.push(rows.job_with_events(new, data_type, events, now, None).1);
        }
        self.run_rows(&rows, now, true).await?;
        Ok(rows.jobs.into_iter().zip(ids).collect())
    }

    /// Finishes a job whose source is done and whose events are all terminal: FINISHED when
    /// every event is OK, FINISHED_WITH_ISSUES otherwise. Run after every terminal event
    /// commit, it is idempotent, and the run after the last commit always sees every event.
    pub async fn finish_job(&self, job_id: Uuid) -> StoreResult<Option<JobStatus>> {
        let now = Timestamp::now();
        let row: Option<(Uuid, Uuid, String)> = on_pool!(self, pool, Db => {
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query_as::<Db, (Uuid, Uuid, Uuid, String)>(&finish_jobs_sql("id = $2"))
                .bind(now)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|(_, org, stream, status)| (org, stream, status));
            if let Some((org, stream, status)) = &row {
                write_log!(Db, tx, [&finish_entry(*org, *stream, job_id, status)], now);
            }
            tx.commit().await?;
            row
        });
        Ok(row.and_then(|(_, _, s)| JobStatus::parse(&s)))
    }

    /// Finishes jobs whose source is done and whose events are all terminal but which are
    /// still PROCESSING (a worker died between an event's commit and the job's finishing), and
    /// makes due the combined delivery of aggregate jobs whose last transformation committed
    /// without doing so. Returns how many jobs it finished.
    ///
    /// The sweep walks the running jobs of each organisation in pages along
    /// `jobs_org_status` and gives each page, in one commit, to the two statements that finish a
    /// job and make an aggregate due (each checks a job's events along `events_job`): its cost
    /// follows the work in flight, never the history, whatever plan the database would pick for
    /// one query joining every running job with every event.
    pub async fn finish_stragglers(&self) -> StoreResult<usize> {
        const PAGE: usize = 500;
        let orgs: Vec<Uuid> = on_pool!(self, pool, Db => {
            sqlx::query_scalar::<Db, Uuid>("SELECT id FROM organisations")
                .fetch_all(pool)
                .await?
        });
        let running = format!(
            "SELECT id FROM jobs WHERE org_id = $1 AND status = {processing} \
             AND source_done_at IS NOT NULL AND id > $2 ORDER BY id LIMIT {PAGE}",
            processing = sql_lit(JobStatus::Processing),
        );
        let mut finished = 0;
        for org in orgs {
            let mut after = Uuid::nil();
            loop {
                let page: Vec<Uuid> = on_pool!(self, pool, Db => {
                    sqlx::query_scalar::<Db, Uuid>(&running)
                        .bind(org)
                        .bind(after)
                        .fetch_all(pool)
                        .await?
                });
                let Some(last) = page.last() else { break };
                after = *last;
                let now = Timestamp::now();
                finished += on_pool!(self, pool, Db => {
                    let mut tx = pool.begin_write().await?;
                    let mut logs = Vec::new();
                    let done = finish_jobs_in!(Db, tx, page, now, logs);
                    let rest: Vec<Uuid> =
                        page.iter().filter(|id| !done.contains(id)).copied().collect();
                    for chunk in rest.chunks(CHUNK) {
                        let sql = aggregate_ready_sql(chunk.len());
                        let mut q = sqlx::query::<Db>(&sql).persistent(false).bind(now);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    write_log!(Db, tx, &logs, now);
                    tx.commit().await?;
                    done.len()
                });
                if page.len() < PAGE {
                    break;
                }
            }
        }
        Ok(finished)
    }

    /// The jobs with these ids (duplicates allowed).
    pub async fn jobs_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<Job>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let (among, vals) = among_ids(self.backend(), "id", 1, chunk);
            let sql = format!("SELECT * FROM jobs WHERE {among}");
            let found = on_pool!(self, pool, Db => {
                let sql = Db::text(&sql);
                sqlx::query_as::<Db, Job>(&sql)
                    .persistent(keep_list_prepared(&vals))
                    .bind_all(&vals)
                    .fetch_all(pool)
                    .await?
            });
            jobs.extend(found);
        }
        Ok(jobs)
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

    /// Event counts by status of a job.
    pub async fn job_counts(&self, job_id: Uuid) -> StoreResult<Vec<(EventStatus, i64)>> {
        Ok(self
            .jobs_counts(&[job_id])
            .await?
            .remove(&job_id)
            .unwrap_or_default())
    }
}
