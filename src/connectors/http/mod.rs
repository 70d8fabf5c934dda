//! The generic `http` system: `http.fetch` reads records from a JSON API, `http.send` delivers
//! an event's output.

mod fetch;
mod send;

pub use fetch::fetch;
pub use send::{send, SendResult};

use reqwest::RequestBuilder;
use serde_json::Value;

/// Applies a key's auth and headers, then the function's own headers.
pub fn with_auth(mut req: RequestBuilder, key: Option<&Value>, params: &Value) -> RequestBuilder {
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
    if let Some(headers) = params.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                req = req.header(k, v);
            }
        }
    }
    req
}

/// The value at a dotted path (`data.orders`), or the document itself for an empty path.
pub fn at_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(part),
    })
}

/// An entity id read from a record: strings as they are, numbers as text.
pub fn entity_id(record: &Value, path: Option<&str>) -> Option<String> {
    match at_path(record, path?)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
