//! The counts the summary report is made of, over a time range of creation. Events and jobs
//! have time-ordered ids (UUID v7), so a range of creation times is a range of ids: the
//! organisation's id index serves it, with no index of its own to keep up on the hot path.

use uuid::Uuid;

use super::{on_pool, Store, StoreResult};
use crate::domain::Timestamp;

/// Upper bounds (ms) of the receipt→delivery histogram's buckets; beyond the last is open.
pub const DELIVERY_BUCKETS_MS: [f64; 18] = [
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    900_000.0,
    3_600_000.0,
    21_600_000.0,
    86_400_000.0,
    604_800_000.0,
];

/// Events of one stream, data type and status (and, for OK, one delivery-time bucket).
#[derive(Debug, Clone)]
pub struct EventCount {
    pub stream_id: Uuid,
    pub data_type: String,
    pub status: String,
    /// OK events: the bucket of their receipt→delivery time (the first of
    /// [`DELIVERY_BUCKETS_MS`] they are under, or its length past the last); -1 otherwise.
    pub bucket: i64,
    pub n: i64,
    /// OK events: the sum of their receipt→delivery times.
    pub delivery_ms: Option<f64>,
    pub last_ok_at: Option<Timestamp>,
}

/// Jobs of one stream and status.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobCount {
    pub stream_id: Uuid,
    pub status: String,
    pub n: i64,
}

/// The smallest UUID v7 of time `t`: every id made at `t` or later sorts at or after it.
pub(in crate::store) fn id_floor(t: Timestamp) -> Uuid {
    let ms = t.0.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

impl Store {
    /// Events and jobs of `org` created in `[from, to)`, counted (of one stream, if given).
    pub async fn report_counts(
        &self,
        org: Uuid,
        from: Timestamp,
        to: Timestamp,
        stream: Option<Uuid>,
    ) -> StoreResult<(Vec<EventCount>, Vec<JobCount>)> {
        let ms = self.backend().millis_between("created_at", "updated_at");
        let mut bucket = String::from("CASE WHEN status <> 'OK' THEN -1");
        for (i, bound) in DELIVERY_BUCKETS_MS.iter().enumerate() {
            bucket.push_str(&format!(" WHEN ms < {bound:.1} THEN {i}"));
        }
        bucket.push_str(&format!(" ELSE {} END", DELIVERY_BUCKETS_MS.len()));
        let only = if stream.is_some() {
            " AND stream_id = $4"
        } else {
            ""
        };
        // The delivery time is computed once a row, and its bucket once, in subqueries the
        // planner keeps as they are (see `Backend::as_written`); grouped by stream, type,
        // status and bucket, a few hundred groups aggregate in memory as the rows stream by.
        let kept = self.backend().as_written();
        let events_sql = format!(
            "SELECT stream_id, data_type, status, CAST(bucket AS BIGINT) AS bucket, \
             COUNT(*) AS n, SUM(CASE WHEN status = 'OK' THEN ms END) AS delivery_ms, \
             MAX(CASE WHEN status = 'OK' THEN updated_at END) AS last_ok_at \
             FROM (SELECT stream_id, data_type, status, updated_at, ms, {bucket} AS bucket \
                   FROM (SELECT stream_id, data_type, status, updated_at, {ms} AS ms FROM events \
                         WHERE org_id = $1 AND id >= $2 AND id < $3{only} {kept}) timed {kept}) bucketed \
             GROUP BY stream_id, data_type, status, bucket"
        );
        let jobs_sql = format!(
            "SELECT stream_id, status, COUNT(*) AS n FROM jobs \
             WHERE org_id = $1 AND id >= $2 AND id < $3{only} GROUP BY stream_id, status"
        );
        let (low, high) = (id_floor(from), id_floor(to));
        let found = on_pool!(self, pool, Db => {
            use sqlx::Row;
            let mut q = sqlx::query::<Db>(&events_sql).bind(org).bind(low).bind(high);
            let mut j = sqlx::query_as::<Db, JobCount>(&jobs_sql).bind(org).bind(low).bind(high);
            if let Some(s) = stream {
                q = q.bind(s);
                j = j.bind(s);
            }
            let mut events = Vec::new();
            for row in q.fetch_all(pool).await? {
                events.push(EventCount {
                    stream_id: row.try_get("stream_id")?,
                    data_type: row.try_get("data_type")?,
                    status: row.try_get("status")?,
                    bucket: row.try_get("bucket")?,
                    n: row.try_get("n")?,
                    delivery_ms: row.try_get("delivery_ms")?,
                    last_ok_at: row.try_get("last_ok_at")?,
                });
            }
            (events, j.fetch_all(pool).await?)
        });
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_floor_sorts_before_every_id_of_its_millisecond_and_after_earlier_ones() {
        let t = Timestamp::now();
        let floor = id_floor(t);
        let made = Uuid::now_v7();
        assert!(floor <= made);
        let earlier = id_floor(Timestamp::from_datetime(
            t.0 - chrono::Duration::milliseconds(1),
        ));
        assert!(earlier < floor);
        let ts = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            t.0.timestamp() as u64,
            t.0.timestamp_subsec_nanos(),
        ));
        assert!(
            floor <= ts
                && ts
                    < id_floor(Timestamp::from_datetime(
                        t.0 + chrono::Duration::milliseconds(1)
                    ))
        );
    }
}

