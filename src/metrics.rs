//! Prometheus metrics, kept in memory and written as text on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Counters of this process.
#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(&'static str, String, u16), HttpStat>>,
    webhooks: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Records transformed: (ok count, failed count, seconds spent).
    transforms: Mutex<(u64, u64, f64)>,
    /// Alert notifications by outcome (`sent`, `failed`: a try that did not go).
    notifications: Mutex<BTreeMap<&'static str, u64>>,
    /// Rows cleared or deleted by retention, by kind.
    retention: Mutex<BTreeMap<String, u64>>,
    /// Claims taken back after their lease ran out, by kind (`events`, `jobs`).
    rescues: Mutex<BTreeMap<&'static str, u64>>,
    /// Delivery attempts by outcome and error code (empty for none).
    attempts: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// The store's figures as last rendered, and when: read at most every [`STORE_EVERY`].
    store: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
}

/// Where this process's received events went: `queued` and `spilled` events were stored
/// claimed for its own workers (no claim query, no second write of the event's row),
/// `stored` ones unclaimed, for any node's workers to claim.
pub fn handoff_text(placed: crate::store::Placed) -> String {
    let mut out = String::from(
        "# HELP wharf_received_events_total Events of received pushes, by where they were \
         placed: held for this process's workers (queued, spilled) or stored for any worker to \
         claim.\n# TYPE wharf_received_events_total counter\n",
    );
    for (placed, n) in [
        ("queued", placed.queued),
        ("spilled", placed.spilled),
        ("stored", placed.stored),
    ] {
        let _ = writeln!(
            out,
            "wharf_received_events_total{{placed=\"{placed}\"}} {n}"
        );
    }
    out
}

/// How long the store's figures are reused between scrapes.
const STORE_EVERY: Duration = Duration::from_secs(10);

#[derive(Default, Clone, Copy)]
struct HttpStat {
    count: u64,
    seconds: f64,
}

impl Metrics {
    pub fn record_http(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let mut map = self.http.lock().unwrap_or_else(|e| e.into_inner());
        let stat = map.entry((method, route.to_string(), status)).or_default();
        stat.count += 1;
        stat.seconds += took.as_secs_f64();
    }

    /// Counts a push by system and outcome (`accepted`, `duplicate`, `rejected`, `invalid`).
    pub fn record_webhook(&self, system: &str, outcome: &'static str) {
        let mut map = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((system.to_string(), outcome)).or_default() += 1;
    }

    /// Counts what a retention sweep cleared or deleted.
    pub fn record_retention(&self, what: &str, n: u64) {
        let mut map = self.retention.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(what.to_string()).or_default() += n;
    }

    /// Counts claims taken back from a worker whose lease ran out.
    pub fn record_rescue(&self, kind: &'static str, n: u64) {
        let mut map = self.rescues.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(kind).or_default() += n;
    }

    /// Counts one delivery attempt.
    pub fn record_attempt(&self, outcome: &'static str, code: Option<&str>) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((outcome, code.unwrap_or_default().to_string()))
            .or_default() += 1;
    }

    /// The store's figures (work waiting, recent events, alerts), as Prometheus text; read
    /// from the database at most every ten seconds, however often the endpoint is scraped.
    pub async fn render_store(&self, store: &crate::store::Store) -> String {
        let mut cached = self.store.lock().await;
        if let Some((at, text)) = cached.as_ref() {
            if at.elapsed() < STORE_EVERY {
                return text.clone();
            }
        }
        let text = match store.metric_figures().await {
            Ok(f) => store_text(&f),
            Err(e) => {
                tracing::warn!(error = %e, "reading the store's figures for /metrics failed");
                "# HELP wharf_store_figures_up Whether the store's figures could be read.\n\
                 # TYPE wharf_store_figures_up gauge\nwharf_store_figures_up 0\n"
                    .to_string()
            }
        };
        *cached = Some((std::time::Instant::now(), text.clone()));
        text
    }

    /// Counts one try at sending an alert notification.
    pub fn record_notification(&self, outcome: &'static str) {
        let mut map = self.notifications.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(outcome).or_default() += 1;
    }

