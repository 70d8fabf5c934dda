//! What the commerce destinations share: one API call's answer, and the delivery result it
//! makes, with the system's own explanation of a refusal.

use std::time::{Duration, Instant};

use super::net::{CallError, Outbound};
use super::registry::SendResult;
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::{judge_status, parse_retry_after, Verdict};

/// A system's answer to one call.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: String,
    pub retry_after: Option<Duration>,
}

/// Sends `req` within `timeout`; the answer (its start, as attempts keep), or what kept it
/// from arriving.
pub async fn send(
    net: &Outbound,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let res = net.send(req, Some(timeout)).await?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body = net.read_excerpt(res).await;
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

/// The result of a delivery from its last answer (or the failure to get one). `system` names
/// the system in messages, `explain` reads its error body, and `code` may name the error code
/// from the status and body where the status alone would mislead.
pub fn result(
    started: Instant,
    system: &str,
    what: &str,
    answer: Result<Answer, CallError>,
    explain: fn(&str) -> String,
    code: impl Fn(u16, &str) -> Option<ErrorCode>,
) -> SendResult {
    match answer {
        Ok(a) => {
            let (verdict, by_status) = judge_status(a.status.as_u16());
            SendResult {
                message: (verdict != Verdict::Success).then(|| {
                    format!(
                        "{system} answered {} to {what}: {}",
                        a.status,
                        explain(&a.body)
                    )
                }),
                verdict,
                error_code: code(a.status.as_u16(), &a.body).or(by_status),
                http_status: Some(a.status.as_u16()),
                http_status_name: a.status.canonical_reason().map(str::to_string),
                excerpt: (!a.body.is_empty()).then_some(a.body),
                retry_after: matches!(a.status.as_u16(), 429 | 503)
                    .then_some(a.retry_after)
                    .flatten(),
                duration: started.elapsed(),
            }
        }
        Err(e) => SendResult {
            verdict: match e {
                CallError::Blocked(_) | CallError::Invalid(_) => Verdict::Final,
                _ => Verdict::Retry,
            },
            error_code: Some(e.code()),
            http_status: None,
            http_status_name: None,
            excerpt: None,
            retry_after: None,
            message: Some(format!("{what}: {e}")),
            duration: started.elapsed(),
        },
    }
}

/// A delivery refused before anything was sent: it would fail the same way again.
pub fn refused(started: Instant, code: ErrorCode, message: String) -> SendResult {
    SendResult {
        duration: started.elapsed(),
        ..SendResult::refused(code, message)
    }
}