/// What `/metrics` shows of the store.
#[derive(Debug, Clone, Default)]
pub struct MetricFigures {
    /// (stream, status, events): every waiting event, and finished ones of the last 24 hours.
    pub events: Vec<(Uuid, String, i64)>,
    /// (stream, seconds): the age of each stream's oldest waiting event.
    pub oldest_pending: Vec<(Uuid, f64)>,
    /// (status, alerts) of alerts not yet resolved.
    pub alerts: Vec<(String, i64)>,
    pub notifications_pending: i64,
}

impl Store {
    /// The figures `/metrics` shows, across organisations. Waiting events are few and served
    /// by the claim and lease indexes; finished ones are read for the last day only, by id range.
    pub async fn metric_figures(&self) -> StoreResult<MetricFigures> {
        let now = Timestamp::now();
        let day_ago = id_floor(Timestamp::from_datetime(now.0 - chrono::Duration::days(1)));
        let (waiting, finished, alerts, pending) = on_pool!(self, pool, Db => {
            // Waiting events are read in two parts, each through its partial index: the
            // unclaimed ones through the claim index, the claimed ones through the lease index.
            // As one condition on `status` no index serves it, and both stores read the whole
            // table (66 ms for 40,000 orders on SQLite, against 0.1 ms in two parts).
            let waiting = sqlx::query_as::<Db, (Uuid, String, i64, Timestamp)>(
                "SELECT stream_id, status, COUNT(*), MIN(created_at) FROM ( \
                   SELECT stream_id, status, created_at FROM events \
                   WHERE status IN ('NEW', 'TRANSFORMED') AND claim_token IS NULL \
                   UNION ALL \
                   SELECT stream_id, status, created_at FROM events \
                   WHERE claim_token IS NOT NULL AND status IN ('NEW', 'TRANSFORMED') \
                 ) AS waiting GROUP BY stream_id, status ORDER BY stream_id, status",
            )
            .fetch_all(pool)
            .await?;
            let finished = sqlx::query_as::<Db, (Uuid, String, i64)>(
                "SELECT stream_id, status, COUNT(*) FROM events \
                 WHERE id >= $1 AND status IN ('OK','ERROR','FAILED','ABORTED') \
                 GROUP BY stream_id, status ORDER BY stream_id, status",
            )
            .bind(day_ago)
            .fetch_all(pool)
            .await?;
            let alerts = sqlx::query_as::<Db, (String, i64)>(
                "SELECT status, COUNT(*) FROM alerts \
                 WHERE status IN ('open','acknowledged','ignored') GROUP BY status",
            )
            .fetch_all(pool)
            .await?;
            let pending = sqlx::query_scalar::<Db, i64>(
                "SELECT COUNT(*) FROM notifications WHERE status = 'pending'",
            )
            .fetch_one(pool)
            .await?;
            (waiting, finished, alerts, pending)
        });
        let mut f = MetricFigures {
            alerts,
            notifications_pending: pending,
            ..Default::default()
        };
        for (stream, status, n, oldest) in waiting {
            f.events.push((stream, status, n));
            let age = (now.0 - oldest.0).num_milliseconds().max(0) as f64 / 1000.0;
            match f.oldest_pending.iter_mut().find(|(s, _)| *s == stream) {
                Some((_, a)) => *a = a.max(age),
                None => f.oldest_pending.push((stream, age)),
            }
        }
        f.events.extend(finished);
        Ok(f)
    }
}
