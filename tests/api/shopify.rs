//! Shopify through a local store that answers as the GraphQL Admin API does: one endpoint per
//! API version, `X-Shopify-Access-Token` (a wrong token answered 401 with Shopify's `errors`
//! text), a query-cost bucket reported in `extensions.cost` with `THROTTLED` answers when it
//! runs dry and `MAX_COST_EXCEEDED` over 1,000, cursor pages sorted by `UPDATED_AT` and
//! filtered by `updated_at:>=`, nested connections paged, `userErrors` for refused mutations,
//! fulfillment orders that close when fulfilled, and SKU searches that also find near matches
//! (as Shopify's search does).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{Db, Server};
use crate::engine::{events_of, run, start, upload_and_wait, wait_for_job};
use crate::peers::Sink;

pub const TOKEN: &str = "shpat_0123456789abcdef";
const ENDPOINT: &str = "/admin/api/2025-01/graphql.json";
const LOCATION: &str = "gid://shopify/Location/71";
const TOPICS: [&str; 9] = [
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_PAID",
    "ORDERS_CANCELLED",
    "ORDERS_FULFILLED",
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "INVENTORY_LEVELS_UPDATE",
    "APP_UNINSTALLED",
];
const REASONS: [&str; 17] = [
    "correction",
    "cycle_count_available",
    "damaged",
    "movement_canceled",
    "movement_created",
    "movement_received",
    "movement_updated",
    "other",
    "promotion",
    "quality_control",
    "received",
    "reservation_created",
    "reservation_deleted",
    "reservation_updated",
    "restock",
    "safety_stock",
    "shrinkage",
];

/// The store's records and what it was asked.
pub struct Store {
    /// Orders as GraphQL nodes, with `lineItems` as a list and their fulfillment orders and
    /// fulfillments beside.
    pub orders: Vec<Value>,
    pub products: Vec<Value>,
    pub subscriptions: BTreeMap<String, Value>,
    /// Available quantity by (inventory item, location).
    pub inventory: HashMap<(String, String), i64>,
    /// Root fields asked, in order.
    pub calls: Vec<String>,
    /// Queries answered THROTTLED.
    pub throttled: u32,
    /// Answer THROTTLED to this many queries next, whatever the bucket holds.
    pub throttle_next: u32,
    /// Statuses to answer the next requests with, before anything else.
    pub fail_next: VecDeque<u16>,
    /// The token the store's app was given.
    token: String,
    bucket: f64,
    pub bucket_max: f64,
    pub restore_rate: f64,
    refilled: Instant,
    next_id: u64,
}

pub type Shop = Arc<Mutex<Store>>;

fn money(amount: &str) -> Value {
    json!({"shopMoney": {"amount": amount, "currencyCode": "GBP"}})
}

/// An order node with `lines` lines (SKU `SKU-<n>-<i>`, quantity 1) and one open fulfillment
/// order holding them.
pub fn order(n: u64, updated: &str, lines: usize) -> Value {
    let line_items: Vec<Value> = (1..=lines)
        .map(|i| {
            json!({"id": format!("gid://shopify/LineItem/{n}{i:03}"), "sku": format!("SKU-{n}-{i}"),
                "name": format!("Item {i}"), "title": format!("Item {i}"), "variantTitle": null,
                "quantity": 1, "currentQuantity": 1, "vendor": "Harbour", "requiresShipping": true,
                "originalUnitPriceSet": money("10.00"), "discountedUnitPriceSet": money("10.00"),
                "variant": {"id": format!("gid://shopify/ProductVariant/{n}{i:03}")},
                "product": {"id": "gid://shopify/Product/1"}})
        })
        .collect();
    let fo_lines: Vec<Value> = (1..=lines)
        .map(|i| {
            json!({"id": format!("gid://shopify/FulfillmentOrderLineItem/{n}{i:03}"),
                "remainingQuantity": 1, "lineItem": {"sku": format!("SKU-{n}-{i}")}})
        })
        .collect();
    json!({
        "id": format!("gid://shopify/Order/{n}"), "legacyResourceId": n.to_string(),
        "name": format!("#{n}"), "email": format!("buyer{n}@example.com"), "phone": null,
        "createdAt": "2026-11-01T09:00:00Z", "updatedAt": updated, "processedAt": "2026-11-01T09:00:00Z",
        "cancelledAt": null, "cancelReason": null, "closedAt": null,
        "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "UNFULFILLED",
        "currencyCode": "GBP", "note": null, "tags": [],
        "subtotalPriceSet": money("10.00"), "totalPriceSet": money("13.95"),
        "totalTaxSet": money("1.67"), "totalShippingPriceSet": money("3.95"),
        "totalDiscountsSet": money("0.00"),
        "customer": {"id": "gid://shopify/Customer/9", "email": format!("buyer{n}@example.com"),
            "firstName": "Jo", "lastName": "Bloggs", "phone": null},
        "shippingAddress": {"name": "Jo Bloggs", "firstName": "Jo", "lastName": "Bloggs", "company": null,
            "address1": "1 High Street", "address2": null, "city": "London", "province": null,
            "provinceCode": null, "zip": "SW1A 1AA", "country": "United Kingdom", "countryCodeV2": "GB", "phone": null},
        "billingAddress": null,
        "shippingLines": {"nodes": [{"title": "Tracked 24", "code": "RM-T24", "source": "shopify",
            "originalPriceSet": money("3.95")}]},
        "lineItems": line_items,
        "fulfillmentOrders": [{"id": format!("gid://shopify/FulfillmentOrder/{n}"), "status": "OPEN",
            "assignedLocation": {"location": {"id": LOCATION}},
            "supportedActions": [{"action": "CREATE_FULFILLMENT"}, {"action": "HOLD"}],
            "lineItems": fo_lines}],
        "fulfillments": [],
    })
}

/// A product node with variants of the given SKUs.
pub fn product(n: u64, updated: &str, skus: &[&str]) -> Value {
    let variants: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(i, sku)| {
            json!({"id": format!("gid://shopify/ProductVariant/{n}{i:02}"), "sku": sku,
                "title": format!("Variant {i}"), "price": "20.00", "barcode": null, "inventoryQuantity": 0,
                "inventoryItem": {"id": format!("gid://shopify/InventoryItem/{n}{i:02}")}})
        })
        .collect();
    json!({"id": format!("gid://shopify/Product/{n}"), "legacyResourceId": n.to_string(),
        "title": format!("Product {n}"), "handle": format!("product-{n}"), "status": "ACTIVE",
        "vendor": "Harbour", "productType": "Tee", "tags": [], "createdAt": "2026-11-01T09:00:00Z",
        "updatedAt": updated, "publishedAt": null, "variants": variants})
}

