//! `shopify.fulfillment` (fulfil an order's open fulfillment orders, with tracking) and
//! `shopify.inventory` (set available quantities at a location), through the GraphQL Admin API.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::graphql::{user_errors, Failure, Graph};
use crate::connectors::delivery::{self, refused};
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

/// How long one delivery may wait for the store's query budget before it is retried later.
const PUSH_WAIT: Duration = Duration::from_secs(10);
/// SKUs looked up in one query, and quantities set in one mutation (Shopify's most).
const SKUS_PER_QUERY: usize = 50;
const QUANTITIES_PER_CALL: usize = 250;

crate::params! {
    /// The params of `shopify.fulfillment`.
    pub struct FulfillmentParams {
        notify_customer: bool = true, "E-mail the customer about the shipment (the output's `notify_customer` wins).";
    }
}

crate::params! {
    /// The params of `shopify.inventory`.
    pub struct InventoryParams {
        location_id: Option<String>, "The location whose quantities are set (`gid://shopify/Location/…` or its number), when an item names none.";
        reason: String = "correction".into(), "Why the quantities change, as Shopify records it: `correction`, `cycle_count_available`, `received`, `restock`, …";
    }
}

/// A failed query as the delivery's result.
fn failure(started: Instant, f: Failure, what: &str) -> SendResult {
    let (http_status, excerpt, retry_after) = match &f {
        Failure::Status {
            status,
            body,
            retry_after,
        } => (
            Some(*status),
            (!body.is_empty()).then(|| body.clone()),
            *retry_after,
        ),
        Failure::Throttled { wait } => (None, None, Some(*wait)),
        _ => (None, None, None),
    };
    SendResult {
        verdict: if f.passing() {
            Verdict::Retry
        } else {
            Verdict::Final
        },
        error_code: Some(f.code()),
        http_status: http_status.map(|s| s.as_u16()),
        http_status_name: http_status.and_then(|s| s.canonical_reason().map(str::to_string)),
        excerpt,
        retry_after,
        message: Some(f.describe(what)),
        reference: None,
        duration: started.elapsed(),
    }
}

/// A mutation's payload: done (its excerpt kept on the attempt, `reference` the id it names at
/// that pointer), or refused by `userErrors`.
fn outcome(
    started: Instant,
    net_excerpt: usize,
    payload: &Value,
    what: &str,
    reference: &str,
) -> SendResult {
    if let Some((code, message)) = user_errors(payload) {
        return SendResult {
            verdict: Verdict::Final,
            error_code: Some(code),
            http_status: Some(200),
            http_status_name: Some("OK".into()),
            excerpt: Some(cut(payload.to_string(), net_excerpt)),
            retry_after: None,
            message: Some(format!("Shopify refused {what}: {message}")),
            reference: None,
            duration: started.elapsed(),
        };
    }
    let id = payload
        .pointer(reference)
        .and_then(Value::as_str)
        .map(str::to_string);
    done(started, net_excerpt, payload, id)
}

fn done(
    started: Instant,
    net_excerpt: usize,
    payload: &Value,
    reference: Option<String>,
) -> SendResult {
    SendResult {
        verdict: Verdict::Success,
        error_code: None,
        http_status: Some(200),
        http_status_name: Some("OK".into()),
        excerpt: Some(cut(payload.to_string(), net_excerpt)),
        retry_after: None,
        message: None,
        reference,
        duration: started.elapsed(),
    }
}

fn cut(mut text: String, most: usize) -> String {
    if text.len() > most {
        let mut end = most;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A global id from an id given as a gid, a number or digits.
fn gid(kind: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("gid://shopify/") => Some(s.clone()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("gid://shopify/{kind}/{s}"))
        }
        Value::Number(n) => n.as_u64().map(|n| format!("gid://shopify/{kind}/{n}")),
        _ => None,
    }
}

const ORDER_BY_NAME: &str = "query OrderByName($query: String!) {
  orders(first: 5, query: $query) { nodes { id name } }
}";

