//! Maintenance: returns work whose worker died, finishes jobs a worker left unfinished, forgets
//! old webhook receipts. Every sweep is safe to run on several nodes at once, so each node may
//! run it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::Store;

use super::Engine;

/// Every second: rescues expired claims, forgets webhook receipts older than
/// `dedup_retention_hours`. Every 30 s: finishes stragglers (a sweep over running
/// jobs, too costly to run each second). Runs until `shutdown` turns true.
pub async fn run(
    store: Store,
    engine: Option<Arc<Engine>>,
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
            engine.as_deref(),
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

async fn maintain(
    store: &Store,
    engine: Option<&Engine>,
    dedup_retention_hours: u64,
    metrics: &Metrics,
    sweep: bool,
) {
    rescue(store, engine, metrics).await;
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

/// Frees the events whose lease ran out. Those this process's own workers still have in hand
/// are renewed instead (`engine`, when this process runs workers): their heartbeat was late,
/// and taking them back would deliver them a second time while the first delivery is under
/// way. Another node's events are freed once their lease runs out, as that node may be gone.
async fn rescue(store: &Store, engine: Option<&Engine>, metrics: &Metrics) {
    let now = Timestamp::now();
    if let Some(engine) = engine {
        match engine.renew_late(now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                events = n,
                "the leases of events in this process's hands ran out before the heartbeat \
                 renewed them (storage or the process was slow); they are renewed, not taken back"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "checking expired claims failed; rescuing waits");
                return;
            }
        }
    }
    match store.rescue_events_at(now).await {
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
}
