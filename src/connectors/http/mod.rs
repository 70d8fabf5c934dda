//! The generic `http` system: `http.fetch` reads records from a JSON API, `http.webhook`
//! receives pushes, `http.send` delivers an event's output.

mod fetch;
mod send;
mod webhook;

use std::collections::BTreeMap;

pub use fetch::{Fetch, FetchParams, Pagination};
pub use send::{Method, Send, SendParams};
pub use webhook::{Format, HmacAlgorithm, HmacEncoding, Webhook, WebhookParams};

use reqwest::RequestBuilder;
use serde_json::Value;

/// Applies a key's auth and headers, then the function's own headers.
pub fn with_auth(
    mut req: RequestBuilder,
    key: Option<&Value>,
    headers: Option<&BTreeMap<String, String>>,
) -> RequestBuilder {
    if let Some(key) = key {
        if let Some(headers) = key.get("headers").and_then(Value::as_object) {
            for (k, v) in headers {
                if let Some(v) = v.as_str() {
                    req = req.header(k, v);
                }
            }
        }
        if let Some(token) = key.get("bearer_token").and_then(Value::as_str) {
            req = req.bearer_auth(token);
        } else if let Some(user) = key.pointer("/basic/username").and_then(Value::as_str) {
            let password = key.pointer("/basic/password").and_then(Value::as_str);
            req = req.basic_auth(user, password);
        }
    }
    for (k, v) in headers.into_iter().flatten() {
        req = req.header(k, v);
    }
    req
}
