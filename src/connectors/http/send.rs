//! `http.send`: one delivery of an event's output (or an aggregate) to a URL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::with_auth;
use crate::connectors::net::{CallError, Outbound};
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::{judge_status, Verdict};

crate::param_enum! {
    /// The HTTP method `http.send` uses.
    pub enum Method { Post = "POST", Put = "PUT", Patch = "PATCH" }
}

crate::params! {
    /// The params of `http.send`.
    pub struct SendParams {
        url: String, "Where to send.";
        method: Method = Method::Post, "POST when unset.";
        headers: Option<BTreeMap<String, String>>, "Extra request headers.";
    }
}

/// `http.send` as a destination function.
pub struct Send;

#[async_trait]
impl DestinationFunction for Send {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        match SendParams::parse(call.params) {
            Ok(params) => {
                send(
                    call.net,
                    &params,
                    call.key,
                    out.body,
                    out.content_type,
                    out.timeout,
                )
                .await
            }
            Err(e) => SendResult::refused(ErrorCode::Unknown, format!("the destination has {e}")),
        }
    }
}

/// Sends `body` (JSON, or text for text formats) as the destination's params say.
async fn send(
    net: &Outbound,
    params: &SendParams,
    key: Option<&Value>,
    body: &Value,
    content_type: &str,
    timeout: Duration,
) -> SendResult {
    let started = Instant::now();
    let url = params.url.as_str();
    let method = match params.method {
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
    };
    let bytes = match body {
        Value::String(text) if content_type != "application/json" => text.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    };
    let req = with_auth(net.request(method, url), key, params.headers.as_ref())
        .header("content-type", content_type)
        .body(bytes);
    match net.send(req, Some(timeout)).await {
        Ok(res) => {
            let status = res.status();
            let retry_after = crate::connectors::pages::retry_after(&res);
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
                reference: None,
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
                reference: None,
                duration: started.elapsed(),
            }
        }
    }
}
