//! Pacing requests to the DEAR API per account.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Requests a minute the API allows per account.
const PER_MINUTE: u32 = 60;

/// Spaces requests per account so none exceeds the API's rate.
#[derive(Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `account` may send its next request.
    pub async fn turn(&self, account: &str) {
        let gap = Duration::from_secs(60) / PER_MINUTE;
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = next
                .get(account)
                .copied()
                .filter(|t| *t > now)
                .unwrap_or(now);
            next.insert(account.to_string(), slot + gap);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
