//! `http.send`: one delivery of an event's output (or an aggregate) to a URL.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::with_auth;
use crate::connectors::net::{CallError, Outbound};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::{judge_status, parse_retry_after, Verdict};

/// What one delivery try gave.
#[derive(Debug, Clone)]
pub struct SendResult {
    pub verdict: Verdict,
    pub error_code: Option<ErrorCode>,
    pub http_status: Option<u16>,
    pub http_status_name: Option<String>,
    pub excerpt: Option<String>,
    pub retry_after: Option<Duration>,
    pub message: Option<String>,
    pub duration: Duration,
}

/// Sends `body` (JSON, or text for text formats) as the destination's params say.
pub async fn send(
    net: &Outbound,
    params: &Value,
    key: Option<&Value>,
    body: &Value,
    content_type: &str,
    timeout: Duration,
) -> SendResult {
    let started = Instant::now();
    let url = params
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let method = match params.get("method").and_then(Value::as_str) {
        Some("PUT") => reqwest::Method::PUT,
        Some("PATCH") => reqwest::Method::PATCH,
        _ => reqwest::Method::POST,
    };
    let bytes = match body {
        Value::String(text) if content_type != "application/json" => text.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    };
    let req = with_auth(net.request(method, url), key, params)
        .header("content-type", content_type)
        .body(bytes);
    match net.send(req, Some(timeout)).await {
        Ok(res) => {
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = net.read_excerpt(res).await;
            let (verdict, error_code) = judge_status(status.as_u16());
            SendResult {
                message: (verdict != Verdict::Success).then(|| format!("{url} answered {status}")),
                verdict,
                error_code,
                http_status: Some(status.as_u16()),
                http_status_name: status.canonical_reason().map(str::to_string),
                excerpt: (!text.is_empty()).then_some(text),
                retry_after: matches!(status.as_u16(), 429 | 503)
                    .then_some(retry_after)
                    .flatten(),
                duration: started.elapsed(),
            }
        }
        Err(e) => {
            // A refused host or a malformed request stays so on every retry.
            let verdict = match e {
                CallError::Blocked(_) | CallError::Invalid(_) => Verdict::Final,
                _ => Verdict::Retry,
            };
            let code = match e {
                CallError::Invalid(_) => ErrorCode::ConnectionError,
                _ => e.code(),
            };
            SendResult {
                verdict,
                error_code: Some(code),
                http_status: None,
                http_status_name: None,
                excerpt: None,
                retry_after: None,
                message: Some(format!("sending to {url}: {e}")),
                duration: started.elapsed(),
            }
        }
    }
}
