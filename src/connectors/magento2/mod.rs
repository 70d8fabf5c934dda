//! Magento 2 / Adobe Commerce: the REST API (`/rest/V1`, or `/rest/<store_code>/V1`) with an
//! integration's access token as a bearer token. Reads page through `searchCriteria` by
//! `updated_at`; writes create shipments and set source items (MSI stock).

mod pull;
mod push;

use serde_json::Value;

pub use pull::{Pull, PullParams};
pub use push::{Shipment, ShipmentParams, Stock, StockParams};

use super::net::Outbound;

fn text<'a>(key: &'a Value, name: &str) -> &'a str {
    key.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The REST base of the key's store: `<base_url>/rest/V1`, or `/rest/<store_code>/V1`.
fn base(key: &Value) -> String {
    let site = text(key, "base_url").trim_end_matches('/');
    match key
        .get("store_code")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(code) => format!("{site}/rest/{code}/V1"),
        None => format!("{site}/rest/V1"),
    }
}

/// A request to `path` under the key's REST base, with its access token.
pub fn request(
    net: &Outbound,
    method: reqwest::Method,
    key: &Value,
    path: &str,
) -> reqwest::RequestBuilder {
    net.request(method, format!("{}{path}", base(key)))
        .bearer_auth(text(key, "access_token"))
        .header("accept", "application/json")
}

/// Magento's message with its placeholders filled from `parameters` (a list for `%1`, an
/// object for `%name`), and the first of its `errors`; or the start of the body.
pub fn problem(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(300).collect();
    };
    let fill = |message: &str, parameters: &Value| {
        let mut out = message.to_string();
        match parameters {
            Value::Array(list) => {
                for (i, p) in list.iter().enumerate().rev() {
                    let text = p
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| p.to_string());
                    out = out.replace(&format!("%{}", i + 1), &text);
                }
            }
            Value::Object(map) => {
                for (k, p) in map {
                    let text = p
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| p.to_string());
                    out = out.replace(&format!("%{k}"), &text);
                }
            }
            _ => {}
        }
        out
    };
    match v.get("message").and_then(Value::as_str) {
        Some(message) => fill(message, v.get("parameters").unwrap_or(&Value::Null)),
        None => body.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_filled_from_their_parameters() {
        assert_eq!(
            problem(
                r#"{"message":"The consumer isn't authorized to access %resources.","parameters":{"resources":"Magento_Sales::actions_view"}}"#
            ),
            "The consumer isn't authorized to access Magento_Sales::actions_view."
        );
        assert_eq!(
            problem(
                r#"{"message":"Invalid product data: %1","parameters":["Invalid attribute set entity type"]}"#
            ),
            "Invalid product data: Invalid attribute set entity type"
        );
        assert_eq!(problem("oops"), "oops");
        let key = serde_json::json!({"base_url": "https://shop.test/", "store_code": "uk"});
        assert_eq!(base(&key), "https://shop.test/rest/uk/V1");
    }
}
