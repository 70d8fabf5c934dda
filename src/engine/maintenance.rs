//! Maintenance: returns work whose worker died, finishes jobs a worker left unfinished, forgets
//! old webhook receipts. Every sweep is safe to run on several nodes at once, so each node may
//! run it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::Store;

/// Every second: rescues expired claims, forgets webhook receipts older than
/// `dedup_retention_hours`. Every 30 s: finishes stragglers (a sweep over running
/// jobs, too costly to run each second). Runs until `shutdown` turns true.
pub async fn run(
    store: Store,
    dedup_retention_hours: u64,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick: u64 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        maintain(
            &store,
            dedup_retention_hours,
            &metrics,
            tick.is_multiple_of(30),
        )
        .await;
        tick += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn maintain(store: &Store, dedup_retention_hours: u64, metrics: &Metrics, sweep: bool) {
    match store.rescue_events().await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(
                events = n,
                "took back events whose worker's lease ran out (the worker died, stalled or lost \
                 storage); any worker may now claim them"
            );
            metrics.record_rescue("events", n);
        }
        Err(e) => tracing::warn!(error = %e, "rescuing expired claims failed"),
    }
    if sweep {
        if let Err(e) = store.finish_stragglers().await {
            tracing::warn!(error = %e, "finishing jobs failed");
        }
    }
    let before = Timestamp::from_datetime(
        chrono::Utc::now() - chrono::Duration::hours(dedup_retention_hours as i64),
    );
    if let Err(e) = store.purge_receipts(before).await {
        tracing::warn!(error = %e, "forgetting old webhook receipts failed");
    }
}