/// An order's fulfilments and fulfillment orders, five of them at a time with their first
/// fifty lines: within what one query may cost (1,000).
const FULFILLMENT_ORDERS: &str = "query FulfillmentOrders($id: ID!, $after: String) {
  order(id: $id) {
    id name
    fulfillments(first: 50) { id status trackingInfo { number company url } }
    fulfillmentOrders(first: 5, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id status
        assignedLocation { location { id } }
        supportedActions { action }
        lineItems(first: 50) { pageInfo { hasNextPage endCursor } nodes { id remainingQuantity lineItem { sku } } }
      }
    }
  }
}";

/// The rest of a fulfillment order's lines.
const FULFILLMENT_ORDER_LINES: &str = "query FulfillmentOrderLines($id: ID!, $after: String) {
  fulfillmentOrder(id: $id) {
    lineItems(first: 50, after: $after) { pageInfo { hasNextPage endCursor } nodes { id remainingQuantity lineItem { sku } } }
  }
}";

const FULFILL: &str = "mutation Fulfill($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo { number company url } }
    userErrors { field message }
  }
}";

/// Fulfils an order. The output names the order by `order_id` (a gid or number) or
/// `order_name` (`#1001`); `tracking` (`{number, company, url}`, or `numbers` and `urls` for
/// several parcels) and `notify_customer`; and
/// `line_items` (`[{sku, quantity}]`) for part of it — all that remains when absent. An order
/// that already has a fulfilment with the same tracking number is not fulfilled again.
pub struct Fulfillment;

