//! What the commerce destinations share: one API call's answer, and the delivery result it
//! makes, with the system's own explanation of a refusal.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::{CallError, Outbound};
use super::params::Params;
use super::registry::{Call, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::{judge_status, Verdict};

/// A system's answer to one call.
pub struct Answer {
    pub status: reqwest::StatusCode,
    /// The start of the body, as attempts keep it.
    pub body: String,
    pub retry_after: Option<Duration>,
    /// The whole body as JSON, when it was asked for and is JSON.
    pub json: Option<Value>,
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
    let retry_after = super::pages::retry_after(&res);
    let body = net.read_excerpt(res).await;
    Ok(Answer {
        status,
        body,
        retry_after,
        json: None,
    })
}

/// As [`send`], also reading the whole body (within `outbound.max_response_bytes`) as JSON,
/// for a caller that needs what the answer says beyond its excerpt.
pub async fn send_reading(
    net: &Outbound,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let res = net.send(req, Some(timeout)).await?;
    let status = res.status();
    let retry_after = super::pages::retry_after(&res);
    let bytes = net.read_capped(res).await?;
    let cut = bytes.len().min(net.excerpt_bytes);
    let mut end = cut;
    while end > 0 && std::str::from_utf8(&bytes[..end]).is_err() {
        end -= 1;
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes[..end]).into_owned(),
        retry_after,
        json: serde_json::from_slice(&bytes).ok(),
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
        Ok(a) if a.status.is_success() && is_html(&a.body) => SendResult {
            // A maintenance, login or error page served with 200 by something in front of
            // the API: nothing says the call was carried out. Tried again later.
            verdict: Verdict::Retry,
            error_code: Some(ErrorCode::InvalidApiResponse),
            http_status: Some(a.status.as_u16()),
            http_status_name: a.status.canonical_reason().map(str::to_string),
            message: Some(format!(
                "{system} answered {} to {what} with a web page, not an API answer \
                 (a maintenance or login page in front of the API?)",
                a.status
            )),
            excerpt: Some(a.body),
            retry_after: None,
            reference: None,
            duration: started.elapsed(),
        },
        Ok(a) => {
            let (verdict, by_status) = judge_status(a.status.as_u16());
            let error_code = code(a.status.as_u16(), &a.body).or(by_status);
            // A system that says its rate limit was reached in another status is retried.
            let verdict =
                if verdict != Verdict::Success && error_code == Some(ErrorCode::RateLimited) {
                    Verdict::Retry
                } else {
                    verdict
                };
            SendResult {
                message: (verdict != Verdict::Success).then(|| {
                    format!(
                        "{system} answered {} to {what}: {}",
                        a.status,
                        explain(&a.body)
                    )
                }),
                verdict,
                error_code,
                http_status: Some(a.status.as_u16()),
                http_status_name: a.status.canonical_reason().map(str::to_string),
                excerpt: (!a.body.is_empty()).then_some(a.body),
                retry_after: matches!(a.status.as_u16(), 429 | 503)
                    .then_some(a.retry_after)
                    .flatten(),
                reference: None,
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
            reference: None,
            duration: started.elapsed(),
        },
    }
}

/// Whether a body is an HTML page (the APIs these destinations call answer JSON or XML).
fn is_html(body: &str) -> bool {
    let start: String = body
        .trim_start()
        .chars()
        .take(14)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// A delivery refused before anything was sent: it would fail the same way again.
pub fn refused(started: Instant, code: ErrorCode, message: String) -> SendResult {
    SendResult {
        duration: started.elapsed(),
        ..SendResult::refused(code, message)
    }
}

/// A delivery stopped before a call that may succeed later (no turn in a rate limit within the
/// try's time, the time run out): retried on the destination's schedule.
pub fn later(started: Instant, code: ErrorCode, message: String) -> SendResult {
    SendResult {
        verdict: Verdict::Retry,
        error_code: Some(code),
        http_status: None,
        http_status_name: None,
        excerpt: None,
        retry_after: None,
        message: Some(message),
        duration: started.elapsed(),
        reference: None,
    }
}

/// What every commerce destination starts with: its params and its key, or the refusal.
pub fn prepare<'a, P: Params>(
    started: Instant,
    call: &Call<'a>,
    system: &str,
) -> Result<(P, &'a Value), Box<SendResult>> {
    let params = P::parse(call.params).map_err(|e| {
        Box::new(refused(
            started,
            ErrorCode::Unknown,
            format!("the destination has {e}"),
        ))
    })?;
    let key = call.key.ok_or_else(|| {
        Box::new(refused(
            started,
            ErrorCode::Unauthorized,
            format!("a {system} destination needs a key"),
        ))
    })?;
    Ok((params, key))
}

/// The items an output carries: each of a list, or the output itself.
pub fn items(body: &Value) -> Vec<&Value> {
    match body {
        Value::Array(list) => list.iter().collect(),
        other => vec![other],
    }
}

/// A delivery made of calls: it stops at the first that does not succeed, and otherwise
/// answers with the last.
pub struct Steps {
    started: Instant,
    last: Option<SendResult>,
}

impl Steps {
    pub fn new(started: Instant) -> Steps {
        Steps {
            started,
            last: None,
        }
    }

    /// Takes a call's result; the delivery's result when it stops here.
    pub fn step(&mut self, r: SendResult) -> Option<SendResult> {
        if r.verdict == Verdict::Success {
            self.last = Some(r);
            None
        } else {
            Some(r)
        }
    }

    /// The last call's result; an output that made no call is refused.
    pub fn finish(self) -> SendResult {
        self.last.unwrap_or_else(|| {
            refused(
                self.started,
                ErrorCode::InvalidSchema,
                "the output is an empty list".into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Answer, CallError> {
        Ok(Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            body: body.into(),
            retry_after: None,
            json: None,
        })
    }

    #[test]
    fn a_web_page_served_with_200_is_not_a_success() {
        let page = "\n<!DOCTYPE html><html><body>Briefly unavailable for scheduled maintenance.</body></html>";
        let r = result(
            Instant::now(),
            "WooCommerce",
            "updating order 7",
            answer(200, page),
            |b| b.into(),
            |_, _| None,
        );
        assert_eq!(r.verdict, Verdict::Retry);
        assert_eq!(r.error_code, Some(ErrorCode::InvalidApiResponse));
        assert!(r.message.unwrap().contains("with a web page"));
        let r = result(
            Instant::now(),
            "WooCommerce",
            "updating order 7",
            answer(200, r#"{"id":7}"#),
            |b| b.into(),
            |_, _| None,
        );
        assert_eq!(r.verdict, Verdict::Success);
        let soap = r#"<?xml version="1.0"?><soap:Envelope/>"#;
        let r = result(
            Instant::now(),
            "Peoplevox",
            "saving",
            answer(200, soap),
            |b| b.into(),
            |_, _| None,
        );
        assert_eq!(r.verdict, Verdict::Success);
    }
}
