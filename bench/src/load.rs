//! The load the bench offers and what it sees arrive: orders, their open-loop sending, and
//! the wait for each to reach the sink.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use wharf_testkit::sink::Sink;

use crate::SECRET;

/// The order a delivery carries: the library's sales-order transformation writes the Shopify
/// id as `external_id`; a passthrough keeps the numeric `id`.
pub fn order_id(body: &Value) -> String {
    match body["external_id"].as_str() {
        Some(id) => id.to_string(),
        None => body["id"]
            .as_u64()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    }
}

/// A typical Shopify order (~1.9 KB) with id `n`.
pub fn order(n: u64) -> Value {
    json!({
        "id": n, "name": format!("#{n}"), "email": "customer@example.com", "currency": "GBP",
        "created_at": "2026-11-22T10:00:00+00:00", "financial_status": "paid", "total_price": "249.90",
        "subtotal_price": "239.90", "total_tax": "41.65", "total_discounts": "10.00",
        "shipping_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Analytical Row",
            "city": "London", "zip": "EC1A 1BB", "country_code": "GB", "phone": "+44 20 7946 0000"},
        "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Analytical Row",
            "city": "London", "zip": "EC1A 1BB", "country_code": "GB"},
        "line_items": [
            {"id": n * 10 + 1, "sku": "WH-TEE-BLK-M", "title": "Wharf tee", "variant_title": "Black / M",
             "quantity": 2, "price": "39.95", "grams": 180, "requires_shipping": true, "taxable": true},
            {"id": n * 10 + 2, "sku": "WH-HOOD-GRY-L", "title": "Wharf hoodie", "variant_title": "Grey / L",
             "quantity": 1, "price": "89.95", "grams": 620, "requires_shipping": true, "taxable": true},
            {"id": n * 10 + 3, "sku": "WH-CAP-NVY", "title": "Wharf cap", "variant_title": "Navy",
             "quantity": 1, "price": "70.05", "grams": 90, "requires_shipping": true, "taxable": true}
        ],
        "shipping_lines": [{"code": "NEXT_DAY", "title": "Next day", "price": "10.00"}],
        "note_attributes": [{"name": "gift", "value": "no"}],
        "tags": "bench, wholesale"
    })
}

/// The `p`th percentile of each second's latencies (by scheduled send time), in order: where a
/// tail comes from — a few slow seconds, or every second alike.
pub fn percentile_by_second(sent: &Sent, p: f64) -> Vec<f64> {
    let mut seconds: Vec<Vec<f64>> = Vec::new();
    for (lat, at) in sent.latencies.iter().zip(&sent.scheduled_s) {
        let s = *at as usize;
        if seconds.len() <= s {
            seconds.resize_with(s + 1, Vec::new);
        }
        seconds[s].push(*lat);
    }
    seconds
        .into_iter()
        .map(|mut l| {
            l.sort_by(|a, b| a.total_cmp(b));
            (percentile(&l, p) * 10.0).round() / 10.0
        })
        .collect()
}

/// Writes `sent`'s accepted requests to `path` as `seconds,ms` lines (scheduled send time from
/// the start, latency), in the order they were scheduled.
pub fn write_latencies(sent: &Sent, path: &std::path::Path) -> std::io::Result<()> {
    let mut rows: Vec<(f64, f64)> = sent
        .scheduled_s
        .iter()
        .copied()
        .zip(sent.latencies.iter().copied())
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut text = String::with_capacity(rows.len() * 16);
    for (at, ms) in rows {
        text.push_str(&format!("{at:.4},{ms:.3}\n"));
    }
    std::fs::write(path, text)
}

/// The `p`th percentile of sorted samples (0 when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Results of sending a batch of webhooks.
pub struct Sent {
    /// Latency of each accepted request from its scheduled send time, ms.
    pub latencies: Vec<f64>,
    /// When each of `latencies` was scheduled, seconds from the start (same order).
    pub scheduled_s: Vec<f64>,
    /// When each accepted order was sent, by id.
    pub sent_at: HashMap<String, Instant>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Sent {
    /// The requests scheduled in the first `seconds` (a warm-up) and those after, whose
    /// scheduled times then count from its end. Errors and send times stay with the second part;
    /// each part's `elapsed` is its share of the whole.
    pub fn split_at(self, seconds: f64) -> (Sent, Sent) {
        let (mut early, mut late) = (Vec::new(), Vec::new());
        for (lat, at) in self.latencies.into_iter().zip(self.scheduled_s) {
            if at < seconds {
                early.push((lat, at));
            } else {
                late.push((lat, at - seconds));
            }
        }
        let warm = Duration::from_secs_f64(seconds.max(0.0)).min(self.elapsed);
        let (latencies, scheduled_s) = early.into_iter().unzip();
        let first = Sent {
            latencies,
            scheduled_s,
            sent_at: HashMap::new(),
            errors: 0,
            elapsed: warm,
        };
        let (latencies, scheduled_s) = late.into_iter().unzip();
        let rest = Sent {
            latencies,
            scheduled_s,
            sent_at: self.sent_at,
            errors: self.errors,
            elapsed: self.elapsed - warm,
        };
        (first, rest)
    }
}

/// Pushes order `id` to `url` as Shopify does (signed `orders/create`), with `webhook_id` as
/// its delivery id.
pub async fn push_order(
    client: &reqwest::Client,
    url: &str,
    id: u64,
    webhook_id: &str,
) -> reqwest::Result<reqwest::Response> {
    let body = serde_json::to_vec(&order(id)).expect("plain JSON");
    client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "x-shopify-hmac-sha256",
            wharf_testkit::sign::hmac_sha256_base64(SECRET.as_bytes(), &body),
        )
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-shop-domain", "bench.myshopify.com")
        .header("x-shopify-webhook-id", webhook_id)
        .body(body)
        .send()
        .await
}

