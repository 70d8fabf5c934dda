//! The summary report: per stream, per data type and in total, what was received and what
//! became of it over a time range — always over all the data in the range.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::{EventCount, JobCount, Store, StoreResult, StreamBrief, DELIVERY_BUCKETS_MS};

/// Events by outcome.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct EventOutcomes {
    #[serde(rename = "OK")]
    pub ok: i64,
    #[serde(rename = "ERROR")]
    pub error: i64,
    #[serde(rename = "FAILED")]
    pub failed: i64,
    #[serde(rename = "ABORTED")]
    pub aborted: i64,
    /// NEW and TRANSFORMED: not finished yet.
    pub pending: i64,
}

/// The figures of one stream, one data type, or all.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Summary {
    /// Jobs by status.
    pub jobs: BTreeMap<String, i64>,
    pub events: EventOutcomes,
    /// OK over finished events (OK, ERROR, FAILED, ABORTED); null with none finished.
    pub success_rate: Option<f64>,
    /// Mean time from receipt to delivery of OK events, in milliseconds.
    pub avg_delivery_ms: Option<f64>,
    /// 95th percentile of receipt→delivery time: the upper bound of the histogram bucket it
    /// falls in (10, 25, 50, 100, 250 ms … 1 day, 1 week).
    pub p95_delivery_ms: Option<f64>,
    pub last_ok_at: Option<Timestamp>,
    #[serde(skip)]
    delivery_ms: f64,
    #[serde(skip)]
    histogram: Vec<i64>,
}

impl Summary {
    fn add_events(&mut self, c: &EventCount) {
        let e = &mut self.events;
        match c.status.as_str() {
            "OK" => e.ok += c.n,
            "ERROR" => e.error += c.n,
            "FAILED" => e.failed += c.n,
            "ABORTED" => e.aborted += c.n,
            _ => e.pending += c.n,
        }
        if c.status == "OK" {
            self.delivery_ms += c.delivery_ms.unwrap_or(0.0);
            if self.histogram.is_empty() {
                self.histogram = vec![0; DELIVERY_BUCKETS_MS.len() + 1];
            }
            if let Some(slot) = usize::try_from(c.bucket)
                .ok()
                .and_then(|b| self.histogram.get_mut(b))
            {
                *slot += c.n;
            }
            self.last_ok_at = self.last_ok_at.max(c.last_ok_at);
        }
    }

    fn add_jobs(&mut self, c: &JobCount) {
        *self.jobs.entry(c.status.clone()).or_default() += c.n;
    }

    fn finish(&mut self) {
        let e = &self.events;
        let finished = e.ok + e.error + e.failed + e.aborted;
        self.success_rate = (finished > 0).then(|| e.ok as f64 / finished as f64);
        if e.ok > 0 {
            self.avg_delivery_ms = Some((self.delivery_ms / e.ok as f64 * 10.0).round() / 10.0);
            // The smallest bound with at least 95% of OK events under it; past the last
            // bound, the last bound (a week or more).
            let wanted = (e.ok as f64 * 0.95).ceil() as i64;
            let mut seen = 0;
            let at = self.histogram.iter().position(|n| {
                seen += n;
                seen >= wanted
            });
            let last = DELIVERY_BUCKETS_MS.len() - 1;
            self.p95_delivery_ms = Some(DELIVERY_BUCKETS_MS[at.unwrap_or(last).min(last)]);
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamSummary {
    pub stream_id: Uuid,
    pub title: String,
    pub data_type: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataTypeSummary {
    pub data_type: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The report over `[from, to)`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub from: Timestamp,
    pub to: Timestamp,
    pub totals: Summary,
    pub streams: Vec<StreamSummary>,
    pub data_types: Vec<DataTypeSummary>,
}

/// Builds the report of `org` (of one stream, if given) over jobs and events created in
/// `[from, to)`. Streams with nothing in the range are listed with zeros.
pub async fn summary(
    store: &Store,
    org: Uuid,
    from: Timestamp,
    to: Timestamp,
    stream: Option<Uuid>,
) -> StoreResult<Report> {
    let streams: Vec<StreamBrief> = store
        .stream_briefs(org)
        .await?
        .into_iter()
        .filter(|s| stream.is_none_or(|id| id == s.id))
        .collect();
    let (events, jobs) = store.report_counts(org, from, to, stream).await?;
    let mut totals = Summary::default();
    let mut by_stream: BTreeMap<Uuid, Summary> = BTreeMap::new();
    let mut by_type: BTreeMap<String, Summary> = BTreeMap::new();
    for s in &streams {
        by_stream.entry(s.id).or_default();
        by_type.entry(s.data_type.clone()).or_default();
    }
    let type_of: BTreeMap<Uuid, &str> = streams
        .iter()
        .map(|s| (s.id, s.data_type.as_str()))
        .collect();
    for c in &events {
        totals.add_events(c);
        by_stream.entry(c.stream_id).or_default().add_events(c);
        by_type
            .entry(c.data_type.clone())
            .or_default()
            .add_events(c);
    }
    for c in &jobs {
        totals.add_jobs(c);
        by_stream.entry(c.stream_id).or_default().add_jobs(c);
        if let Some(t) = type_of.get(&c.stream_id) {
            by_type.entry(t.to_string()).or_default().add_jobs(c);
        }
    }
    totals.finish();
    let streams = streams
        .iter()
        .map(|s| {
            let mut summary = by_stream.remove(&s.id).unwrap_or_default();
            summary.finish();
            StreamSummary {
                stream_id: s.id,
                title: s.title.clone(),
                data_type: s.data_type.clone(),
                summary,
            }
        })
        .collect();
    let data_types = by_type
        .into_iter()
        .map(|(data_type, mut summary)| {
            summary.finish();
            DataTypeSummary { data_type, summary }
        })
        .collect();
    Ok(Report {
        from,
        to,
        totals,
        streams,
        data_types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bucket: i64, n: i64, ms: f64) -> EventCount {
        EventCount {
            stream_id: Uuid::nil(),
            data_type: "order".into(),
            status: "OK".into(),
            bucket,
            n,
            delivery_ms: Some(ms),
            last_ok_at: None,
        }
    }

    #[test]
    fn the_p95_is_the_bound_of_the_bucket_holding_the_95th_percentile() {
        let mut s = Summary::default();
        // 90 under 10 ms, 6 under 250 ms, 4 under 1 s: the 95th is under 250 ms.
        s.add_events(&ok(0, 90, 450.0));
        s.add_events(&ok(4, 6, 900.0));
        s.add_events(&ok(6, 4, 2000.0));
        s.finish();
        assert_eq!(s.p95_delivery_ms, Some(250.0));
        assert_eq!(s.avg_delivery_ms, Some(33.5));
        assert_eq!(s.success_rate, Some(1.0));
        // Slower than the last bound: shown as the last bound, never out of range.
        let mut slow = Summary::default();
        slow.add_events(&ok(DELIVERY_BUCKETS_MS.len() as i64, 3, 3.0e9));
        slow.finish();
        assert_eq!(slow.p95_delivery_ms, Some(604_800_000.0));
        let empty = {
            let mut e = Summary::default();
            e.finish();
            e
        };
        assert_eq!(empty.p95_delivery_ms, None);
        assert_eq!(empty.success_rate, None);
    }
}
