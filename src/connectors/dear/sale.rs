//! `dear.sale`: creates a sale (`POST /sale`) or, when the output names its `ID`, updates it
//! (`PUT /sale`); then, when the output has an `Order` with `Lines`, adds the order
//! (`POST /sale/order`). Calls are paced within DEAR's limit like its reads.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{code_of, explain, request, Dear};
use crate::connectors::delivery::{self, refused, Answer};
use crate::connectors::net::CallError;
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

crate::params! {
    /// The params of `dear.sale`.
    pub struct SaleParams {
        skip_quote: bool = true, "Create sales without a quote stage (`SkipQuote`), so their order can be added at once; the output's `SkipQuote` wins.";
        order_status: String = "AUTHORISED".into(), "The status of the added order when the output's `Order` names none: `AUTHORISED` or `DRAFT`.";
    }
}

/// `dear.sale`, sharing DEAR's pacing with the connector's reads.
pub struct SaleWrite {
    pub dear: Arc<Dear>,
}

fn result(started: Instant, what: &str, answer: Result<Answer, CallError>) -> SendResult {
    delivery::result(started, "DEAR", what, answer, explain, code_of)
}

#[async_trait]
impl DestinationFunction for SaleWrite {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<SaleParams>(started, &call, "DEAR") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let Some(sale) = out.body.as_object() else {
            return refused(
                started,
                ErrorCode::InvalidSchema,
                "the output is not a sale (an object)".into(),
            );
        };
        let account = super::account(key);
        let mut header = sale.clone();
        let order = header.remove("Order");
        let update = header.get("ID").and_then(Value::as_str).map(str::to_string);
        if update.is_none() {
            if header.get("Customer").is_none() && header.get("CustomerID").is_none() {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "a new sale names its `Customer` (or `CustomerID`)".into(),
                );
            }
            if header.get("Location").is_none() {
                return refused(
                    started,
                    ErrorCode::InvalidSchema,
                    "a new sale names its `Location`".into(),
                );
            }
            header
                .entry("SkipQuote")
                .or_insert(json!(params.skip_quote));
        }
        let (method, what) = match &update {
            Some(id) => (reqwest::Method::PUT, format!("updating sale {id}")),
            None => (reqwest::Method::POST, "creating a sale".to_string()),
        };
        let left = match self.dear.turn_within(&account, started, out.timeout).await {
            Ok(left) => left,
            Err(stop) => return stop,
        };
        let req = request(call.net, method, key, "/sale").json(&Value::Object(header));
        // The whole answer is read: a large sale's `ID` may lie past the excerpt.
        let answer = delivery::send_reading(call.net, req, left).await;
        let sale_id = match &answer {
            Ok(a) if a.status.is_success() => a
                .json
                .as_ref()
                .and_then(|v| v.get("ID").and_then(Value::as_str).map(str::to_string))
                .or(update.clone()),
            _ => None,
        };
        let r = result(started, &what, answer);
        if r.verdict != Verdict::Success {
            return r;
        }
        let Some(mut order) = order.filter(|o| o.get("Lines").is_some_and(Value::is_array)) else {
            return r.referring(|| sale_id);
        };
        let Some(sale_id) = sale_id else {
            return refused(
                started,
                ErrorCode::InvalidApiResponse,
                "DEAR's answer to the sale names no `ID`".into(),
            );
        };
        order["SaleID"] = json!(sale_id);
        if order.get("Status").is_none() {
            order["Status"] = json!(params.order_status);
        }
        if order.get("Memo").is_none() {
            order["Memo"] = json!("");
        }
        let left = match self.dear.turn_within(&account, started, out.timeout).await {
            Ok(left) => left,
            Err(stop) => return stop,
        };
        let req = request(call.net, reqwest::Method::POST, key, "/sale/order").json(&order);
        let what = format!("adding the order of sale {sale_id}");
        result(started, &what, delivery::send(call.net, req, left).await)
            .referring(|| Some(sale_id))
    }
}