fn graph_error(message: &str, code: &str) -> Value {
    json!({"message": message, "extensions": {"code": code}})
}

fn reply(status: u16, body: Value) -> Response {
    (
        AxStatus::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The first field selected by the operation, and whether the braces balance.
fn root_field(query: &str) -> Option<String> {
    let mut depth = 0i32;
    for c in query.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if depth != 0 {
        return None;
    }
    let body = &query[query.find('{')? + 1..];
    let name: String = body
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// What a query costs as Shopify reckons it: a mutation 10; otherwise an object 1, a
/// connection (a field with `first`) 2 + `first` × what one of its nodes costs, a scalar 0.
fn query_cost(query: &str, vars: &Value) -> f64 {
    if query.trim_start().starts_with("mutation") {
        return 10.0;
    }
    let mut tokens: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in query[query.find('{').map_or(0, |i| i + 1)..].chars() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        match c {
            '"' => in_string = true,
            '{' | '}' | '(' | ')' | ':' => tokens.push(c.to_string()),
            _ => {}
        }
    }
    fn selection(t: &[String], mut i: usize, vars: &Value) -> (Vec<(String, f64)>, usize) {
        let mut fields = Vec::new();
        while i < t.len() && t[i] != "}" {
            let mut name = t[i].clone();
            i += 1;
            if t.get(i).map(String::as_str) == Some(":") {
                name = t[i + 1].clone();
                i += 2;
            }
            let mut first: Option<f64> = None;
            if t.get(i).map(String::as_str) == Some("(") {
                while i < t.len() && t[i] != ")" {
                    if t[i] == "first" && t.get(i + 1).map(String::as_str) == Some(":") {
                        let v = &t[i + 2];
                        first = match v.strip_prefix('$') {
                            Some(var) => vars[var].as_f64(),
                            None => v.parse().ok(),
                        };
                    }
                    i += 1;
                }
                i += 1;
            }
            let mut cost = 0.0;
            if t.get(i).map(String::as_str) == Some("{") {
                let (children, next) = selection(t, i + 1, vars);
                i = next;
                cost = match first {
                    Some(n) => {
                        let node = children
                            .iter()
                            .find(|(f, _)| f == "nodes" || f == "edges")
                            .map_or_else(|| children.iter().map(|(_, c)| c).sum(), |(_, c)| *c);
                        2.0 + n * node
                    }
                    None => 1.0 + children.iter().map(|(_, c)| c).sum::<f64>(),
                };
            }
            fields.push((name, cost));
        }
        (fields, i + 1)
    }
    let (fields, _) = selection(&tokens, 0, vars);
    fields.iter().map(|(_, c)| c).sum()
}

/// The `first` written in the query for a nested connection, e.g. `lineItems(first: 10)`.
fn nested_first(query: &str, field: &str) -> usize {
    query
        .split(&format!("{field}(first: "))
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
}

/// A connection of `items` from `after` (an index), `first` long.
fn page(items: &[Value], first: usize, after: Option<&str>) -> Value {
    let start = after.and_then(|a| a.parse::<usize>().ok()).unwrap_or(0);
    let nodes: Vec<Value> = items.iter().skip(start).take(first).cloned().collect();
    let end = start + nodes.len();
    json!({"pageInfo": {"hasNextPage": end < items.len(), "endCursor": (end > 0).then(|| end.to_string())},
        "nodes": nodes})
}

/// A record as the list queries give it: its nested list as a first page, the store's own
/// fields left out.
fn listed(record: &Value, nested: &str, first: usize) -> Value {
    let mut r = record.clone();
    let list = r[nested].as_array().cloned().unwrap_or_default();
    r[nested] = page(&list, first, None);
    if let Some(o) = r.as_object_mut() {
        o.remove("fulfillmentOrders");
        o.remove("fulfillments");
    }
    r
}

impl Store {
    fn refill(&mut self) {
        let now = Instant::now();
        let gained = now.duration_since(self.refilled).as_secs_f64() * self.restore_rate;
        self.bucket = (self.bucket + gained).min(self.bucket_max);
        self.refilled = now;
    }

    fn cost(&self, requested: f64, actual: Option<f64>) -> Value {
        json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
            "throttleStatus": {"maximumAvailable": self.bucket_max,
                "currentlyAvailable": self.bucket.floor(), "restoreRate": self.restore_rate}}})
    }

    fn id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("gid://shopify/{kind}/{}", 900_000 + self.next_id)
    }

    /// Records whose `updatedAt` passes the search's `updated_at:>='…'`, oldest first.
    fn search(records: &[Value], query: Option<&str>) -> Result<Vec<Value>, String> {
        let mut out: Vec<Value> = records.to_vec();
        if let Some(q) = query {
            for term in q.split(" AND ") {
                if let Some(t) = term.strip_prefix("updated_at:>=") {
                    // Unquoted, Shopify splits the time at its colons and reads it wrong.
                    if !(t.starts_with('\'') && t.ends_with('\'')) {
                        return Err(format!("unquoted time {t}"));
                    }
                    let t = t.trim_matches('\'');
                    if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                        return Err(format!("invalid date {t}"));
                    }
                    out.retain(|r| r["updatedAt"].as_str().unwrap() >= t);
                } else if let Some(name) = term.strip_prefix("name:") {
                    let name = name.trim_matches('\'');
                    out.retain(|r| r["name"] == name);
                } else if let Some(status) = term.strip_prefix("(financial_status:") {
                    let status = status.trim_end_matches(')').to_uppercase();
                    out.retain(|r| r["displayFinancialStatus"] == status.as_str());
                }
            }
        }
        out.sort_by(|a, b| {
            (a["updatedAt"].as_str(), a["id"].as_str())
                .cmp(&(b["updatedAt"].as_str(), b["id"].as_str()))
        });
        Ok(out)
    }

    fn run(&mut self, root: &str, query: &str, vars: &Value) -> Result<Value, Value> {
        // `first` from the variables, or written in the query.
        let literal = query
            .split("first: ")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok());
        let first = |max: u64| -> Result<usize, Value> {
            match vars.get("first").and_then(Value::as_u64).or(literal) {
                Some(n) if (1..=max).contains(&n) => Ok(n as usize),
                _ => Err(json!([graph_error(
                    &format!("The value of `first` must be between 1 and {max}"),
                    "BAD_USER_INPUT"
                )])),
            }
        };
        match root {
            "orders" | "products" => {
                let n = first(250)?;
                let records = if root == "orders" {
                    &self.orders
                } else {
                    &self.products
                };
                let nested = if root == "orders" {
                    "lineItems"
                } else {
                    "variants"
                };
                let q = vars.get("query").and_then(Value::as_str);
                let found = Store::search(records, q)
                    .map_err(|e| json!([graph_error(&e, "BAD_USER_INPUT")]))?;
                let mut found = found;
                if !query.contains("sortKey: UPDATED_AT") {
                    // Shopify's default order is by id.
                    found.sort_by_key(|r| {
                        r["legacyResourceId"]
                            .as_str()
                            .and_then(|n| n.parse::<u64>().ok())
                    });
                }
                let inner = nested_first(query, nested);
                let listed: Vec<Value> = found.iter().map(|r| listed(r, nested, inner)).collect();
                // Name lookups ask for `orders(first: 5, …) { nodes { id name } }` only.
                let mut conn = page(&listed, n, vars.get("after").and_then(Value::as_str));
                if !query.contains("pageInfo") {
                    conn.as_object_mut().unwrap().remove("pageInfo");
                }
                Ok(json!({ root: conn }))
            }
            "order" | "product" => {
                let id = vars.get("id").and_then(Value::as_str).unwrap_or_default();
                let records = if root == "order" {
                    &self.orders
                } else {
                    &self.products
                };
                let Some(r) = records.iter().find(|r| r["id"] == id) else {
                    return Ok(json!({ root: null }));
                };
                if query.contains("fulfillmentOrders") {
                    let fos: Vec<Value> = r["fulfillmentOrders"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|fo| {
                            let lines = fo["lineItems"].as_array().cloned().unwrap_or_default();
                            json!({"id": fo["id"], "status": fo["status"],
                                "assignedLocation": fo["assignedLocation"],
                                "supportedActions": fo["supportedActions"],
                                "lineItems": page(&lines, nested_first(query, "lineItems"), None)})
                        })
                        .collect();
                    let fos = page(
                        &fos,
                        nested_first(query, "fulfillmentOrders"),
                        vars.get("after").and_then(Value::as_str),
                    );
                    return Ok(json!({"order": {"id": r["id"], "name": r["name"],
                        "fulfillments": r["fulfillments"], "fulfillmentOrders": fos}}));
                }
                let nested = if root == "order" {
                    "lineItems"
                } else {
                    "variants"
                };
                let n = first(250)?;
                let list = r[nested].as_array().cloned().unwrap_or_default();
                Ok(
                    json!({ root: { nested: page(&list, n, vars.get("after").and_then(Value::as_str)) } }),
                )
            }
            "fulfillmentOrder" => {
                let id = vars.get("id").and_then(Value::as_str).unwrap_or_default();
                let fo = self
                    .orders
                    .iter()
                    .flat_map(|o| o["fulfillmentOrders"].as_array().unwrap().iter())
                    .find(|fo| fo["id"] == id);
                let Some(fo) = fo else {
                    return Ok(json!({ root: null }));
                };
                let lines = fo["lineItems"].as_array().cloned().unwrap_or_default();
                let first = nested_first(query, "lineItems");
                Ok(
                    json!({ root: {"lineItems": page(&lines, first, vars.get("after").and_then(Value::as_str))} }),
                )
            }
            "fulfillmentCreate" => Ok(json!({ root: self.fulfil(&vars["fulfillment"]) })),
            "productVariants" => {
                let q = vars
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let wanted: Vec<String> = q
                    .split(" OR ")
                    .filter_map(|t| t.strip_prefix("sku:"))
                    .map(|s| s.trim_matches('\'').to_string())
                    .collect();
                // Shopify's search matches by prefix too: `TEE` finds `TEE-2`.
                let nodes: Vec<Value> = self
                    .products
                    .iter()
                    .flat_map(|p| p["variants"].as_array().unwrap().iter())
                    .filter(|v| {
                        let sku = v["sku"].as_str().unwrap_or_default();
                        wanted.iter().any(|w| sku.starts_with(w.as_str()))
                    })
                    .map(|v| json!({"sku": v["sku"], "inventoryItem": v["inventoryItem"]}))
                    .collect();
                let n = first(250)?;
                Ok(
                    json!({"productVariants": page(&nodes, n, vars.get("after").and_then(Value::as_str))}),
                )
            }
            "inventorySetQuantities" => Ok(json!({ root: self.set_quantities(&vars["input"]) })),
            "webhookSubscriptionCreate" => {
                let topic = vars["topic"].as_str().unwrap_or_default();
                if !TOPICS.contains(&topic) {
                    return Err(json!([graph_error(
                        &format!("Variable $topic of type WebhookSubscriptionTopic! was provided invalid value: Expected \"{topic}\" to be one of: {}", TOPICS.join(", ")),
                        "INVALID_VARIABLE"
                    )]));
                }
                let sub = &vars["webhookSubscription"];
                let url = sub["callbackUrl"].as_str().unwrap_or_default();
                let errors = if !url.starts_with("https://") {
                    vec![
                        json!({"field": ["webhookSubscription", "callbackUrl"], "message": "Address protocol http:// is not supported"}),
                    ]
                } else if self
                    .subscriptions
                    .values()
                    .any(|s| s["topic"] == topic && s["callbackUrl"] == url)
                {
                    vec![
                        json!({"field": ["webhookSubscription", "callbackUrl"], "message": "Address for this topic has already been taken"}),
                    ]
                } else {
                    vec![]
                };
                if !errors.is_empty() {
                    return Ok(
                        json!({ root: {"webhookSubscription": null, "userErrors": errors} }),
                    );
                }
                let id = self.id("WebhookSubscription");
                let made =
                    json!({"id": id, "topic": topic, "callbackUrl": url, "format": sub["format"]});
                self.subscriptions.insert(id.clone(), made);
                Ok(
                    json!({ root: {"webhookSubscription": {"id": id, "topic": topic}, "userErrors": []} }),
                )
            }
            "webhookSubscriptionDelete" => {
                let id = vars["id"].as_str().unwrap_or_default();
                match self.subscriptions.remove(id) {
                    Some(_) => {
                        Ok(json!({ root: {"deletedWebhookSubscriptionId": id, "userErrors": []} }))
                    }
                    None => Ok(json!({ root: {"deletedWebhookSubscriptionId": null,
                        "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}]} })),
                }
            }
            other => Err(json!([graph_error(
                &format!("Field '{other}' doesn't exist on type 'QueryRoot'"),
                "undefinedField"
            )])),
        }
    }

    fn fulfil(&mut self, input: &Value) -> Value {
        let refuse = |field: &[&str], message: &str| json!({"fulfillment": null, "userErrors": [{"field": field, "message": message}]});
        let Some(groups) = input["lineItemsByFulfillmentOrder"]
            .as_array()
            .filter(|g| !g.is_empty())
        else {
            return refuse(
                &["fulfillment", "lineItemsByFulfillmentOrder"],
                "Line items by fulfillment order can't be blank",
            );
        };
        if let Some(url) = input.pointer("/trackingInfo/url").and_then(Value::as_str) {
            if !url.starts_with("http") {
                return refuse(
                    &["fulfillment", "trackingInfo", "url"],
                    "Tracking url is invalid",
                );
            }
        }
        // Check everything first: a refused fulfillment changes nothing.
        let mut changes: Vec<(usize, usize, usize, u64)> = Vec::new();
        for g in groups {
            let fo_id = g["fulfillmentOrderId"].as_str().unwrap_or_default();
            let found = self.orders.iter().enumerate().find_map(|(oi, o)| {
                o["fulfillmentOrders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|fo| fo["id"] == fo_id)
                    .map(|fi| (oi, fi))
            });
            let Some((oi, fi)) = found else {
                return refuse(&["fulfillment"], "Fulfillment order does not exist.");
            };
            let fo = &self.orders[oi]["fulfillmentOrders"][fi];
            let at = fo.pointer("/assignedLocation/location/id").cloned();
            if changes.first().is_some_and(|&(o, f, _, _)| {
                self.orders[o]["fulfillmentOrders"][f]
                    .pointer("/assignedLocation/location/id")
                    .cloned()
                    != at
            }) {
                return refuse(
                    &["fulfillment"],
                    "All fulfillment orders must be assigned to the same location.",
                );
            }
            if !fo["supportedActions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["action"] == "CREATE_FULFILLMENT"))
            {
                return refuse(
                    &["fulfillment"],
                    &format!("Fulfillment order {fo_id} does not support fulfillment creation."),
                );
            }
            if !matches!(fo["status"].as_str(), Some("OPEN" | "IN_PROGRESS")) {
                return refuse(
                    &["fulfillment"],
                    &format!(
                        "Fulfillment order {fo_id} has an unfulfillable status= {}.",
                        fo["status"].as_str().unwrap().to_lowercase()
                    ),
                );
            }
            for li in g["fulfillmentOrderLineItems"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let lines = fo["lineItems"].as_array().unwrap();
                let Some(li_at) = lines.iter().position(|l| l["id"] == li["id"]) else {
                    return refuse(
                        &["fulfillment"],
                        "Fulfillment order line item does not exist.",
                    );
                };
                let q = li["quantity"].as_u64().unwrap_or(0);
                if q == 0 || q > lines[li_at]["remainingQuantity"].as_u64().unwrap() {
                    return refuse(
                        &["fulfillment"],
                        "Invalid fulfillment order line item quantity requested.",
                    );
                }
                changes.push((oi, fi, li_at, q));
            }
        }
        let id = self.id("Fulfillment");
        let tracking: Vec<Value> = input
            .get("trackingInfo")
            .filter(|t| t.is_object())
            .map(|t| vec![json!({"number": t["number"], "company": t["company"], "url": t["url"]})])
            .unwrap_or_default();
        let mut order_at = 0;
        for (oi, fi, li, q) in changes {
            order_at = oi;
            let fo = &mut self.orders[oi]["fulfillmentOrders"][fi];
            let left = fo["lineItems"][li]["remainingQuantity"].as_u64().unwrap() - q;
            fo["lineItems"][li]["remainingQuantity"] = json!(left);
            let all_done = fo["lineItems"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["remainingQuantity"] == 0);
            fo["status"] = json!(if all_done { "CLOSED" } else { "IN_PROGRESS" });
        }
        let made = json!({"id": id, "status": "SUCCESS", "trackingInfo": tracking,
            "notifyCustomer": input["notifyCustomer"]});
        self.orders[order_at]["fulfillments"]
            .as_array_mut()
            .unwrap()
            .push(made.clone());
        self.orders[order_at]["updatedAt"] = json!("2026-12-01T00:00:00Z");
        json!({"fulfillment": {"id": id, "status": "SUCCESS", "trackingInfo": tracking}, "userErrors": []})
    }

    fn set_quantities(&mut self, input: &Value) -> Value {
        let refuse = |code: &str, field: &[&str], message: &str| {
            json!({"inventoryAdjustmentGroup": null,
                "userErrors": [{"code": code, "field": field, "message": message}]})
        };
        if !matches!(input["name"].as_str(), Some("available" | "on_hand")) {
            return refuse(
                "INVALID_NAME",
                &["input", "name"],
                "The quantity name must be either 'available' or 'on_hand'.",
            );
        }
        if !REASONS.contains(&input["reason"].as_str().unwrap_or_default()) {
            return refuse("INVALID_REASON", &["input", "reason"], "The specified reason is invalid. Valid values: correction, cycle_count_available, damaged, movement_created, received, restock, safety_stock, shrinkage.");
        }
        let quantities = input["quantities"].as_array().cloned().unwrap_or_default();
        if quantities.is_empty() || quantities.len() > 250 {
            return refuse(
                "INVALID_QUANTITY",
                &["input", "quantities"],
                "Between 1 and 250 quantities may be set at once.",
            );
        }
        let compare = input["ignoreCompareQuantity"] == true;
        let mut pairs = std::collections::HashSet::new();
        if !quantities.iter().all(|q| {
            pairs.insert((
                q["inventoryItemId"].to_string(),
                q["locationId"].to_string(),
            ))
        }) {
            return refuse(
                "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                &["input", "quantities"],
                "The combination of inventoryItemId and locationId must be unique.",
            );
        }
        let items: Vec<String> = self
            .products
            .iter()
            .flat_map(|p| p["variants"].as_array().unwrap().iter())
            .filter_map(|v| {
                v.pointer("/inventoryItem/id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        for q in &quantities {
            let item = q["inventoryItemId"].as_str().unwrap_or_default();
            if !items.iter().any(|i| i == item) {
                return refuse(
                    "INVALID_INVENTORY_ITEM",
                    &["input", "quantities", "0", "inventoryItemId"],
                    "The specified inventory item could not be found.",
                );
            }
            if q["locationId"] != LOCATION {
                return refuse(
                    "INVALID_LOCATION",
                    &["input", "quantities", "0", "locationId"],
                    "The specified location could not be found.",
                );
            }
            if !compare && q.get("compareQuantity").is_none() {
                return refuse("COMPARE_QUANTITY_REQUIRED", &["input", "quantities", "0", "compareQuantity"], "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity.");
            }
            if !q["quantity"].is_i64() {
                return refuse(
                    "INVALID_QUANTITY",
                    &["input", "quantities", "0", "quantity"],
                    "The quantity must be a whole number.",
                );
            }
        }
        let mut changes = Vec::new();
        for q in quantities {
            let key = (
                q["inventoryItemId"].as_str().unwrap().to_string(),
                LOCATION.to_string(),
            );
            let to = q["quantity"].as_i64().unwrap();
            let before = self.inventory.insert(key, to).unwrap_or(0);
            changes.push(json!({"name": "available", "delta": to - before}));
        }
        let id = self.id("InventoryAdjustmentGroup");
        json!({"inventoryAdjustmentGroup": {"id": id, "reason": input["reason"], "changes": changes}, "userErrors": []})
    }
}

async fn graphql(State(shop): State<Shop>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path() != ENDPOINT {
        return reply(404, json!({"errors": "Not Found"}));
    }
    let token = shop.lock().unwrap().token.clone();
    if headers
        .get("x-shopify-access-token")
        .is_none_or(|v| v != token.as_str())
    {
        return reply(
            401,
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        );
    }
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.starts_with("application/json"))
    {
        return reply(415, json!({"errors": "Unsupported Media Type"}));
    }
    let mut store = shop.lock().unwrap();
    if let Some(status) = store.fail_next.pop_front() {
        return reply(status, json!({"errors": "Internal Server Error"}));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return reply(
            400,
            json!({"errors": {"query": "Required parameter missing or invalid"}}),
        );
    };
    let Some(query) = doc.get("query").and_then(Value::as_str) else {
        return reply(
            400,
            json!({"errors": {"query": "Required parameter missing or invalid"}}),
        );
    };
    let Some(root) = root_field(query) else {
        return reply(
            200,
            json!({"errors": [graph_error("syntax error, unexpected end of file", "parseError")]}),
        );
    };
    let vars = doc.get("variables").cloned().unwrap_or(Value::Null);
    // Cost as Shopify reckons it, roughly: a connection costs its `first` times what each of
    // its nodes holds; a mutation 10.
    let requested = query_cost(query, &vars);
    store.refill();
    if requested > 1000.0 {
        let cost = store.cost(requested, None);
        return reply(
            200,
            json!({"errors": [graph_error(
            &format!("Query cost is {requested}, which exceeds the single query max cost limit (1000)."),
            "MAX_COST_EXCEEDED")], "extensions": cost}),
        );
    }
    if store.throttle_next > 0 || requested > store.bucket {
        store.throttle_next = store.throttle_next.saturating_sub(1);
        store.throttled += 1;
        let cost = store.cost(requested, None);
        return reply(
            200,
            json!({"errors": [graph_error("Throttled", "THROTTLED")], "extensions": cost}),
        );
    }
    store.bucket -= requested;
    store.calls.push(root.clone());
    let cost = store.cost(requested, Some(requested));
    match store.run(&root, query, &vars) {
        Ok(data) => reply(200, json!({"data": data, "extensions": cost})),
        Err(errors) => reply(200, json!({"errors": errors, "extensions": cost})),
    }
}

/// A local store: its address (the key's `base_url`) and its state.
pub async fn store() -> (String, Shop) {
    store_with_token(TOKEN).await
}

/// A local store whose app has `token`.
pub async fn store_with_token(token: &str) -> (String, Shop) {
    let shop: Shop = Arc::new(Mutex::new(Store {
        orders: Vec::new(),
        products: Vec::new(),
        subscriptions: BTreeMap::new(),
        inventory: HashMap::new(),
        calls: Vec::new(),
        throttled: 0,
        throttle_next: 0,
        fail_next: VecDeque::new(),
        // The standard plan's bucket as 2025-01 reports it.
        bucket: 2000.0,
        bucket_max: 2000.0,
        restore_rate: 100.0,
        refilled: Instant::now(),
        next_id: 0,
        token: token.to_string(),
    }));
    let app = Router::new().fallback(graphql).with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), shop)
}

pub async fn key(s: &Server, base: &str, token: &str) -> Value {
    s.create(
        "/keys",
        json!({"system": "shopify", "title": "Shop", "credentials": {
            "shop_domain": "harbour.myshopify.com", "access_token": token,
            "webhook_secret": "shpss_secret", "base_url": base}}),
    )
    .await
}

/// A stream from a manual source of `function` with `params` to the sink.
async fn pull_stream(
    s: &Server,
    k: &Value,
    function: &str,
    params: Value,
    sink: &Sink,
) -> (String, String) {
    let source = s
        .create(
            "/sources",
            json!({"title": function, "system": "shopify", "function": function,
                "key_id": k["id"], "trigger": "manual", "params": params}),
        )
        .await;
    let stream = s
        .passthrough_stream(function, "sales_order", &source, &sink.url())
        .await;
    (
        stream["id"].as_str().unwrap().to_string(),
        source["id"].as_str().unwrap().to_string(),
    )
}

/// A stream to the Shopify destination `function`, fed by uploads.
async fn push_stream(s: &Server, k: &Value, function: &str, params: Value) -> String {
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "http", "function": "http.webhook",
                "trigger": "webhook", "params": {}}),
        )
        .await;
    s.stream_to(
        &source,
        json!({"title": function, "system": "shopify", "function": function,
            "key_id": k["id"], "params": params,
            "retry": {"schedule_seconds": [0, 1], "timeout_seconds": 10}}),
    )
    .await
}