#[async_trait]
impl DestinationFunction for Fulfillment {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<FulfillmentParams>(started, &call, "Shopify")
        {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let mut graph = Graph::new(call.net, key, Some(out.timeout), PUSH_WAIT);
        let excerpt = call.net.excerpt_bytes;
        let mut steps = delivery::Steps::new(started);
        for item in delivery::items(out.body) {
            let r = fulfil(started, &mut graph, excerpt, &params, item).await;
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}

fn invalid(started: Instant, message: impl Into<String>) -> SendResult {
    refused(started, ErrorCode::InvalidSchema, message.into())
}

async fn fulfil(
    started: Instant,
    graph: &mut Graph<'_>,
    excerpt: usize,
    params: &FulfillmentParams,
    item: &Value,
) -> SendResult {
    // The order.
    let given = |field: &str| item.get(field).filter(|v| !v.is_null());
    let order_id = match (given("order_id"), given("order_name")) {
        (Some(id), _) => match gid("Order", id) {
            Some(g) => g,
            None => return invalid(started, "`order_id` is not an order id (a gid or a number)"),
        },
        (None, Some(Value::String(name))) if !name.trim().is_empty() => {
            let name = name.trim();
            let what = format!("finding order {name}");
            let query = format!("name:'{}'", name.replace('\'', ""));
            let data = match graph.run(ORDER_BY_NAME, json!({"query": query})).await {
                Ok(d) => d,
                Err(f) => return failure(started, f, &what),
            };
            let found = data
                .pointer("/orders/nodes")
                .and_then(Value::as_array)
                .and_then(|l| l.iter().find(|o| o["name"].as_str() == Some(name)))
                .and_then(|o| o["id"].as_str())
                .map(str::to_string);
            match found {
                Some(id) => id,
                None => {
                    return refused(
                        started,
                        ErrorCode::NotFound,
                        format!("Shopify has no order named {name}"),
                    )
                }
            }
        }
        _ => {
            return invalid(
                started,
                "the output names no order: give `order_id` (a gid or number) or `order_name` (e.g. `#1001`)",
            )
        }
    };
    let tracking = item.get("tracking").cloned().unwrap_or(Value::Null);
    if !(tracking.is_null() || tracking.is_object()) {
        return invalid(started, "`tracking` is an object: {number, company, url}");
    }
    let number = tracking
        .get("number")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let numbers: Vec<&str> = number
        .into_iter()
        .chain(
            tracking
                .get("numbers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        .filter(|n| !n.is_empty())
        .collect();
    // What is left to fulfil.
    let what = format!("reading the fulfillment orders of {order_id}");
    let order = match fulfillment_orders(graph, &order_id).await {
        Ok(Some(order)) => order,
        Ok(None) => {
            return refused(
                started,
                ErrorCode::NotFound,
                format!("Shopify has no order {order_id}"),
            )
        }
        Err(f) => return failure(started, f, &what),
    };
    let name = order["name"].as_str().unwrap_or(&order_id).to_string();
    let made: Vec<&Value> = order["fulfillments"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|f| f["status"].as_str() != Some("CANCELLED"))
                .collect()
        })
        .unwrap_or_default();
    let earlier = made.iter().find(|f| {
        f.pointer("/trackingInfo")
            .and_then(Value::as_array)
            .is_some_and(|t| {
                t.iter()
                    .any(|t| numbers.contains(&t["number"].as_str().unwrap_or_default()))
            })
    });
    if let Some(earlier) = earlier {
        // Delivered before (a retry after a lost answer, or the same despatch twice).
        return done(
            started,
            excerpt,
            &json!({"fulfillment": earlier, "already": true}),
            earlier["id"].as_str().map(str::to_string),
        );
    }
    let all_fos: Vec<&Value> = order["fulfillmentOrders"]
        .as_array()
        .map(|l| l.iter().collect())
        .unwrap_or_default();
    let open: Vec<&Value> = all_fos
        .iter()
        .copied()
        .filter(|fo| {
            matches!(fo["status"].as_str(), Some("OPEN" | "IN_PROGRESS"))
                && fo["supportedActions"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|a| a["action"].as_str() == Some("CREATE_FULFILLMENT"))
                })
        })
        .collect();
    let everything = item.get("line_items").is_none_or(Value::is_null);
    if open.is_empty() {
        if everything && numbers.is_empty() {
            if let Some(last) = made.last() {
                // All of it was fulfilled, by this delivery's lost answer or before it.
                return done(
                    started,
                    excerpt,
                    &json!({"fulfillment": last, "already": true}),
                    last["id"].as_str().map(str::to_string),
                );
            }
        }
        let mut statuses: Vec<String> = all_fos
            .iter()
            .map(|fo| fo["status"].as_str().unwrap_or("unknown").to_lowercase())
            .collect();
        statuses.sort();
        statuses.dedup();
        let why = if statuses.is_empty() {
            "it has no fulfillment order".to_string()
        } else {
            format!(
                "its fulfillment orders are {} (only open ones this app may fulfil can be)",
                statuses.join(", ")
            )
        };
        return invalid(
            started,
            format!("order {name} has nothing left to fulfil: {why}"),
        );
    }
    let by_order = match allocate(&open, item.get("line_items")) {
        Ok(list) => list,
        Err(message) => return invalid(started, format!("order {name}: {message}")),
    };
    // One fulfilment per location: Shopify fulfils fulfillment orders of one location at once.
    let location_of = |fo_id: &str| {
        open.iter()
            .find(|fo| fo["id"].as_str() == Some(fo_id))
            .and_then(|fo| fo.pointer("/assignedLocation/location/id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut by_location: Vec<(String, Vec<Value>)> = Vec::new();
    for group in by_order {
        let at = location_of(group["fulfillmentOrderId"].as_str().unwrap_or_default());
        match by_location.iter_mut().find(|(l, _)| *l == at) {
            Some((_, groups)) => groups.push(group),
            None => by_location.push((at, vec![group])),
        }
    }
    let mut info = serde_json::Map::new();
    if let Some(t) = tracking.as_object() {
        for field in ["number", "company", "url", "numbers", "urls"] {
            if let Some(v) = t.get(field).filter(|v| v.is_string() || v.is_array()) {
                info.insert(field.into(), v.clone());
            }
        }
    }
    let notify = item
        .get("notify_customer")
        .and_then(Value::as_bool)
        .unwrap_or(params.notify_customer);
    let what = format!("fulfilling order {name}");
    let mut made_now: Vec<String> = Vec::new();
    let mut last = None;
    for (_, groups) in by_location {
        let mut fulfillment =
            json!({"lineItemsByFulfillmentOrder": groups, "notifyCustomer": notify});
        if !info.is_empty() {
            fulfillment["trackingInfo"] = Value::Object(info.clone());
        }
        let r = match graph
            .run(FULFILL, json!({"fulfillment": fulfillment}))
            .await
        {
            Ok(data) => {
                let payload = &data["fulfillmentCreate"];
                let r = outcome(started, excerpt, payload, &what, "/fulfillment/id");
                if r.verdict == Verdict::Success && r.reference.is_none() {
                    // Nothing says a fulfilment was made: ask again (the tracking number
                    // finds it if it was).
                    SendResult {
                        verdict: Verdict::Retry,
                        error_code: Some(ErrorCode::InvalidApiResponse),
                        message: Some(format!("Shopify's answer to {what} names no fulfilment")),
                        ..r
                    }
                } else {
                    r
                }
            }
            Err(f) => failure(started, f, &what),
        };
        if r.verdict != Verdict::Success {
            return r;
        }
        made_now.extend(r.reference.clone());
        last = Some(r);
    }
    match last {
        Some(r) => SendResult {
            reference: Some(made_now.join(",")),
            ..r
        },
        None => invalid(started, format!("order {name}: nothing left to fulfil")),
    }
}

/// The order with its fulfilments and every fulfillment order (`fulfillmentOrders` as a list,
/// each with all its lines); `None` when Shopify has no such order.
async fn fulfillment_orders(
    graph: &mut Graph<'_>,
    order_id: &str,
) -> Result<Option<Value>, Failure> {
    let mut order: Option<Value> = None;
    let mut fos: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut data = graph
            .run(FULFILLMENT_ORDERS, json!({"id": order_id, "after": after}))
            .await?;
        let Some(found) = data
            .get_mut("order")
            .filter(|o| o.is_object())
            .map(Value::take)
        else {
            return Ok(None);
        };
        let next = next_cursor(&found["fulfillmentOrders"]);
        for mut fo in found["fulfillmentOrders"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let mut lines = fo["lineItems"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut more = next_cursor(&fo["lineItems"]);
            while let Some(cursor) = more {
                let page = graph
                    .run(
                        FULFILLMENT_ORDER_LINES,
                        json!({"id": fo["id"], "after": cursor}),
                    )
                    .await?;
                let conn = &page["fulfillmentOrder"]["lineItems"];
                lines.extend(conn["nodes"].as_array().cloned().unwrap_or_default());
                more = next_cursor(conn);
            }
            fo["lineItems"] = json!({ "nodes": lines });
            fos.push(fo);
        }
        order.get_or_insert(found);
        match next {
            Some(c) if fos.len() < 1_000 => after = Some(c),
            _ => break,
        }
    }
    Ok(order.map(|mut o| {
        o["fulfillmentOrders"] = Value::Array(fos);
        o
    }))
}

/// The cursor of a connection's next page, when it has one.
fn next_cursor(conn: &Value) -> Option<String> {
    (conn.pointer("/pageInfo/hasNextPage") == Some(&Value::Bool(true)))
        .then(|| conn.pointer("/pageInfo/endCursor").and_then(Value::as_str))
        .flatten()
        .map(str::to_string)
}

/// The lines to fulfil, by fulfillment order: every remaining line, or the quantities of the
/// SKUs asked for.
/// A fulfillment order line left to fulfil: its id, SKU and remaining quantity.
type Left = (String, String, u64);

fn allocate(open: &[&Value], wanted: Option<&Value>) -> Result<Vec<Value>, String> {
    let lines = |fo: &Value| -> Vec<Left> {
        fo.pointer("/lineItems/nodes")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|li| {
                        Some((
                            li["id"].as_str()?.to_string(),
                            li.pointer("/lineItem/sku")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            li["remainingQuantity"].as_u64()?,
                        ))
                    })
                    .filter(|(_, _, left)| *left > 0)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut left: Vec<(String, Vec<Left>)> = open
        .iter()
        .map(|fo| (fo["id"].as_str().unwrap_or_default().to_string(), lines(fo)))
        .collect();
    let mut picked: Vec<(String, Vec<Value>)> = Vec::new();
    let mut take =
        |fo: &str, line: &str, quantity: u64| match picked.iter_mut().find(|(f, _)| f == fo) {
            Some((_, l)) => l.push(json!({"id": line, "quantity": quantity})),
            None => picked.push((
                fo.to_string(),
                vec![json!({"id": line, "quantity": quantity})],
            )),
        };
    match wanted {
        None | Some(Value::Null) => {
            for (fo, lines) in &left {
                for (id, _, quantity) in lines {
                    take(fo, id, *quantity);
                }
            }
        }
        Some(Value::Array(list)) => {
            for want in list {
                let (Some(sku), Some(mut quantity)) = (
                    want.get("sku").and_then(Value::as_str),
                    want.get("quantity").and_then(Value::as_u64),
                ) else {
                    return Err("each of `line_items` names a `sku` and a whole `quantity`".into());
                };
                for (fo, lines) in left.iter_mut() {
                    for (id, line_sku, remaining) in lines.iter_mut() {
                        if quantity == 0 || line_sku != sku || *remaining == 0 {
                            continue;
                        }
                        let n = quantity.min(*remaining);
                        take(fo, id, n);
                        *remaining -= n;
                        quantity -= n;
                    }
                }
                if quantity > 0 {
                    return Err(format!("not enough of {sku} is left to fulfil"));
                }
            }
        }
        Some(_) => return Err("`line_items` is a list of {sku, quantity}".into()),
    }
    if picked.is_empty() {
        return Err("nothing is left to fulfil".into());
    }
    Ok(picked
        .into_iter()
        .map(|(fo, lines)| json!({"fulfillmentOrderId": fo, "fulfillmentOrderLineItems": lines}))
        .collect())
}

const VARIANTS_BY_SKU: &str = "query VariantsBySku($query: String!, $after: String) {
  productVariants(first: 250, after: $after, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes { sku inventoryItem { id } }
  }
}";

const SET_QUANTITIES: &str = "mutation SetQuantities($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { id reason changes { name delta } }
    userErrors { code field message }
  }
}";

