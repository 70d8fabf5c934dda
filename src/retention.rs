//! Data retention: each organisation's policy (or the configured default) says how many days
//! payloads, records and the log are kept; a maintenance task clears and deletes what is older,
//! in small batches, and says what it removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{RetentionConfig, RetentionPolicy};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult};

/// The policy of an organisation: its own if it set one, else the configured default.
pub fn policy_of(own: Option<&serde_json::Value>, config: &RetentionConfig) -> RetentionPolicy {
    own.and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_else(|| config.policy())
}

/// One sweep as of `now` (the caller's clock, so tests can move it): what it cleared or
/// deleted, by kind (`event_payloads`, `attempt_excerpts`, `uploaded_files`, `events`, `jobs`,
/// `event_log`, `notifications`).
pub async fn sweep(
    store: &Store,
    config: &RetentionConfig,
    now: Timestamp,
) -> StoreResult<BTreeMap<&'static str, u64>> {
    let mut removed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (org, own) in store.retention_policies().await? {
        let policy = policy_of(own.as_ref().map(|j| &j.0), config);
        for (steps, days) in [
            (store.payload_steps(), policy.payload_days),
            (store.record_steps(), policy.records_days),
            (store.log_steps(), policy.log_days),
        ] {
            let before = Timestamp::from_datetime(now.0 - chrono::Duration::days(days as i64));
            for step in steps {
                for _ in 0..config.max_batches {
                    let n = store
                        .retention_batch(&step, org, before, config.batch_size)
                        .await?;
                    *removed.entry(step.what).or_default() += n;
                    if n < config.batch_size {
                        break;
                    }
                    // Between batches others may write (SQLite has one writer).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    removed.retain(|_, n| *n > 0);
    Ok(removed)
}

/// Sweeps every `retention.interval_minutes` until `shutdown` turns true.
pub async fn run(
    store: Store,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_minutes * 60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match sweep(&store, &config, Timestamp::now()).await {
            Ok(removed) => {
                for (what, n) in &removed {
                    metrics.record_retention(what, *n);
                }
                if !removed.is_empty() {
                    tracing::info!(?removed, "retention cleared and deleted old data");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the retention sweep failed"),
        }
    }
}
