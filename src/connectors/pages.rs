//! What the paged pulls of the commerce connectors share: a page's budget checks, and how long
//! a busy answer asks them to wait.

use std::time::Duration;

use super::registry::Call;
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::parse_retry_after;

/// Longest wait a busy answer gets, whatever it asks.
const MOST_WAIT_S: u64 = 120;

/// Checks a page of `count` records (`bytes` long) against the run's bounds: the decoded size
/// a body may take, and `outbound.max_records_per_run` with `have` records read already.
pub fn check(
    call: &Call<'_>,
    system: &str,
    what: &str,
    bytes: usize,
    have: usize,
    count: usize,
) -> Result<(), String> {
    let invalid = ErrorCode::InvalidApiResponse.as_str();
    call.decode
        .check_records(bytes, count)
        .map_err(|e| format!("{invalid}: {e}"))?;
    if have + count > call.net.max_records_per_run {
        return Err(format!(
            "{invalid}: {system} gave more than {} {what} in one run \
             (outbound.max_records_per_run); set `since` or run more often",
            call.net.max_records_per_run
        ));
    }
    Ok(())
}

/// The wait a busy answer (429, 503) asks for in `Retry-After` (its leading number of seconds:
/// DEAR writes `60 Seconds`), else `default`,
/// at most two minutes.
pub fn busy_wait(res: &reqwest::Response, default: u64) -> Duration {
    let seconds = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
        .map_or(default, |d| d.as_secs());
    Duration::from_secs(seconds.min(MOST_WAIT_S))
}
