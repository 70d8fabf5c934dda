//! `woocommerce.order_update` (an order's status and a note, e.g. its tracking number) and
//! `woocommerce.stock` (stock quantities by SKU or product id).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::connectors::delivery::{self, refused, Answer};
use crate::connectors::net::{CallError, Outbound};
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;

crate::params! {
    /// The params of `woocommerce.order_update`.
    pub struct OrderUpdateParams {
        customer_note: bool = false, "Whether a note is shown to the customer (and e-mailed by the store).";
    }
}

crate::params! {
    /// The params of `woocommerce.stock`.
    pub struct StockParams {
        manage_stock: bool = true, "Turn on stock management for each product updated.";
    }
}

/// Sends one request to the store's API.
async fn call_api(
    net: &Outbound,
    key: &Value,
    method: reqwest::Method,
    path: &str,
    query: &[(String, String)],
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let mut req = super::request(net, method, key, path, query);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default());
    }
    delivery::send_reading(net, req, timeout).await
}

/// WooCommerce names the problem in its body: an unknown order is a 400 to a PUT but a 404 to
/// a note, with codes ending in `_invalid_id` either way.
fn code_of(status: u16, body: &str) -> Option<ErrorCode> {
    let code = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    if code.ends_with("_invalid_id") || status == 404 {
        Some(ErrorCode::NotFound)
    } else if status == 400 {
        Some(ErrorCode::InvalidSchema)
    } else {
        None
    }
}

fn result(started: Instant, what: &str, answer: Result<Answer, CallError>) -> SendResult {
    delivery::result(
        started,
        "WooCommerce",
        what,
        answer,
        super::problem,
        code_of,
    )
}

/// The id a record names: a number, or digits in a string.
fn id_of(record: &Value, fields: &[&str]) -> Option<u64> {
    fields.iter().find_map(|f| match record.get(*f) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().trim_start_matches('#').parse().ok(),
        _ => None,
    })
}

/// Sets an order's status and adds a note: the output names `id` (or `order_id`) and any of
/// `status`, `note`, `customer_note`.
pub struct OrderUpdate;

#[async_trait]
impl DestinationFunction for OrderUpdate {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) =
            match delivery::prepare::<OrderUpdateParams>(started, &call, "WooCommerce") {
                Ok(ready) => ready,
                Err(refusal) => return *refusal,
            };
        let updates = delivery::items(out.body);
        let mut steps = delivery::Steps::new(started);
        for update in updates {
            let Some(id) = id_of(update, &["id", "order_id"]) else {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "the output names no order: give `id` (or `order_id`), the WooCommerce order id".into(),
                );
            };
            let status = update.get("status").and_then(Value::as_str);
            let note = update
                .get("note")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            if status.is_none() && note.is_none() {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    format!("the output for order {id} has neither `status` nor `note`: nothing to change"),
                );
            }
            if let Some(status) = status {
                let what = format!("setting order {id} to {status}");
                let answer = call_api(
                    call.net,
                    key,
                    reqwest::Method::PUT,
                    &format!("/orders/{id}"),
                    &[],
                    Some(&json!({ "status": status })),
                    out.timeout,
                )
                .await;
                let r = result(started, &what, answer).referring(|| Some(id.to_string()));
                if let Some(stop) = steps.step(r) {
                    return stop;
                }
            }
            if let Some(note) = note {
                let customer = update
                    .get("customer_note")
                    .and_then(Value::as_bool)
                    .unwrap_or(params.customer_note);
                let what = format!("adding a note to order {id}");
                let answer = call_api(
                    call.net,
                    key,
                    reqwest::Method::POST,
                    &format!("/orders/{id}/notes"),
                    &[],
                    Some(&json!({ "note": note, "customer_note": customer })),
                    out.timeout,
                )
                .await;
                let r = result(started, &what, answer).referring(|| Some(id.to_string()));
                if let Some(stop) = steps.step(r) {
                    return stop;
                }
            }
        }
        steps.finish()
    }
}

/// Sets stock quantities: the output (or each item of a list) names `sku` or `product_id`
/// and `quantity`. A SKU is looked up first; a variation is updated under its product.
pub struct Stock;

#[async_trait]
impl DestinationFunction for Stock {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<StockParams>(started, &call, "WooCommerce") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let levels = delivery::items(out.body);
        let mut steps = delivery::Steps::new(started);
        for level in levels {
            let Some(quantity) = level.get("quantity").and_then(Value::as_i64) else {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "a stock level has no whole-number `quantity`".into(),
                );
            };
            // Where the product is: by id, or by looking its SKU up.
            let (product, parent) = if let Some(id) = id_of(level, &["product_id", "id"]) {
                (id, id_of(level, &["parent_id"]).filter(|p| *p > 0))
            } else if let Some(sku) = level.get("sku").and_then(Value::as_str) {
                let what = format!("looking up SKU {sku}");
                let query = vec![("sku".to_string(), sku.to_string())];
                let answer = call_api(
                    call.net,
                    key,
                    reqwest::Method::GET,
                    "/products",
                    &query,
                    None,
                    out.timeout,
                )
                .await;
                let found = match answer {
                    Ok(a) if a.status.is_success() => a.json,
                    other => return result(started, &what, other),
                };
                // `sku=` matches a comma-separated list: only the product whose SKU is this
                // one, exactly, is taken.
                let exact: Vec<&Value> = found
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|l| l.iter().filter(|p| p["sku"] == sku).collect())
                    .unwrap_or_default();
                if exact.len() > 1 {
                    return refused(
                        started,
                        ErrorCode::InvalidSchema,
                        format!("several WooCommerce products have the SKU {sku}"),
                    );
                }
                match exact.first() {
                    Some(p) => match id_of(p, &["id"]) {
                        Some(id) => (id, id_of(p, &["parent_id"]).filter(|p| *p > 0)),
                        None => {
                            return refused(
                                started,
                                ErrorCode::InvalidApiResponse,
                                format!("WooCommerce's product for SKU {sku} has no id"),
                            )
                        }
                    },
                    None => {
                        return refused(
                            started,
                            ErrorCode::NotFound,
                            format!("no WooCommerce product has the SKU {sku}"),
                        )
                    }
                }
            } else {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "a stock level names neither `sku` nor `product_id`".into(),
                );
            };
            let path = match parent {
                Some(parent) => format!("/products/{parent}/variations/{product}"),
                None => format!("/products/{product}"),
            };
            let mut body = json!({ "stock_quantity": quantity });
            if params.manage_stock {
                body["manage_stock"] = json!(true);
            }
            let what = format!("setting the stock of product {product} to {quantity}");
            let r = result(
                started,
                &what,
                call_api(
                    call.net,
                    key,
                    reqwest::Method::PUT,
                    &path,
                    &[],
                    Some(&body),
                    out.timeout,
                )
                .await,
            )
            .referring(|| Some(product.to_string()));
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}