/// Sets available quantities: the output (or each item of a list) names `sku` or
/// `inventory_item_id`, and `available` (or `quantity`), and may name `location_id`.
pub struct Inventory;

#[async_trait]
impl DestinationFunction for Inventory {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<InventoryParams>(started, &call, "Shopify") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let default_location = params.location_id.as_ref().map(|l| json!(l));
        // (item gid or sku, location gid, quantity)
        let mut wanted: Vec<(Result<String, String>, String, i64)> = Vec::new();
        for level in delivery::items(out.body) {
            let quantity = level.get("available").or_else(|| level.get("quantity"));
            let Some(quantity) = quantity.and_then(Value::as_i64) else {
                return invalid(
                    started,
                    "a stock level needs a whole `available` (or `quantity`)",
                );
            };
            let location = level.get("location_id").or(default_location.as_ref());
            let Some(location) = location.and_then(|l| gid("Location", l)) else {
                return invalid(
                    started,
                    "a stock level needs a location: set the destination's `location_id` or give `location_id` (a gid or number)",
                );
            };
            let item = match (
                level.get("inventory_item_id"),
                level.get("sku").and_then(Value::as_str),
            ) {
                (Some(id), _) => match gid("InventoryItem", id) {
                    Some(g) => Ok(g),
                    None => {
                        return invalid(
                            started,
                            "`inventory_item_id` is not an id (a gid or number)",
                        )
                    }
                },
                (None, Some(sku)) if !sku.is_empty() => Err(sku.to_string()),
                _ => {
                    return invalid(
                        started,
                        "a stock level names its `sku` or `inventory_item_id`",
                    )
                }
            };
            wanted.push((item, location, quantity));
        }
        if wanted.is_empty() {
            return invalid(started, "the output is an empty list");
        }
        let mut graph = Graph::new(call.net, key, Some(out.timeout), PUSH_WAIT);
        // SKUs to inventory items, exactly (Shopify's search also finds near matches).
        let skus: Vec<String> = {
            let mut s: Vec<String> = wanted
                .iter()
                .filter_map(|(i, _, _)| i.as_ref().err().cloned())
                .collect();
            s.sort();
            s.dedup();
            s
        };
        let mut items_of: std::collections::HashMap<String, Vec<String>> = Default::default();
        for chunk in skus.chunks(SKUS_PER_QUERY) {
            let query = chunk
                .iter()
                .map(|s| format!("sku:'{}'", s.replace('\'', "")))
                .collect::<Vec<_>>()
                .join(" OR ");
            let what = "finding variants by SKU";
            // Shopify's search also finds near matches: page through all it finds.
            let mut after: Option<String> = None;
            loop {
                let data = match graph
                    .run(VARIANTS_BY_SKU, json!({"query": query, "after": after}))
                    .await
                {
                    Ok(d) => d,
                    Err(f) => return failure(started, f, what),
                };
                let conn = &data["productVariants"];
                for v in conn["nodes"].as_array().into_iter().flatten() {
                    if let (Some(sku), Some(item)) = (
                        v["sku"].as_str(),
                        v.pointer("/inventoryItem/id").and_then(Value::as_str),
                    ) {
                        if chunk.iter().any(|s| s == sku) {
                            items_of
                                .entry(sku.to_string())
                                .or_default()
                                .push(item.to_string());
                        }
                    }
                }
                match next_cursor(conn) {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
        }
        let mut quantities: Vec<Value> = Vec::new();
        for (item, location, quantity) in &wanted {
            let ids = match item {
                Ok(id) => vec![id.clone()],
                Err(sku) => match items_of.get(sku) {
                    Some(ids) => ids.clone(),
                    None => {
                        return refused(
                            started,
                            ErrorCode::NotFound,
                            format!("Shopify has no variant with SKU {sku}"),
                        )
                    }
                },
            };
            for id in ids {
                // One quantity per item and location (Shopify refuses a pair twice): the last
                // given wins.
                quantities.retain(|q| {
                    !(q["inventoryItemId"] == id.as_str() && q["locationId"] == location.as_str())
                });
                quantities.push(
                    json!({"inventoryItemId": id, "locationId": location, "quantity": quantity}),
                );
            }
        }
        let mut steps = delivery::Steps::new(started);
        for chunk in quantities.chunks(QUANTITIES_PER_CALL) {
            let input = json!({
                "name": "available",
                "reason": params.reason,
                "ignoreCompareQuantity": true,
                "quantities": chunk,
            });
            let what = format!("setting {} quantities", chunk.len());
            let r = match graph.run(SET_QUANTITIES, json!({"input": input})).await {
                Ok(data) => outcome(
                    started,
                    call.net.excerpt_bytes,
                    &data["inventorySetQuantities"],
                    &what,
                    "/inventoryAdjustmentGroup/id",
                ),
                Err(f) => failure(started, f, &what),
            };
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_global_ids() {
        assert_eq!(
            gid("Order", &json!(12)).as_deref(),
            Some("gid://shopify/Order/12")
        );
        assert_eq!(
            gid("Order", &json!("12")).as_deref(),
            Some("gid://shopify/Order/12")
        );
        assert_eq!(
            gid("Order", &json!("gid://shopify/Order/12")).as_deref(),
            Some("gid://shopify/Order/12")
        );
        assert_eq!(gid("Order", &json!("#1001")), None);
    }

    #[test]
    fn lines_are_allocated_across_fulfillment_orders() {
        let a = json!({"id": "fo1", "status": "OPEN", "lineItems": {"nodes": [
            {"id": "l1", "remainingQuantity": 1, "lineItem": {"sku": "A"}},
            {"id": "l2", "remainingQuantity": 0, "lineItem": {"sku": "B"}}]}});
        let b = json!({"id": "fo2", "status": "OPEN", "lineItems": {"nodes": [
            {"id": "l3", "remainingQuantity": 2, "lineItem": {"sku": "A"}}]}});
        let all = allocate(&[&a, &b], None).unwrap();
        assert_eq!(
            all,
            vec![
                json!({"fulfillmentOrderId": "fo1", "fulfillmentOrderLineItems": [{"id": "l1", "quantity": 1}]}),
                json!({"fulfillmentOrderId": "fo2", "fulfillmentOrderLineItems": [{"id": "l3", "quantity": 2}]}),
            ]
        );
        let some = allocate(&[&a, &b], Some(&json!([{"sku": "A", "quantity": 2}]))).unwrap();
        assert_eq!(
            some,
            vec![
                json!({"fulfillmentOrderId": "fo1", "fulfillmentOrderLineItems": [{"id": "l1", "quantity": 1}]}),
                json!({"fulfillmentOrderId": "fo2", "fulfillmentOrderLineItems": [{"id": "l3", "quantity": 1}]}),
            ]
        );
        assert!(allocate(&[&a], Some(&json!([{"sku": "A", "quantity": 2}])))
            .unwrap_err()
            .contains("not enough of A"));
        assert!(allocate(&[&a], Some(&json!([{"sku": "B", "quantity": 1}]))).is_err());
    }
}
