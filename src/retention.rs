//! Data retention: each organisation's policy (or the configured default) says how many days
//! payloads, records and the log are kept; a maintenance task clears and deletes what is older,
//! in small batches, and says what it removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{RetentionConfig, RetentionPolicy};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult};

/// The policy of an organisation: its own if it set one, else the configured default. A
/// kind its policy does not name (one added since it was set) keeps the configured default.
pub fn policy_of(own: Option<&serde_json::Value>, config: &RetentionConfig) -> RetentionPolicy {
    let default = config.policy();
    let Some(serde_json::Value::Object(own)) = own else {
        return default;
    };
    let mut merged = match serde_json::to_value(default) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return default,
    };
    for (k, v) in own {
        if merged.contains_key(k) {
            merged.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or(default)
}

/// Where earlier sweeps of this process finished each resuming step, per organisation: rows
/// older than that are done (a cleared payload stays cleared).
pub type Marks = HashMap<(Uuid, &'static str), Timestamp>;

/// One sweep as of `now` (the caller's clock, so tests can move it): what it cleared or
/// deleted, by kind (`event_payloads`, `attempt_excerpts`, `uploaded_files`, `events`, `jobs`,
/// `event_log`, `notifications`, `audit_log`). A step that fails is logged and the sweep goes on with the
/// next; the counts of what was done are kept.
pub async fn sweep(
    store: &Store,
    config: &RetentionConfig,
    now: Timestamp,
    marks: &mut Marks,
) -> StoreResult<BTreeMap<&'static str, u64>> {
    let mut removed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (org, own) in store.retention_policies().await? {
        let policy = policy_of(own.as_ref().map(|j| &j.0), config);
        for (steps, days) in [
            (store.payload_steps(), policy.payload_days),
            (store.record_steps(), policy.records_days),
            (store.log_steps(), policy.log_days),
            (store.audit_steps(), policy.audit_days),
        ] {
            let before = Timestamp::from_datetime(now.0 - chrono::Duration::days(days as i64));
            for step in steps {
                let since = marks.get(&(org, step.what)).copied();
                let mut finished = false;
                for _ in 0..config.max_batches {
                    match store
                        .retention_batch(&step, org, before, since, config.batch_size)
                        .await
                    {
                        Ok(n) => {
                            *removed.entry(step.what).or_default() += n;
                            if n < config.batch_size {
                                finished = true;
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, %org, step = step.what, "a retention step failed");
                            break;
                        }
                    }
                    // Between batches others may write (SQLite has one writer).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if finished && step.resumes {
                    marks.insert((org, step.what), before);
                }
            }
        }
    }
    removed.retain(|_, n| *n > 0);
    Ok(removed)
}

/// Forgets, as of `now`, what no sign-in can use any more: sessions ended (absolutely, or idle
/// for `idle`), password links expired, sign-in failures more than an hour old. Answers how
/// many rows of each kind (`sessions`, `password_links`, `sign_in_failures`) it deleted.
pub async fn forget_sign_ins(
    store: &Store,
    config: &RetentionConfig,
    now: Timestamp,
    idle: chrono::Duration,
) -> BTreeMap<&'static str, u64> {
    let idle_before = Timestamp::from_datetime(now.0 - idle);
    let mut removed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for what in ["sessions", "password_links", "sign_in_failures"] {
        for _ in 0..config.max_batches {
            match store
                .forget_sign_ins(what, now, idle_before, config.batch_size)
                .await
            {
                Ok(n) => {
                    *removed.entry(what).or_default() += n;
                    if n < config.batch_size {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, what, "forgetting old sign-in rows failed");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    removed.retain(|_, n| *n > 0);
    removed
}

/// Sweeps every `retention.interval_minutes` until `shutdown` turns true; sessions idle for
/// `idle_minutes` have ended.
pub async fn run(
    store: Store,
    config: RetentionConfig,
    idle_minutes: u64,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_minutes * 60);
    let mut marks = Marks::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        // Shutting down stops a sweep between statements (an open one rolls back).
        let now = Timestamp::now();
        let idle = chrono::Duration::minutes(idle_minutes as i64);
        let swept = tokio::select! {
            r = async {
                let mut removed = sweep(&store, &config, now, &mut marks).await?;
                removed.extend(forget_sign_ins(&store, &config, now, idle).await);
                Ok::<_, crate::store::StoreError>(removed)
            } => r,
            _ = shutdown.changed() => return,
        };
        match swept {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_set_before_a_kind_existed_keeps_that_kind_default() {
        let config = RetentionConfig::default();
        let own = serde_json::json!({"payload_days": 7, "records_days": 45, "log_days": 50});
        let policy = policy_of(Some(&own), &config);
        assert_eq!(
            (policy.payload_days, policy.records_days, policy.log_days),
            (7, 45, 50)
        );
        assert_eq!(policy.audit_days, config.audit_days);
        assert_eq!(policy_of(None, &config), config.policy());
        let odd = serde_json::json!({"payload_days": "soon", "unknown": 1});
        assert_eq!(policy_of(Some(&odd), &config), config.policy());
    }
}
