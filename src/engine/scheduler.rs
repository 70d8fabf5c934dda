//! The scheduler: queues the runs of scheduled sources when they are due. Firing a schedule
//! moves its next run in the same transaction, so nodes running it side by side queue each
//! run once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::domain::Timestamp;
use crate::store::{Store, StoreResult};

/// Looks for due schedules every second until `shutdown` turns true; wakes this process's
/// workers when it queues a run.
pub async fn run(store: Store, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = fire_schedules(&store, &wake).await {
            tracing::warn!(error = %e, "firing schedules failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Queues the runs of scheduled sources that are due. A run missed while no node was up
/// fires once, late, and the schedule continues from now: a restart neither skips a due
/// run nor repeats one.
async fn fire_schedules(store: &Store, wake: &Notify) -> StoreResult<()> {
    for source in store.due_sources(100).await? {
        let (Some(due), Some(expr)) = (source.next_run_at, source.schedule.as_deref()) else {
            continue;
        };
        let tz = source.timezone.as_deref().unwrap_or("UTC");
        let now = Timestamp::now();
        let next = match crate::domain::schedule::next_run(expr, tz, now.0.max(due.0)) {
            Ok(t) => Timestamp::from_datetime(t),
            Err(e) => {
                tracing::warn!(source = %source.id, error = %e, "cannot compute the next run");
                continue;
            }
        };
        let jobs = store.fire_schedule(&source, due, next).await?;
        if !jobs.is_empty() {
            tracing::info!(source = %source.id, jobs = jobs.len(), next = %next.0, "scheduled run queued");
            wake.notify_one();
        }
    }
    Ok(())
}
