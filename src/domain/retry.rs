//! How a delivery answer is judged and when the next attempt happens.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error_code::ErrorCode;

/// Longest `Retry-After` honoured; a sender asking for more is retried at this bound.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What one attempt's answer means for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Success,
    /// Worth another attempt (timeouts, refused connections, 408, 409, 429, 5xx).
    Retry,
    /// Will never succeed as sent (other 4xx): the event fails at once.
    Final,
}

/// The verdict and error code for an HTTP status.
pub fn judge_status(status: u16) -> (Verdict, Option<ErrorCode>) {
    match status {
        200..=299 => (Verdict::Success, None),
        408 => (Verdict::Retry, Some(ErrorCode::Timeout)),
        409 => (Verdict::Retry, Some(ErrorCode::Duplicate)),
        429 => (Verdict::Retry, Some(ErrorCode::RateLimited)),
        401 | 403 => (Verdict::Final, Some(ErrorCode::Unauthorized)),
        404 => (Verdict::Final, Some(ErrorCode::NotFound)),
        400 | 422 => (Verdict::Final, Some(ErrorCode::InvalidSchema)),
        500..=599 => (Verdict::Retry, Some(ErrorCode::ServerError)),
        _ => (Verdict::Final, Some(ErrorCode::InvalidApiResponse)),
    }
}

/// Delay before attempt number `done + 1`, given `done` attempts so far, or `None` when the
/// schedule is exhausted. ±10% jitter spreads retries of many events; a `Retry-After` longer
/// than the schedule's delay wins, up to [`MAX_RETRY_AFTER`].
pub fn next_delay(
    schedule: &[u64],
    done: usize,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = Duration::from_secs(*schedule.get(done)?);
    let jittered = if base.is_zero() {
        base
    } else {
        base.mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
    };
    Some(match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    })
}

/// Parses `Retry-After` as seconds (HTTP dates are rare from APIs and read as absent). Only
/// the leading number counts: DEAR writes `60 Seconds`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    value[..digits].parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged_like_svix() {
        assert_eq!(judge_status(200).0, Verdict::Success);
        assert_eq!(judge_status(204).0, Verdict::Success);
        assert_eq!(judge_status(400).0, Verdict::Final);
        assert_eq!(
            judge_status(404),
            (Verdict::Final, Some(ErrorCode::NotFound))
        );
        for s in [408, 409, 429, 500, 502, 503] {
            assert_eq!(judge_status(s).0, Verdict::Retry, "{s}");
        }
    }

    #[test]
    fn retry_after_is_read_by_its_leading_number() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("60 Seconds"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn delays_follow_the_schedule_with_jitter_and_retry_after() {
        let schedule = [0, 10, 100];
        assert_eq!(next_delay(&schedule, 0, None), Some(Duration::ZERO));
        let d = next_delay(&schedule, 1, None).unwrap();
        assert!(
            d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
            "{d:?}"
        );
        assert_eq!(next_delay(&schedule, 3, None), None);
        let d = next_delay(&schedule, 1, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let d = next_delay(&schedule, 1, Some(Duration::from_secs(999_999))).unwrap();
        assert_eq!(d, MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}

/// When delivery attempts happen and how long each may take.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Delay before each attempt, in seconds; the first is usually 0. One attempt per entry.
    #[serde(default = "default_schedule")]
    pub schedule_seconds: Vec<u64>,
    /// Time limit of one attempt.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

/// Like Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
fn default_schedule() -> Vec<u64> {
    vec![0, 5, 300, 1800, 7200, 18000, 36000, 36000]
}

fn default_timeout() -> u64 {
    30
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            schedule_seconds: default_schedule(),
            timeout_seconds: default_timeout(),
        }
    }
}

impl Retry {
    /// The schedule stored with a destination; one that no longer reads (written by an older
    /// version) falls back to the default rather than stopping deliveries.
    pub fn from_stored(v: &serde_json::Value) -> Retry {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }
}
