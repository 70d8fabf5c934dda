//! Pacing requests to the DEAR API per account.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Requests a minute the API allows per account.
const PER_MINUTE: u32 = 60;
/// How much wider than the limit's own gap calls are spaced: DEAR counts the calls that
/// arrive in any 60 seconds, and network delays bunch calls sent exactly a second apart.
const MARGIN: f64 = 1.1;

/// Spaces requests per account so none exceeds the API's rate.
#[derive(Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `account` may send its next request.
    pub async fn turn(&self, account: &str) {
        let wait = self.reserve(account, Instant::now()).await;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `account`'s next free slot; how long after `now` it comes.
    async fn reserve(&self, account: &str, now: Instant) -> Duration {
        let gap = (Duration::from_secs(60) / PER_MINUTE).mul_f64(MARGIN);
        let mut next = self.next.lock().await;
        let slot = next
            .get(account)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        next.insert(account.to_string(), slot + gap);
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_of_an_account_are_spaced_a_little_wider_than_its_limit() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(limiter.reserve("a", now).await), 0);
        assert_eq!(ms(limiter.reserve("a", now).await), 1100);
        assert_eq!(ms(limiter.reserve("a", now).await), 2200);
        assert_eq!(ms(limiter.reserve("b", now).await), 0, "accounts apart");
        // A slot long past is not saved up for a burst.
        let later = now + Duration::from_secs(10);
        assert_eq!(ms(limiter.reserve("a", later).await), 0);
        assert_eq!(ms(limiter.reserve("a", later).await), 1100);
    }
}
