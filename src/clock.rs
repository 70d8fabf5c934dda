//! The time sign-in, sessions and one-time links are judged by: the system clock, moved by an
//! offset that tests set (a session's idle and absolute expiry are tested by moving it, not by
//! waiting hours).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::domain::Timestamp;

/// Shared by every handle; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn now(&self) -> Timestamp {
        let offset = chrono::Duration::milliseconds(self.0.load(Ordering::Relaxed));
        Timestamp::from_datetime(Timestamp::now().0 + offset)
    }

    /// Moves this clock (and every handle of it) forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }
}