async fn orders_are_read_by_cursor_then_only_what_changed(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, shop) = store().await;
    {
        let mut st = shop.lock().unwrap();
        st.orders.push(order(1001, "2026-11-20T10:00:00Z", 2));
        st.orders.push(order(1002, "2026-11-21T10:00:00Z", 60));
        st.orders.push(order(1003, "2026-11-22T10:00:00Z", 1));
        st.products
            .push(product(7, "2026-11-20T10:00:00Z", &["TEE-S", "TEE-M"]));
        // A bad gateway on the way is tried again, and the run goes on.
        st.fail_next.push_back(502);
    }
    let k = key(&s, &base, TOKEN).await;
    let (stream, source) =
        pull_stream(&s, &k, "shopify.orders", json!({"page_size": 2}), &sink).await;

    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["#1001", "#1002", "#1003"],
        "oldest first, known by name"
    );
    let big = &events[1]["payload_in"];
    let lines = big["lineItems"].as_array().unwrap();
    assert_eq!(lines.len(), 60, "every line, past the first page of 50");
    assert_eq!(lines[59]["sku"], "SKU-1002-60");
    assert_eq!(big["totalPriceSet"]["shopMoney"]["amount"], "13.95");
    assert_eq!(
        shop.lock().unwrap().calls,
        ["orders", "order", "orders"],
        "two pages of two, and the rest of #1002's lines"
    );
    assert_eq!(j["settings"]["source"]["pages"], 2, "{j}");

    // One order changes; another is saved in the same second as the newest read. The next
    // run reads both, and not #1003 again.
    {
        let mut st = shop.lock().unwrap();
        st.calls.clear();
        st.orders[0]["updatedAt"] = json!("2026-11-25T08:00:00Z");
        st.orders[0]["displayFinancialStatus"] = json!("REFUNDED");
        st.orders.push(order(1004, "2026-11-22T10:00:00Z", 1));
    }
    let job = run(&s, &stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let mut names: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["#1001", "#1004"]);
    // Nothing changed since: an empty run, which keeps the watermark.
    let job = run(&s, &stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    assert!(events_of(&s, &job).await.is_empty());
    shop.lock().unwrap().orders[2]["updatedAt"] = json!("2026-11-26T09:00:00Z");
    let job = run(&s, &stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["#1003"], "after an empty run, only what changed");

    // Products come with every variant and its inventory item.
    let (products, _) = pull_stream(&s, &k, "shopify.products", json!({}), &sink).await;
    let job = run(&s, &products).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "product-7");
    assert_eq!(
        events[0]["payload_in"]["variants"][1]["inventoryItem"]["id"],
        "gid://shopify/InventoryItem/701"
    );

    // A wrong token fails the run with Shopify's words.
    let bad = key(&s, &base, "shpat_wrong").await;
    let (status, _) = s
        .patch(&format!("/sources/{source}"), json!({"key_id": bad["id"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED", "{j}");
    let message = j["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("UNAUTHORIZED") && message.contains("Invalid API key or access token"),
        "{j}"
    );
    // A page too costly for one query (Shopify refuses over 1,000) is halved until it fits.
    let (too_big, _) = pull_stream(&s, &k, "shopify.orders", json!({"page_size": 50}), &sink).await;
    let job = run(&s, &too_big).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(
        j["settings"]["source"]["page_size"], 7,
        "50, 25, 13, then 7 fits: {j}"
    );
    assert_eq!(events_of(&s, &job).await.len(), 4);
    // Params out of Shopify's range are refused when the source is saved.
    let (status, problem) = s
        .post(
            "/sources",
            json!({"title": "x", "system": "shopify", "function": "shopify.orders",
                "key_id": k["id"], "trigger": "manual", "params": {"page_size": "many"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

async fn the_query_budget_is_waited_out(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, shop) = store().await;
    {
        let mut st = shop.lock().unwrap();
        for n in 0..6 {
            st.orders
                .push(order(2000 + n, &format!("2026-11-2{n}T10:00:00Z"), 1));
        }
        // A small bucket: each page of two costs 104 of 250, restored at 100 a second; and
        // two answers THROTTLED whatever it holds.
        st.bucket_max = 250.0;
        st.bucket = 250.0;
        st.restore_rate = 100.0;
        st.throttle_next = 2;
    }
    let k = key(&s, &base, TOKEN).await;
    let (stream, _) = pull_stream(&s, &k, "shopify.orders", json!({"page_size": 2}), &sink).await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(events_of(&s, &job).await.len(), 6);
    let waits = j["settings"]["source"]["throttled"].as_u64().unwrap();
    assert!(waits >= 3, "two THROTTLED answers and a low bucket: {j}");
    assert_eq!(
        shop.lock().unwrap().throttled,
        2,
        "the low bucket was waited for, not hit"
    );

    // A destination waits too, and its event is delivered, never failed.
    {
        let mut st = shop.lock().unwrap();
        st.throttle_next = 2;
        st.bucket_max = 1000.0;
    }
    shop.lock()
        .unwrap()
        .products
        .push(product(8, "2026-11-20T10:00:00Z", &["MUG"]));
    let stock = push_stream(
        &s,
        &k,
        "shopify.inventory",
        json!({"location_id": LOCATION}),
    )
    .await;
    let (_, events) = upload_and_wait(&s, &stock, json!([{"sku": "MUG", "available": 4}])).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    assert_eq!(
        shop.lock().unwrap().inventory[&(
            "gid://shopify/InventoryItem/800".to_string(),
            LOCATION.to_string()
        )],
        4
    );
}

async fn orders_are_fulfilled_once_with_tracking(db: Db) {
    let (_env, s) = start(db).await;
    let (base, shop) = store().await;
    {
        let mut st = shop.lock().unwrap();
        st.orders.push(order(1001, "2026-11-20T10:00:00Z", 2));
        st.orders.push(order(1002, "2026-11-20T10:00:00Z", 2));
        st.orders.push(order(1003, "2026-11-20T10:00:00Z", 1));
        st.orders.push(order(1004, "2026-11-20T10:00:00Z", 1));
        // Split between two locations: a fulfillment order each.
        let mut split = order(1005, "2026-11-20T10:00:00Z", 2);
        let mut second = split["fulfillmentOrders"][0].clone();
        let lines = second["lineItems"].as_array().unwrap().clone();
        split["fulfillmentOrders"][0]["lineItems"] = json!([lines[0]]);
        second["id"] = json!("gid://shopify/FulfillmentOrder/10052");
        second["assignedLocation"]["location"]["id"] = json!("gid://shopify/Location/72");
        second["lineItems"] = json!([lines[1]]);
        split["fulfillmentOrders"]
            .as_array_mut()
            .unwrap()
            .push(second);
        st.orders.push(split);
        // More lines than one page of them.
        st.orders.push(order(1006, "2026-11-20T10:00:00Z", 60));
        // Held by the merchant.
        let mut held = order(1007, "2026-11-20T10:00:00Z", 1);
        held["fulfillmentOrders"][0]["status"] = json!("ON_HOLD");
        st.orders.push(held);
    }
    let k = key(&s, &base, TOKEN).await;
    let stream = push_stream(
        &s,
        &k,
        "shopify.fulfillment",
        json!({"notify_customer": false}),
    )
    .await;
    let tracking = json!({"number": "JD014600006281230000", "company": "Royal Mail", "url": "https://track.example/JD014600006281230000"});
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([
            {"order_name": "#1001", "tracking": tracking},
            {"order_id": "gid://shopify/Order/1002", "line_items": [{"sku": "SKU-1002-2", "quantity": 1}],
             "tracking": {"number": "TRK-2", "company": "DPD"}},
            {"order_name": "#9999"},
            {"order_id": 1003, "line_items": [{"sku": "SKU-1003-1", "quantity": 5}]},
            {"order_id": 1003, "tracking": {"number": "X", "url": "ftp://nope"}},
            {"tracking": tracking}
        ]),
    )
    .await;
    let by = |pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .find(|e| pred(&e["payload_in"]))
            .unwrap()
            .clone()
    };
    let first = by(&|p| p["order_name"] == "#1001");
    assert_eq!(first["status"], "OK", "{first}");
    let made = first["destination_ref"].as_str().unwrap().to_string();
    assert!(made.starts_with("gid://shopify/Fulfillment/"), "{first}");
    let part = by(&|p| p["order_id"] == "gid://shopify/Order/1002");
    assert_eq!(part["status"], "OK", "{part}");
    let unknown = by(&|p| p["order_name"] == "#9999");
    assert_eq!(unknown["status"], "FAILED");
    assert_eq!(unknown["error_code"], "NOT_FOUND");
    let too_many = by(&|p| p["line_items"][0]["quantity"] == 5);
    assert_eq!(too_many["error_code"], "INVALID_SCHEMA");
    assert!(
        too_many["message"]
            .as_str()
            .unwrap()
            .contains("not enough of SKU-1003-1"),
        "{too_many}"
    );
    let refused = by(&|p| p["tracking"]["url"] == "ftp://nope");
    assert_eq!(refused["status"], "FAILED");
    assert_eq!(refused["error_code"], "INVALID_SCHEMA");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("Tracking url is invalid"),
        "{refused}"
    );
    let nameless = by(&|p| p.get("order_name").is_none() && p.get("order_id").is_none());
    assert_eq!(nameless["error_code"], "INVALID_SCHEMA");
    {
        let st = shop.lock().unwrap();
        let o1 = &st.orders[0];
        assert_eq!(o1["fulfillmentOrders"][0]["status"], "CLOSED");
        assert_eq!(o1["fulfillments"].as_array().unwrap().len(), 1);
        assert_eq!(
            o1["fulfillments"][0]["trackingInfo"][0]["number"],
            "JD014600006281230000"
        );
        assert_eq!(o1["fulfillments"][0]["notifyCustomer"], false);
        assert_eq!(
            o1["fulfillments"][0]["trackingInfo"][0]["company"],
            "Royal Mail"
        );
        assert_eq!(
            o1["fulfillments"][0]["trackingInfo"][0]["url"],
            "https://track.example/JD014600006281230000"
        );
        let o2 = &st.orders[1];
        assert_eq!(
            o2["fulfillmentOrders"][0]["status"], "IN_PROGRESS",
            "one of two lines"
        );
        assert_eq!(
            o2["fulfillmentOrders"][0]["lineItems"][1]["remainingQuantity"],
            0
        );
        assert_eq!(
            o2["fulfillmentOrders"][0]["lineItems"][0]["remainingQuantity"],
            1
        );
    }
    // The same despatch again (a replay, a duplicate callback) fulfils nothing more.
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"order_name": "#1001", "tracking": tracking}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    assert_eq!(
        events[0]["destination_ref"],
        made.as_str(),
        "the earlier fulfilment"
    );
    assert_eq!(
        shop.lock().unwrap().orders[0]["fulfillments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Another despatch for a fulfilled order is refused: nothing is left.
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"order_name": "#1001", "tracking": {"number": "NEW"}}]),
    )
    .await;
    assert_eq!(events[0]["error_code"], "INVALID_SCHEMA", "{events:?}");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("nothing left to fulfil"));

    // A server error is retried, then delivered; both attempts are on record.
    shop.lock().unwrap().fail_next.push_back(502);
    let (_, events) = upload_and_wait(&s, &stream, json!([{"order_id": 1004}])).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    let (_, attempts) = s
        .get(&format!(
            "/events/{}/attempts",
            events[0]["id"].as_str().unwrap()
        ))
        .await;
    let attempts = attempts["items"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts.iter().any(|a| a["error_code"] == "SERVER_ERROR"),
        "{attempts:?}"
    );

    // An order split between locations is fulfilled once per location; one with more lines
    // than a page has all of them fulfilled; a held one is refused, saying so.
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"order_id": 1005}, {"order_id": 1006}, {"order_id": 1007}]),
    )
    .await;
    let of = |n: u64| {
        events
            .iter()
            .find(|e| e["payload_in"]["order_id"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(of(1005)["status"], "OK", "{}", of(1005));
    assert_eq!(
        of(1005)["destination_ref"]
            .as_str()
            .unwrap()
            .split(',')
            .count(),
        2,
        "{}",
        of(1005)
    );
    assert_eq!(of(1006)["status"], "OK", "{}", of(1006));
    assert_eq!(of(1007)["error_code"], "INVALID_SCHEMA");
    assert!(
        of(1007)["message"].as_str().unwrap().contains("on_hold"),
        "{}",
        of(1007)
    );
    {
        let st = shop.lock().unwrap();
        let split = st.orders.iter().find(|o| o["name"] == "#1005").unwrap();
        assert!(split["fulfillmentOrders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|fo| fo["status"] == "CLOSED"));
        let long = st.orders.iter().find(|o| o["name"] == "#1006").unwrap();
        let fo_lines = long["fulfillmentOrders"][0]["lineItems"]
            .as_array()
            .unwrap();
        assert_eq!(fo_lines.len(), 60);
        assert!(fo_lines.iter().all(|l| l["remainingQuantity"] == 0));
    }
    // Asked again without tracking (an answer lost on the way), a fulfilled order is done.
    let before = of(1006)["destination_ref"].clone();
    let (_, events) = upload_and_wait(&s, &stream, json!([{"order_id": 1006}])).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    assert_eq!(events[0]["destination_ref"], before);

    // A wrong token: UNAUTHORIZED, final, with Shopify's words.
    let bad = key(&s, &base, "shpat_wrong").await;
    let stream = push_stream(&s, &bad, "shopify.fulfillment", json!({})).await;
    let (_, events) = upload_and_wait(&s, &stream, json!([{"order_id": 1003}])).await;
    assert_eq!(events[0]["status"], "FAILED");
    assert_eq!(events[0]["error_code"], "UNAUTHORIZED");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid API key"),
        "{events:?}"
    );
}

async fn stock_is_set_by_sku_at_a_location(db: Db) {
    let (_env, s) = start(db).await;
    let (base, shop) = store().await;
    {
        let mut st = shop.lock().unwrap();
        st.products
            .push(product(5, "2026-11-20T10:00:00Z", &["TEE", "TEE-2"]));
        st.products
            .push(product(6, "2026-11-20T10:00:00Z", &["MUG"]));
    }
    let k = key(&s, &base, TOKEN).await;
    let stream = push_stream(&s, &k, "shopify.inventory", json!({"location_id": "71"})).await;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([
            {"sku": "TEE", "available": 12},
            {"sku": "MUG", "quantity": 3},
            {"inventory_item_id": "gid://shopify/InventoryItem/501", "available": 2},
            {"sku": "NO-SUCH", "available": 1},
            {"sku": "TEE", "available": 1.5},
            {"sku": "TEE", "available": 1, "location_id": "gid://shopify/Location/999"}
        ]),
    )
    .await;
    assert_eq!(events.len(), 6);
    let st = |i: usize| events[i]["status"].as_str().unwrap().to_string();
    let code = |i: usize| {
        events[i]["error_code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let find =
        |pred: &dyn Fn(&Value) -> bool| events.iter().position(|e| pred(&e["payload_in"])).unwrap();
    assert_eq!(
        st(find(&|p| p["sku"] == "TEE" && p["available"] == 12)),
        "OK",
        "{events:?}"
    );
    assert_eq!(st(find(&|p| p["sku"] == "MUG")), "OK", "{events:?}");
    assert!(events[find(&|p| p["sku"] == "MUG")]["destination_ref"]
        .as_str()
        .unwrap()
        .starts_with("gid://shopify/InventoryAdjustmentGroup/"));
    let by_item = find(&|p| p.get("inventory_item_id").is_some());
    assert_eq!(st(by_item), "OK");
    assert_eq!(code(find(&|p| p["sku"] == "NO-SUCH")), "NOT_FOUND");
    assert_eq!(code(find(&|p| p["available"] == 1.5)), "INVALID_SCHEMA");
    let elsewhere = find(&|p| p.get("location_id").is_some());
    assert_eq!(code(elsewhere), "NOT_FOUND");
    assert!(
        events[elsewhere]["message"]
            .as_str()
            .unwrap()
            .contains("location could not be found"),
        "Shopify's userErrors: {}",
        events[elsewhere]
    );
    let inv = shop.lock().unwrap().inventory.clone();
    let at = |item: &str| {
        inv.get(&(
            format!("gid://shopify/InventoryItem/{item}"),
            LOCATION.to_string(),
        ))
        .copied()
    };
    assert_eq!(at("500"), Some(12), "TEE exactly");
    assert_eq!(
        at("501"),
        Some(2),
        "TEE-2 only by its own item id, not as a near match of TEE"
    );
    assert_eq!(at("600"), Some(3));

    // A whole job in one call (aggregate): a SKU named twice is set once, to the last level.
    let source = s
        .create(
            "/sources",
            json!({"title": "Counts", "system": "http", "function": "http.webhook",
                "trigger": "webhook", "params": {}}),
        )
        .await;
    let counts = s
        .stream_to(
            &source,
            json!({"title": "Counts", "system": "shopify", "function": "shopify.inventory",
                "key_id": k["id"], "mode": "aggregate", "params": {"location_id": "71"}}),
        )
        .await;
    let (job, _) = upload_and_wait(
        &s,
        &counts,
        json!([{"sku": "MUG", "available": 1}, {"sku": "MUG", "available": 9}]),
    )
    .await;
    let j = wait_for_job(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["counts"]["OK"], 2, "{j}");
    assert_eq!(
        shop.lock().unwrap().inventory[&(
            "gid://shopify/InventoryItem/600".to_string(),
            LOCATION.to_string()
        )],
        9
    );

    // A bad gateway: retried on the destination's schedule, then delivered.
    shop.lock().unwrap().fail_next.push_back(502);
    let (_, events) = upload_and_wait(&s, &stream, json!([{"sku": "MUG", "available": 5}])).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    let attempts = crate::engine::attempts(&s, &events[0]).await;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["error_code"], "SERVER_ERROR");

    // A wrong token: UNAUTHORIZED, final, with Shopify's words.
    let bad = key(&s, &base, "shpat_wrong").await;
    let refused = push_stream(&s, &bad, "shopify.inventory", json!({"location_id": "71"})).await;
    let (_, events) = upload_and_wait(&s, &refused, json!([{"sku": "MUG", "available": 1}])).await;
    assert_eq!(events[0]["status"], "FAILED", "{events:?}");
    assert_eq!(events[0]["error_code"], "UNAUTHORIZED");
    assert_eq!(events[0]["attempt_count"], 1, "not retried");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid API key"));

    // A reason Shopify does not know is refused with its words, final.
    let stream = push_stream(
        &s,
        &k,
        "shopify.inventory",
        json!({"location_id": "71", "reason": "because"}),
    )
    .await;
    let (_, events) = upload_and_wait(&s, &stream, json!([{"sku": "MUG", "available": 1}])).await;
    assert_eq!(events[0]["status"], "FAILED");
    assert_eq!(events[0]["error_code"], "INVALID_SCHEMA");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("reason is invalid"),
        "{events:?}"
    );
}

both_stores!(
    orders_are_read_by_cursor_then_only_what_changed,
    the_query_budget_is_waited_out,
    orders_are_fulfilled_once_with_tracking,
    stock_is_set_by_sku_at_a_location,
);
