//! What the paged pulls of the commerce connectors share: a page's budget checks, and how long
//! a busy answer asks them to wait.

use std::time::Duration;

use serde_json::Value;

use super::params::Params;
use super::registry::Call;
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::parse_retry_after;

/// Longest wait a busy answer gets, whatever it asks.
const MOST_WAIT_S: u64 = 120;
/// Busy answers (429, 503) one run waits out before it fails.
const MOST_BUSY: u32 = 5;
/// Server errors (500, 502, 504) one run tries again after before it fails.
const MOST_FAILED: u32 = 3;

/// The wait an answer's `Retry-After` asks for (its leading seconds; DEAR writes
/// `60 Seconds`).
pub fn retry_after(res: &reqwest::Response) -> Option<Duration> {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// When a pull tries a page again: a busy answer (429, 503) is waited out as it asks, a few
/// times a run; a server error (500, 502, 504) is tried again after 1, 2, 3 s. Anything else
/// stands.
pub struct Again {
    busy: u32,
    failed: u32,
    /// The wait of a busy answer that does not say how long (seconds).
    busy_default: u64,
}

impl Default for Again {
    fn default() -> Again {
        Again::waiting(5)
    }
}

impl Again {
    /// Waiting `busy_default` seconds for a busy answer that does not say how long.
    pub fn waiting(busy_default: u64) -> Again {
        Again {
            busy: 0,
            failed: 0,
            busy_default,
        }
    }

    /// How long to wait before asking for the page again, or `None` when the answer stands.
    pub fn wait(&mut self, res: &reqwest::Response) -> Option<Duration> {
        match res.status().as_u16() {
            429 | 503 if self.busy < MOST_BUSY => {
                self.busy += 1;
                Some(busy_wait(res, self.busy_default))
            }
            500 | 502 | 504 if self.failed < MOST_FAILED => {
                self.failed += 1;
                Some(Duration::from_secs(self.failed.into()))
            }
            _ => None,
        }
    }

    /// How many answers were waited out in all.
    pub fn count(&self) -> u32 {
        self.busy + self.failed
    }
}

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
    let seconds = retry_after(res).map_or(default, |d| d.as_secs());
    Duration::from_secs(seconds.min(MOST_WAIT_S))
}

/// What every paged pull starts with: its params, its page size (`field`, read by `size`)
/// checked to be from 1 to `most` (the system's largest page), and its key.
pub fn prepare<'a, P: Params>(
    call: &Call<'a>,
    system: &str,
    field: &str,
    most: u64,
    size: impl Fn(&P) -> u64,
) -> Result<(P, &'a Value), String> {
    let params = P::parse(call.params)?;
    if !(1..=most).contains(&size(&params)) {
        return Err(format!(
            "invalid params: `params.{field}` must be between 1 and {most}"
        ));
    }
    let key = call
        .key
        .ok_or_else(|| format!("a {system} source needs a key"))?;
    Ok((params, key))
}