/// Sends orders `first..first+n` at `rate` a second (0: as fast as `concurrency` allows).
pub async fn drive(
    client: &reqwest::Client,
    url: &str,
    first: u64,
    n: u64,
    rate: u64,
    concurrency: usize,
) -> Sent {
    let slots = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let results = Arc::new(Mutex::new((
        Vec::with_capacity(n as usize),
        HashMap::new(),
        0u64,
        Vec::with_capacity(n as usize),
    )));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let scheduled = if rate == 0 {
            Instant::now()
        } else {
            start + Duration::from_secs_f64(i as f64 / rate as f64)
        };
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("open");
        let (client, url, results) = (client.clone(), url.to_string(), results.clone());
        let id = first + i;
        tasks.spawn(async move {
            let sent = Instant::now();
            let res = push_order(&client, &url, id, &format!("bench-{id}")).await;
            let ok = matches!(&res, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED);
            let mut r = results.lock().unwrap();
            if ok {
                r.0.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                r.3.push((scheduled - start).as_secs_f64());
                r.1.insert(id.to_string(), sent);
            } else {
                r.2 += 1;
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    // Every task has finished: take what they recorded.
    let (latencies, sent_at, errors, scheduled_s) = std::mem::take(&mut *results.lock().unwrap());
    Sent {
        latencies,
        scheduled_s,
        sent_at,
        errors,
        elapsed,
    }
}

/// Waits until the sink has every id in `ids` (or `timeout` passes); returns when the last
/// arrived, and samples of (seconds, backlog) along the way.
pub async fn drain(
    sink: &Sink,
    ids: &HashMap<String, Instant>,
    since: Instant,
    timeout: Duration,
) -> (Option<Instant>, Vec<(f64, u64)>) {
    let mut series = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let (missing, last) = sink.with_arrivals(|arrivals| {
            let mut missing = 0u64;
            let mut last: Option<Instant> = None;
            for id in ids.keys() {
                match arrivals.get(id).and_then(|a| a.first()) {
                    Some(t) => last = Some(last.map_or(*t, |l| l.max(*t))),
                    None => missing += 1,
                }
            }
            (missing, last)
        });
        series.push((since.elapsed().as_secs_f64(), missing));
        if series.len() % 10 == 1 {
            eprintln!(
                "  {:>6.1}s: {missing} of {} not delivered yet",
                since.elapsed().as_secs_f64(),
                ids.len()
            );
        }
        if missing == 0 {
            return (last, series);
        }
        if Instant::now() > deadline {
            return (None, series);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_has_its_own_percentile() {
        let sent = Sent {
            latencies: vec![1.0, 2.0, 300.0, 4.0, 5.0],
            scheduled_s: vec![0.1, 0.5, 0.9, 2.2, 2.7],
            sent_at: HashMap::new(),
            errors: 0,
            elapsed: Duration::from_secs(3),
        };
        // Second 1 sent nothing accepted: 0, not a gap that shifts the later seconds.
        assert_eq!(percentile_by_second(&sent, 100.0), vec![300.0, 0.0, 5.0]);
    }

    #[test]
    fn a_warm_up_is_split_off_and_the_rest_counts_from_its_end() {
        let sent = Sent {
            latencies: vec![90.0, 40.0, 3.0, 4.0, 5.0],
            scheduled_s: vec![0.0, 0.5, 1.0, 1.5, 2.9],
            sent_at: HashMap::new(),
            errors: 2,
            elapsed: Duration::from_secs_f64(3.1),
        };
        let (warm, measured) = sent.split_at(1.0);
        assert_eq!(warm.latencies, vec![90.0, 40.0]);
        assert_eq!(warm.elapsed, Duration::from_secs(1));
        assert_eq!(warm.errors, 0);
        assert_eq!(measured.latencies, vec![3.0, 4.0, 5.0]);
        assert_eq!(measured.scheduled_s, vec![0.0, 0.5, 1.9]);
        assert_eq!(measured.errors, 2);
        assert!((measured.elapsed.as_secs_f64() - 2.1).abs() < 1e-9);
        assert_eq!(percentile_by_second(&measured, 100.0), vec![4.0, 5.0]);
        // No warm-up: everything is measured, as it was sent.
        let (none, all) = Sent {
            latencies: vec![1.0],
            scheduled_s: vec![0.2],
            sent_at: HashMap::new(),
            errors: 0,
            elapsed: Duration::from_secs(1),
        }
        .split_at(0.0);
        assert!(none.latencies.is_empty());
        assert_eq!(all.scheduled_s, vec![0.2]);
    }

    #[test]
    fn latencies_are_written_in_send_order() {
        let sent = Sent {
            latencies: vec![7.25, 1.5],
            scheduled_s: vec![0.0004, 0.0002],
            sent_at: HashMap::new(),
            errors: 0,
            elapsed: Duration::from_secs(1),
        };
        let path =
            std::env::temp_dir().join(format!("wharf-bench-latencies-{}", std::process::id()));
        write_latencies(&sent, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text, "0.0002,1.500\n0.0004,7.250\n");
    }
}