    /// Counts one record through a transformation.
    pub fn observe_transform(&self, took: Duration, ok: bool) {
        let mut t = self.transforms.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            t.0 += 1;
        } else {
            t.1 += 1;
        }
        t.2 += took.as_secs_f64();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        {
            let hooks = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_webhooks_total Pushes received, by system and outcome.\n");
            out.push_str("# TYPE wharf_webhooks_total counter\n");
            for ((system, outcome), n) in hooks.iter() {
                let _ = writeln!(
                    out,
                    "wharf_webhooks_total{{system=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(system)
                );
            }
        }
        {
            let (ok, failed, seconds) = *self.transforms.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_transform_records_total Records run through transformations, by outcome.\n");
            out.push_str("# TYPE wharf_transform_records_total counter\n");
            let _ = writeln!(out, "wharf_transform_records_total{{outcome=\"ok\"}} {ok}");
            let _ = writeln!(
                out,
                "wharf_transform_records_total{{outcome=\"error\"}} {failed}"
            );
            out.push_str("# HELP wharf_transform_seconds_total Time spent transforming records.\n");
            out.push_str("# TYPE wharf_transform_seconds_total counter\n");
            let _ = writeln!(out, "wharf_transform_seconds_total {seconds:.6}");
        }
        {
            let sent = self.notifications.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_notifications_total Tries at sending alert notifications, by outcome.\n");
            out.push_str("# TYPE wharf_notifications_total counter\n");
            for outcome in ["sent", "failed"] {
                let n = sent.get(outcome).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "wharf_notifications_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        {
            let removed = self.retention.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_retention_removed_total Rows retention cleared or deleted, by kind.\n");
            out.push_str("# TYPE wharf_retention_removed_total counter\n");
            for (what, n) in removed.iter() {
                let _ = writeln!(out, "wharf_retention_removed_total{{what=\"{what}\"}} {n}");
            }
        }
        {
            let rescues = self.rescues.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_claims_rescued_total Claims taken back after their worker's lease ran out, by kind.\n");
            out.push_str("# TYPE wharf_claims_rescued_total counter\n");
            for (kind, n) in rescues.iter() {
                let _ = writeln!(out, "wharf_claims_rescued_total{{kind=\"{kind}\"}} {n}");
            }
        }
        {
            let attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            out.push_str("# HELP wharf_delivery_attempts_total Delivery attempts by outcome and error code.\n");
            out.push_str("# TYPE wharf_delivery_attempts_total counter\n");
            for ((outcome, code), n) in attempts.iter() {
                let _ = writeln!(
                    out,
                    "wharf_delivery_attempts_total{{outcome=\"{outcome}\",error_code=\"{}\"}} {n}",
                    escape(code)
                );
            }
        }
        let map = self.http.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP wharf_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE wharf_http_requests_total counter\n");
        for ((method, route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "wharf_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str(
            "# HELP wharf_http_request_duration_seconds_sum Time spent answering, by route.\n",
        );
        out.push_str("# TYPE wharf_http_request_duration_seconds_sum counter\n");
        for ((method, route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "wharf_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {:.6}",
                escape(route),
                s.seconds
            );
        }
        out
    }
}

/// The metrics label of a request method: the standard methods by name, any other as `OTHER`,
/// so that a client inventing methods cannot add series without end.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The store's figures as Prometheus text.
fn store_text(f: &crate::store::MetricFigures) -> String {
    let mut out = String::new();
    out.push_str("# HELP wharf_store_figures_up Whether the store's figures could be read.\n");
    out.push_str("# TYPE wharf_store_figures_up gauge\nwharf_store_figures_up 1\n");
    out.push_str(
        "# HELP wharf_events Events by stream and status: every event waiting (NEW, TRANSFORMED), \
         and those created in the last 24 hours for the finished statuses.\n",
    );
    out.push_str("# TYPE wharf_events gauge\n");
    for (stream, status, n) in &f.events {
        let _ = writeln!(
            out,
            "wharf_events{{stream_id=\"{stream}\",status=\"{status}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP wharf_oldest_pending_event_age_seconds Age of the oldest event still NEW or \
         TRANSFORMED, by stream.\n",
    );
    out.push_str("# TYPE wharf_oldest_pending_event_age_seconds gauge\n");
    for (stream, age) in &f.oldest_pending {
        let _ = writeln!(
            out,
            "wharf_oldest_pending_event_age_seconds{{stream_id=\"{stream}\"}} {age:.3}"
        );
    }
    out.push_str("# HELP wharf_alerts Alerts not yet resolved, by status.\n");
    out.push_str("# TYPE wharf_alerts gauge\n");
    for status in ["open", "acknowledged", "ignored"] {
        let n = f
            .alerts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "wharf_alerts{{status=\"{status}\"}} {n}");
    }
    out.push_str("# HELP wharf_notifications_pending Alert notifications waiting for a try.\n");
    out.push_str("# TYPE wharf_notifications_pending gauge\n");
    let _ = writeln!(
        out,
        "wharf_notifications_pending {}",
        f.notifications_pending
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"FROBNICATE").unwrap()),
            "OTHER"
        );
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "OTHER");
    }
}
