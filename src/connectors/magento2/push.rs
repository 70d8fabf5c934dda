//! `magento2.shipment` (a shipment with its tracking numbers for an order) and `magento2.stock`
//! (source items: stock per SKU and source, MSI).

use std::time::Instant;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::connectors::delivery::{self, refused, Answer};
use crate::connectors::net::CallError;
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;

/// Most source items in one call: Magento's array limit when it limits input.
const SOURCE_ITEMS_PER_CALL: usize = 20;

crate::params! {
    /// The params of `magento2.shipment`.
    pub struct ShipmentParams {
        notify: bool = true, "E-mail the customer about the shipment (the output's `notify` wins).";
    }
}

crate::params! {
    /// The params of `magento2.stock`.
    pub struct StockParams {
        source_code: String = "default".into(), "The inventory source, when an item names none (`default` is the single-source store's).";
    }
}

/// An unknown entity is a 404 with "doesn't exist"; other refusals of the request are 400.
fn code_of(status: u16, _body: &str) -> Option<ErrorCode> {
    match status {
        404 => Some(ErrorCode::NotFound),
        400 => Some(ErrorCode::InvalidSchema),
        _ => None,
    }
}

fn result(started: Instant, what: &str, answer: Result<Answer, CallError>) -> SendResult {
    delivery::result(started, "Magento", what, answer, super::problem, code_of)
}

/// Ships an order: the output names the order's `order_id` (its `entity_id`), and any of
/// `items` (`[{order_item_id, qty}]`; all when absent), `tracks`
/// (`[{track_number, title, carrier_code}]`), `comment`, `notify`.
pub struct Shipment;

#[async_trait]
impl DestinationFunction for Shipment {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<ShipmentParams>(started, &call, "Magento") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let shipments = delivery::items(out.body);
        let mut steps = delivery::Steps::new(started);
        for s in shipments {
            let order = match s.get("order_id") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(t)) => t.trim().parse().ok(),
                _ => None,
            };
            let Some(order) = order else {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "the output names no order: give `order_id`, the order's entity_id (not its increment id)".into(),
                );
            };
            let mut body = json!({
                "notify": s.get("notify").and_then(Value::as_bool).unwrap_or(params.notify),
            });
            for field in ["items", "tracks"] {
                if let Some(v) = s.get(field).filter(|v| v.is_array()) {
                    body[field] = v.clone();
                }
            }
            if let Some(comment) = s
                .get("comment")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
            {
                body["appendComment"] = json!(true);
                body["comment"] = json!({"comment": comment, "is_visible_on_front": 0});
            }
            let req = super::request(
                call.net,
                reqwest::Method::POST,
                key,
                &format!("/order/{order}/ship"),
            )
            .json(&body);
            let what = format!("shipping order {order}");
            let r = result(
                started,
                &what,
                delivery::send(call.net, req, out.timeout).await,
            );
            // Magento answers a shipment with its id, as a JSON string or number.
            let shipment = r
                .excerpt
                .as_deref()
                .map(|b| b.trim().trim_matches('"').to_string())
                .filter(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()));
            let r = r.referring(|| shipment);
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}

/// Sets stock per SKU and source: the output (or each item of a list) names `sku` and
/// `quantity`, and may name `source_code` and `status` (1 in stock, 0 out; by the quantity
/// when absent). Sent as source items, twenty a call.
pub struct Stock;

#[async_trait]
impl DestinationFunction for Stock {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<StockParams>(started, &call, "Magento") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let levels = delivery::items(out.body);
        let mut items = Vec::with_capacity(levels.len());
        for level in levels {
            let (Some(sku), Some(quantity)) = (
                level.get("sku").and_then(Value::as_str),
                level.get("quantity").and_then(Value::as_f64),
            ) else {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "a stock level needs `sku` and a numeric `quantity`".into(),
                );
            };
            let status = level
                .get("status")
                .and_then(Value::as_i64)
                .unwrap_or(i64::from(quantity > 0.0));
            let source = level
                .get("source_code")
                .and_then(Value::as_str)
                .unwrap_or(&params.source_code);
            items.push(
                json!({"sku": sku, "source_code": source, "quantity": quantity, "status": status}),
            );
        }
        if items.is_empty() {
            return refused(
                started,
                ErrorCode::InvalidSchema,
                "the output is an empty list".into(),
            );
        }
        let mut steps = delivery::Steps::new(started);
        for chunk in items.chunks(SOURCE_ITEMS_PER_CALL) {
            let skus: Vec<&str> = chunk.iter().filter_map(|i| i["sku"].as_str()).collect();
            let req = super::request(
                call.net,
                reqwest::Method::POST,
                key,
                "/inventory/source-items",
            )
            .json(&json!({ "sourceItems": chunk }));
            let what = format!("setting the stock of {}", skus.join(", "));
            let r = result(
                started,
                &what,
                delivery::send(call.net, req, out.timeout).await,
            );
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}
