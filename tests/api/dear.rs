//! DEAR's sales read on a schedule, sales made and fulfilled, and stock read, through a local
//! DEAR answering as its External API v2 documents: the account headers (403 "Incorrect
//! credentials!" otherwise), 60 calls in any 60 seconds per application key (429, or 503,
//! with `Retry-After: N Seconds`), error arrays (`[{"ErrorCode": 400, "Exception": …}]`),
//! `saleList` with `Page`/`Limit` (either case), `UpdatedSince` and `Status`,
//! `{Total, Page, SaleList}`, `GET /sale?ID=` for a sale in full, the fulfilment task's
//! state machine (the order authorised; pack after an authorised pick, ship after an
//! authorised pack, every packed box shipped authorises the shipment) and
//! `ref/productavailability`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::Db;
use crate::engine::{attempts, events_of, run, start, wait_for_job};
use crate::peers::Sink;

#[derive(Default)]
struct Dear {
    sales: BTreeMap<String, Value>,
    /// Sales made or changed through the API, and the orders added to them.
    written: Vec<(String, Value)>,
    /// The list calls answered, with their query; `limited` says whether the next is a 429.
    calls: Vec<BTreeMap<String, String>>,
    limited: bool,
    /// Every call's time per application key, for the limit of 60 calls in any 60 seconds.
    window: HashMap<String, VecDeque<Instant>>,
    /// How the limit is answered: 429 (as DEAR answers now) or 503 (as it documents).
    limit_status: u16,
    /// Whether the next call finds the limit used up (see `use_up_the_limit`).
    used_up: bool,
    /// Sales to fulfil, by id: `{"Order": {"Status", "Lines"}, "ShippingAddress"}`.
    orders: BTreeMap<String, Value>,
    /// Fulfilment tasks by sale id.
    tasks: BTreeMap<String, Vec<Value>>,
    /// Fulfilment calls answered: (endpoint, sale id).
    fulfil_calls: Vec<(String, String)>,
    /// One-shot failures: (endpoint, sale id, status, whether the call is done before failing).
    fail: Vec<(String, String, u16, bool)>,
    /// `ref/productavailability` rows, and the queries answered.
    stock: Vec<Value>,
    stock_calls: Vec<BTreeMap<String, String>>,
}

type DearState = Arc<Mutex<Dear>>;

fn authed(h: &HeaderMap) -> bool {
    h.get("api-auth-accountid").is_some_and(|v| v == "acct-1")
        && h.get("api-auth-applicationkey")
            .is_some_and(|v| v == "app-key")
}

/// DEAR's checks before any call: the credentials (403 as text), then 60 calls in any 60
/// seconds per application key (a 429, or 503, with `Retry-After: N Seconds`).
fn gate(d: &mut Dear, h: &HeaderMap) -> Option<axum::response::Response> {
    if !authed(h) {
        return Some((AxStatus::FORBIDDEN, "Incorrect credentials!").into_response());
    }
    let app = h["api-auth-applicationkey"].to_str().unwrap().to_string();
    let now = Instant::now();
    if std::mem::take(&mut d.used_up) {
        let then = now.checked_sub(Duration::from_secs(59)).unwrap();
        d.window
            .insert(app.clone(), std::iter::repeat_n(then, 60).collect());
    }
    let window = d.window.entry(app).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() >= 60 {
        let left = Duration::from_secs(60) - now.duration_since(window[0]);
        let wait = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let status = AxStatus::from_u16(if d.limit_status == 0 {
            429
        } else {
            d.limit_status
        })
        .unwrap();
        return Some(
            (
                status,
                [
                    ("content-type", "text/plain".to_string()),
                    ("x-ratelimit-limit", "60".into()),
                    ("x-ratelimit-remaining", "0".into()),
                    ("retry-after", format!("{wait} Seconds")),
                ],
                "You have reached 60 calls per 60 seconds API limit.",
            )
                .into_response(),
        );
    }
    window.push_back(now);
    None
}

/// As if another application on the key had made 60 calls 59 seconds before the next call
/// (whenever the client's pacing sends it): that call is refused for a second.
fn use_up_the_limit(d: &mut Dear) {
    d.used_up = true;
}

fn bad(e: &str) -> axum::response::Response {
    (
        AxStatus::BAD_REQUEST,
        axum::Json(json!([{"ErrorCode": 400, "Exception": e}])),
    )
        .into_response()
}

/// DEAR's times, written as it writes them: trailing zeros of the fraction dropped.
fn updated(day: u32, ms: u32) -> String {
    let t = format!("2026-11-{day:02}T08:00:00.{ms:03}");
    format!("{}Z", t.trim_end_matches('0').trim_end_matches('.'))
}

/// The location every line of the local DEAR is picked from.
const MAIN: &str = "Main Warehouse";
const MAIN_ID: &str = "19aeca31-bd49-4fbe-8abd-37a6169cc2cb";

/// A sale to fulfil whose order has this status and these `(SKU, quantity)` lines.
fn add_order(d: &mut Dear, id: &str, status: &str, lines: &[(&str, u32)]) {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({"ProductID": format!("p-{sku}"), "SKU": sku, "Name": format!("Product {sku}"), "Quantity": q}))
        .collect();
    d.orders.insert(
        id.to_string(),
        json!({"Order": {"Status": status, "Lines": lines},
            "ShippingAddress": {"Line1": "1 High Street", "City": "London", "Postcode": "SW1A 1AA", "Country": "United Kingdom"}}),
    );
}

/// A failure set with `fail`: a server error, or (given 200) DEAR's error model with a 200,
/// as some of its answers come.
fn server_error(status: u16) -> axum::response::Response {
    if status == 200 {
        return axum::Json(
            json!([{"ErrorCode": 400, "Exception": "Sale is being edited by another user"}]),
        )
        .into_response();
    }
    (
        AxStatus::from_u16(status).unwrap(),
        "An unexpected error occurred.",
    )
        .into_response()
}

/// The one-shot failure set for this endpoint and sale: (status, whether done first).
fn failure(d: &mut Dear, endpoint: &str, sale: &str) -> Option<(u16, bool)> {
    let i = d
        .fail
        .iter()
        .position(|(e, s, _, _)| e == endpoint && s == sale)?;
    let (_, _, status, first) = d.fail.remove(i);
    Some((status, first))
}

fn wrapper(d: &Dear, sale: &str) -> Value {
    json!({"SaleID": sale, "Fulfilments": d.tasks.get(sale).cloned().unwrap_or_default()})
}

/// `GET /sale/fulfilment?SaleID=`: the sale's tasks.
async fn read_tasks(
    State(d): State<DearState>,
    h: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    let mut d = d.lock().unwrap();
    if let Some(refused) = gate(&mut d, &h) {
        return refused;
    }
    // The key is `SaleID`, not `ID`.
    let Some(sale) = q
        .get("SaleID")
        .filter(|s| d.orders.contains_key(*s))
        .cloned()
    else {
        return bad("Sale not found");
    };
    d.fulfil_calls.push(("GET fulfilment".into(), sale.clone()));
    if let Some((status, _)) = failure(&mut d, "GET fulfilment", &sale) {
        return server_error(status);
    }
    axum::Json(wrapper(&d, &sale)).into_response()
}

/// `POST /sale/fulfilment`: a new task, when the order is authorised and every other task
/// is picked.
async fn create_task(
    State(d): State<DearState>,
    h: HeaderMap,
    axum::Json(b): axum::Json<Value>,
) -> axum::response::Response {
    let mut d = d.lock().unwrap();
    if let Some(refused) = gate(&mut d, &h) {
        return refused;
    }
    let Some(sale) = b["SaleID"]
        .as_str()
        .filter(|s| d.orders.contains_key(*s))
        .map(str::to_string)
    else {
        return bad("Sale not found");
    };
    if d.orders[&sale]["Order"]["Status"] != "AUTHORISED" {
        return bad("Sale Order is not authorised");
    }
    let tasks = d.tasks.get(&sale).cloned().unwrap_or_default();
    if tasks
        .iter()
        .any(|t| t["Pick"]["Status"] != "AUTHORISED" && t["Pick"]["Status"] != "VOIDED")
    {
        return bad("New Fulfilment Task can not be created while another task is not picked");
    }
    d.fulfil_calls
        .push(("POST fulfilment".into(), sale.clone()));
    let fail = failure(&mut d, "POST fulfilment", &sale);
    if let Some((status, false)) = fail {
        return server_error(status);
    }
    let n = d.tasks.values().map(Vec::len).sum::<usize>() + 1;
    let task = json!({
        "TaskID": format!("cde5fb4a-1dac-4e9a-bc33-{n:012}"),
        "FulfillmentNumber": tasks.len() + 1,
        "LinkedInvoiceNumber": null,
        "FulFilmentStatus": "NOT FULFILLED",
        "Pick": {"Status": "DRAFT", "Lines": []},
        "Pack": {"Status": "NOT AVAILABLE", "Lines": []},
        "Ship": {"Status": "NOT AVAILABLE", "RequireBy": null,
            "ShippingAddress": d.orders[&sale]["ShippingAddress"].clone(), "ShippingNotes": "", "Lines": []},
    });
    d.tasks.entry(sale.clone()).or_default().push(task);
    if let Some((status, true)) = fail {
        return server_error(status);
    }
    axum::Json(wrapper(&d, &sale)).into_response()
}

/// What is wrong with a pick or pack line, as DEAR checks it.
fn line_problem(l: &Value, pack: bool) -> Option<String> {
    if l["SKU"].as_str().is_none_or(str::is_empty) {
        return Some("Line SKU is required".into());
    }
    if l["Quantity"].as_f64().is_none_or(|q| q < 1.0) {
        return Some(format!("Quantity of {}: minimal value is 1", l["SKU"]));
    }
    if l["Location"].as_str().is_none_or(str::is_empty)
        && l["LocationID"].as_str().is_none_or(str::is_empty)
    {
        return Some(format!("Location of {} is required", l["SKU"]));
    }
    if pack && l["Box"].as_str().is_none_or(str::is_empty) {
        return Some(format!("Box of {} is required", l["SKU"]));
    }
    None
}

/// Quantities by SKU of a stage's lines.
fn by_sku(lines: &[Value]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in lines {
        *out.entry(l["SKU"].as_str().unwrap_or_default().to_string())
            .or_default() += l["Quantity"].as_f64().unwrap_or(0.0);
    }
    out
}

/// `POST` (adds lines) or `PUT` (replaces them) `/sale/fulfilment/{pick,pack,ship}`, with
/// the state machine DEAR documents: pack needs the pick authorised, ship the pack.
async fn stage(
    kind: &'static str,
    replace: bool,
    d: DearState,
    h: HeaderMap,
    b: Value,
) -> axum::response::Response {
    let mut d = d.lock().unwrap();
    if let Some(refused) = gate(&mut d, &h) {
        return refused;
    }
    let task_id = b["TaskID"].as_str().unwrap_or_default().to_string();
    let found = d.tasks.iter().find_map(|(sale, tasks)| {
        tasks
            .iter()
            .position(|t| t["TaskID"] == task_id.as_str())
            .map(|i| (sale.clone(), i))
    });
    let Some((sale, i)) = found else {
        return bad("Fulfilment task not found");
    };
    if d.orders[&sale]["Order"]["Status"] != "AUTHORISED" {
        return bad("Sale Order is not authorised");
    }
    let verb = if replace { "PUT" } else { "POST" };
    d.fulfil_calls
        .push((format!("{verb} {kind}"), sale.clone()));
    let fail = failure(&mut d, kind, &sale);
    if let Some((status, false)) = fail {
        return server_error(status);
    }
    let mut task = d.tasks[&sale][i].clone();
    let given = b["Lines"].as_array().cloned().unwrap_or_default();
    let answer = match kind {
        "pick" => {
            if !matches!(
                task["Pick"]["Status"].as_str(),
                Some("DRAFT" | "NOT AVAILABLE")
            ) {
                return bad("Pick can not be changed: it is authorised");
            }
            let (status, mut lines) = if b["AutoPickMode"] == "AUTOPICK" {
                let mut left = by_sku(d.orders[&sale]["Order"]["Lines"].as_array().unwrap());
                for t in &d.tasks[&sale] {
                    if t["Pick"]["Status"] == "AUTHORISED" {
                        for (sku, q) in by_sku(t["Pick"]["Lines"].as_array().unwrap()) {
                            *left.entry(sku).or_default() -= q;
                        }
                    }
                }
                let lines: Vec<Value> = left
                    .into_iter()
                    .filter(|(_, q)| *q > 0.0)
                    .map(|(sku, q)| json!({"ProductID": format!("p-{sku}"), "SKU": sku, "Name": format!("Product {sku}"),
                        "Location": MAIN, "LocationID": MAIN_ID, "Quantity": q, "BatchSN": null, "ExpiryDate": null}))
                    .collect();
                if lines.is_empty() {
                    return bad("There is nothing left to pick");
                }
                ("AUTHORISED", lines)
            } else {
                let Some(status @ ("DRAFT" | "AUTHORISED")) = b["Status"].as_str() else {
                    return bad("Pick Status should be DRAFT or AUTHORISED");
                };
                if let Some(p) = given.iter().find_map(|l| line_problem(l, false)) {
                    return bad(&p);
                }
                (status, given)
            };
            if !replace && b["AutoPickMode"] != "AUTOPICK" {
                let mut all = task["Pick"]["Lines"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                all.append(&mut lines);
                lines = all;
            }
            for l in lines.iter_mut() {
                l["NonInventory"] = json!(false);
            }
            task["Pick"] = json!({"Status": status, "Lines": lines});
            if status == "AUTHORISED" && task["Pack"]["Status"] == "NOT AVAILABLE" {
                task["Pack"]["Status"] = json!("DRAFT");
            }
            json!({"TaskID": task_id, "Status": status, "Lines": task["Pick"]["Lines"]})
        }
        "pack" => {
            if task["Pick"]["Status"] != "AUTHORISED" {
                return bad("Pack is not possible: Pick is not authorised");
            }
            if !matches!(
                task["Pack"]["Status"].as_str(),
                Some("DRAFT" | "NOT AVAILABLE")
            ) {
                return bad("Pack can not be changed: it is authorised");
            }
            let Some(status @ ("DRAFT" | "AUTHORISED")) = b["Status"].as_str() else {
                return bad("Pack Status should be DRAFT or AUTHORISED");
            };
            if let Some(p) = given.iter().find_map(|l| line_problem(l, true)) {
                return bad(&p);
            }
            let mut lines = if replace {
                Vec::new()
            } else {
                task["Pack"]["Lines"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            };
            lines.extend(given);
            let picked = by_sku(task["Pick"]["Lines"].as_array().unwrap());
            for (sku, q) in by_sku(&lines) {
                if q > picked.get(&sku).copied().unwrap_or(0.0) {
                    return bad(&format!("More {sku} packed than picked"));
                }
            }
            for l in lines.iter_mut() {
                l["NonInventory"] = json!(false);
            }
            task["Pack"] = json!({"Status": status, "Lines": lines});
            if status == "AUTHORISED" && task["Ship"]["Status"] == "NOT AVAILABLE" {
                task["Ship"]["Status"] = json!("DRAFT");
            }
            json!({"TaskID": task_id, "Status": status, "Lines": task["Pack"]["Lines"]})
        }
        _ => {
            if task["Pack"]["Status"] != "AUTHORISED" {
                return bad("Shipping is not possible: PackStatus is not AUTHORISED");
            }
            if matches!(
                task["Ship"]["Status"].as_str(),
                Some("AUTHORISED" | "PARTIALLY AUTHORISED")
            ) {
                return bad("Shipment is authorised already");
            }
            let Some(status @ ("DRAFT" | "PARTIALLY AUTHORISED" | "AUTHORISED")) =
                b["Status"].as_str()
            else {
                return bad("Ship Status should be DRAFT, PARTIALLY AUTHORISED or AUTHORISED");
            };
            let boxes: Vec<String> = task["Pack"]["Lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["Box"].as_str().unwrap().to_string())
                .collect();
            let mut lines = if replace {
                Vec::new()
            } else {
                task["Ship"]["Lines"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            };
            for l in &given {
                let date = l["ShipmentDate"].as_str().unwrap_or_default();
                let dated = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
                    || chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok();
                if !dated {
                    return bad("ShipmentDate is required");
                }
                let name = l["Box"].as_str().unwrap_or_default();
                if !boxes.iter().any(|b| b == name) {
                    return bad(&format!("Box '{name}' is not packed"));
                }
                let n = lines.len() + 1;
                lines.push(
                    json!({"ID": format!("51fbd688-47ab-469c-a585-{n:012}"), "ShipmentDate": date,
                    "Carrier": l["Carrier"], "Boxes": name, "TrackingNumber": l["TrackingNumber"],
                    "TrackingURL": l["TrackingURL"], "IsShipped": l["IsShipped"]}),
                );
            }
            let all = boxes
                .iter()
                .all(|b| lines.iter().any(|l| l["Boxes"] == b.as_str()));
            let now = match status {
                "AUTHORISED" if all => "AUTHORISED",
                "DRAFT" => "DRAFT",
                _ => "PARTIALLY AUTHORISED",
            };
            task["Ship"]["Status"] = json!(now);
            task["Ship"]["Lines"] = json!(lines);
            for f in ["RequireBy", "ShippingNotes", "ShippingAddress"] {
                if let Some(v) = b.get(f) {
                    task["Ship"][f] = v.clone();
                }
            }
            if now == "AUTHORISED" {
                task["FulFilmentStatus"] = json!("FULFILLED");
            }
            let mut ship = task["Ship"].clone();
            ship["TaskID"] = json!(task_id);
            ship
        }
    };
    d.tasks.get_mut(&sale).unwrap()[i] = task;
    if let Some((status, true)) = fail {
        return server_error(status);
    }
    axum::Json(answer).into_response()
}

/// `GET /ref/productavailability`: `Page` (from 1), `Limit` (1 to 1000), `Location` (a name)
/// and `Sku` (exact); `{Total, Page, ProductAvailabilityList}`.
async fn availability(
    State(d): State<DearState>,
    h: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    let mut d = d.lock().unwrap();
    if let Some(refused) = gate(&mut d, &h) {
        return refused;
    }
    let q: BTreeMap<String, String> = q.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    d.stock_calls.push(q.clone());
    let page: usize = match q.get("page").map(|p| p.parse()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return bad("Page should be greater than 0"),
    };
    let limit: usize = match q.get("limit").map(|p| p.parse()) {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l,
        _ => return bad("Limit should be between 1 and 1000"),
    };
    if q.get("sku").is_some_and(|s| s.chars().count() > 50) {
        return bad("Sku should not be longer than 50 characters");
    }
    if let Some((status, _)) = failure(&mut d, "stock", &page.to_string()) {
        return server_error(status);
    }
    let rows: Vec<&Value> = d
        .stock
        .iter()
        .filter(|r| {
            q.get("location")
                .is_none_or(|l| r["Location"] == l.as_str())
        })
        .filter(|r| q.get("sku").is_none_or(|s| r["SKU"] == s.as_str()))
        .collect();
    let list: Vec<&Value> = rows
        .iter()
        .skip((page - 1) * limit)
        .take(limit)
        .copied()
        .collect();
    axum::Json(json!({"Total": rows.len(), "Page": page, "ProductAvailabilityList": list}))
        .into_response()
}

async fn dear() -> (String, DearState) {
    let state: DearState = Arc::default();
    {
        let mut d = state.lock().unwrap();
        d.limited = true;
        for i in 1..=230u32 {
            let id = format!("5b4e5f8c-0000-4c1e-9a3e-{i:012}");
            d.sales.insert(
                id.clone(),
                json!({"SaleID": id, "OrderNumber": format!("SO-{i:05}"),
                    "Status": if i % 2 == 0 { "ORDERED" } else { "INVOICED" },
                    "Customer": "Rock Star Transport", "Updated": updated(1 + i % 20, i % 1000)}),
            );
        }
    }
    let app = Router::new()
        .route(
            "/ExternalApi/v2/saleList",
            get(|State(d): State<DearState>, h: HeaderMap, Query(q): Query<BTreeMap<String, String>>| async move {
                if let Some(refused) = gate(&mut d.lock().unwrap(), &h) {
                    return refused;
                }
                let mut d = d.lock().unwrap();
                if std::mem::take(&mut d.limited) {
                    return (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "1")],
                        axum::Json(json!([{"ErrorCode": 429, "Exception": "You reached 60 calls per minute API limit."}])))
                        .into_response();
                }
                // Parameter names in either case.
                let q: BTreeMap<String, String> = q.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
                d.calls.push(q.clone());
                let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
                let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(100).clamp(1, 1000);
                let since = q.get("updatedsince").cloned();
                let matching: Vec<Value> = d
                    .sales
                    .values()
                    .filter(|s| since.as_deref().is_none_or(|t| {
                        let at = s["Updated"].as_str().unwrap();
                        let parse = |x: &str| chrono::NaiveDateTime::parse_from_str(x.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f").unwrap();
                        parse(at) > parse(t)
                    }))
                    .filter(|s| q.get("status").is_none_or(|st| s["Status"] == st.as_str()))
                    .cloned()
                    .collect();
                let total = matching.len();
                let list: Vec<Value> = matching.into_iter().skip((page - 1) * limit).take(limit).collect();
                axum::Json(json!({"Total": total, "Page": page, "SaleList": list})).into_response()
            }),
        )
        .route(
            "/ExternalApi/v2/sale",
            get(|State(d): State<DearState>, h: HeaderMap, Query(q): Query<BTreeMap<String, String>>| async move {
                if let Some(refused) = gate(&mut d.lock().unwrap(), &h) {
                    return refused;
                }
                let d = d.lock().unwrap();
                match q.get("ID").and_then(|id| d.sales.get(id)) {
                    Some(s) => axum::Json(json!({"ID": s["SaleID"], "Customer": s["Customer"], "Status": s["Status"],
                        "Order": {"SaleOrderNumber": s["OrderNumber"], "Lines": [{"SKU": "A-1", "Quantity": 2, "Price": 9.5}]}}))
                        .into_response(),
                    None => (AxStatus::BAD_REQUEST, axum::Json(json!([{"ErrorCode": 400, "Exception": "Sale not found"}]))).into_response(),
                }
            }),
        )
        .route(
            "/ExternalApi/v2/sale",
            axum::routing::post(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                if let Some(refused) = gate(&mut d.lock().unwrap(), &h) {
                    return refused;
                }
                let bad = |e: &str| (AxStatus::BAD_REQUEST, axum::Json(json!([{"ErrorCode": 400, "Exception": e}]))).into_response();
                if b.get("Customer").is_none() && b.get("CustomerID").is_none() {
                    return bad("Customer is required.");
                }
                if b["Location"] != "Main Warehouse" {
                    return bad(&format!("Location '{}' does not exist.", b["Location"].as_str().unwrap_or("")));
                }
                let mut d = d.lock().unwrap();
                let id = format!("7c1e2f3a-0000-4000-8000-{:012}", d.written.len() + 1);
                let mut sale = b.clone();
                sale["ID"] = json!(id);
                d.written.push(("POST sale".into(), sale.clone()));
                d.sales.insert(id, sale.clone());
                axum::Json(sale).into_response()
            })
            .put(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                if let Some(refused) = gate(&mut d.lock().unwrap(), &h) {
                    return refused;
                }
                let mut d = d.lock().unwrap();
                let id = b["ID"].as_str().unwrap_or_default().to_string();
                let Some(sale) = d.sales.get_mut(&id) else {
                    return (AxStatus::BAD_REQUEST, axum::Json(json!([{"ErrorCode": 400, "Exception": "Sale not found"}]))).into_response();
                };
                for (k, v) in b.as_object().unwrap() {
                    sale[k] = v.clone();
                }
                let sale = sale.clone();
                d.written.push(("PUT sale".into(), b));
                axum::Json(sale).into_response()
            }),
        )
        .route(
            "/ExternalApi/v2/sale/order",
            axum::routing::post(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                if let Some(refused) = gate(&mut d.lock().unwrap(), &h) {
                    return refused;
                }
                let bad = |e: &str| (AxStatus::BAD_REQUEST, axum::Json(json!([{"ErrorCode": 400, "Exception": e}]))).into_response();
                let mut d = d.lock().unwrap();
                let Some(sale) = b["SaleID"].as_str().and_then(|id| d.sales.get(id)).cloned() else {
                    return bad("Sale not found");
                };
                if !matches!(b["Status"].as_str(), Some("DRAFT") | Some("AUTHORISED")) {
                    return bad("Status should be DRAFT or AUTHORISED.");
                }
                if sale["SkipQuote"] != true {
                    return bad("Sale Quote should be authorised before creating Sale Order.");
                }
                d.written.push(("POST sale/order".into(), b.clone()));
                axum::Json(b).into_response()
            }),
        )
        .route("/ExternalApi/v2/sale/fulfilment", get(read_tasks).post(create_task))
        .route(
            "/ExternalApi/v2/sale/fulfilment/pick",
            axum::routing::post(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("pick", false, d, h, b))
                .put(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("pick", true, d, h, b)),
        )
        .route(
            "/ExternalApi/v2/sale/fulfilment/pack",
            axum::routing::post(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("pack", false, d, h, b))
                .put(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("pack", true, d, h, b)),
        )
        .route(
            "/ExternalApi/v2/sale/fulfilment/ship",
            axum::routing::post(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("ship", false, d, h, b))
                .put(|State(d): State<DearState>, h: HeaderMap, axum::Json(b): axum::Json<Value>| stage("ship", true, d, h, b)),
        )
        .route("/ExternalApi/v2/ref/productavailability", get(availability))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/ExternalApi/v2"), state)
}

async fn sales_are_read_by_updated_since_within_the_limit(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, dear) = dear().await;
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key", "base_url": base}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream = s
        .passthrough_stream("DEAR sales", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();

    // All 230, after waiting out one 429, in three pages of 100.
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 230);
    // Known by the sale id, as DEAR's webhooks know it (one history for both).
    assert!(events
        .iter()
        .any(|e| e["entity_id"] == "5b4e5f8c-0000-4c1e-9a3e-000000000042"
            && e["payload_in"]["OrderNumber"] == "SO-00042"));
    let newest = {
        let mut d = dear.lock().unwrap();
        assert_eq!(d.calls.len(), 3);
        assert_eq!(d.calls[2].get("page").map(String::as_str), Some("3"));
        assert!(d.calls.iter().all(|c| !c.contains_key("updatedsince")));
        d.calls.clear();
        // Two sales change after the newest the run saw.
        for i in [7u32, 99] {
            let id = format!("5b4e5f8c-0000-4c1e-9a3e-{i:012}");
            d.sales.get_mut(&id).unwrap()["Updated"] = json!("2026-11-30T09:00:00.5Z");
        }
        // The newest `Updated` before the change: day 20, and the largest fraction there.
        d.sales
            .values()
            .filter(|s| s["Updated"].as_str().unwrap().starts_with("2026-11-20"))
            .map(|s| s["Updated"].as_str().unwrap().to_string())
            .max_by_key(|u| {
                chrono::NaiveDateTime::parse_from_str(
                    u.trim_end_matches('Z'),
                    "%Y-%m-%dT%H:%M:%S%.f",
                )
                .unwrap()
            })
            .unwrap()
    };
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let mut numbers: Vec<&str> = events
        .iter()
        .map(|e| e["payload_in"]["OrderNumber"].as_str().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["SO-00007", "SO-00099"]);
    {
        let d = dear.lock().unwrap();
        let since = d.calls[0].get("updatedsince").unwrap();
        // Written as DEAR's parameters are: milliseconds, no zone.
        let want = chrono::NaiveDateTime::parse_from_str(
            newest.trim_end_matches('Z'),
            "%Y-%m-%dT%H:%M:%S%.f",
        )
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
        assert_eq!(since, &want);
    }

    // In full, and only one status: the sale as `GET /sale` answers it.
    let full = s
        .create(
            "/sources",
            json!({"title": "DEAR ordered", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual",
                "params": {"status": "ORDERED", "full": true, "since": "2026-11-30T00:00:00"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("DEAR ordered", "sales_order", &full, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 0, "SO-00007 and SO-00099 are INVOICED");
    {
        let mut d = dear.lock().unwrap();
        let id = format!("5b4e5f8c-0000-4c1e-9a3e-{:012}", 8);
        d.sales.get_mut(&id).unwrap()["Updated"] = json!("2026-11-30T10:00:00Z");
    }
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["entity_id"],
        "5b4e5f8c-0000-4c1e-9a3e-000000000008"
    );
    assert_eq!(events[0]["payload_in"]["OrderNumber"], "SO-00008");
    assert_eq!(events[0]["payload_in"]["Order"]["Lines"][0]["SKU"], "A-1");

    // Wrong credentials fail the run with DEAR's answer.
    let bad = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "wrong", "base_url": base}}),
        )
        .await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"]}),
    )
    .await;
    let stream = s
        .passthrough_stream("DEAR bad", "sales_order", &source, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Incorrect credentials!"),
        "{j}"
    );
}

async fn sales_are_created_updated_and_ordered(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    dear.lock().unwrap().limited = false;
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key", "base_url": base}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sale",
                "key_id": key["id"], "params": {}, "retry": {"schedule_seconds": [0], "timeout_seconds": 10}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "To DEAR", "data_type": "sales_order", "source_id": source["id"],
                "transformation_id": crate::common::PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    let existing = "5b4e5f8c-0000-4c1e-9a3e-000000000005";
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        stream["id"].as_str().unwrap(),
        json!([
            {"Customer": "Cash Customer", "Location": "Main Warehouse", "CustomerReference": "#1042",
             "Order": {"Lines": [{"SKU": "A-1", "Name": "Bread", "Quantity": 2, "Price": 9.5, "Tax": 0, "TaxRule": "Tax Exempt"}]}},
            {"ID": existing, "Note": "Gift wrap"},
            {"ID": "00000000-0000-0000-0000-000000000000", "Note": "lost"},
            {"Customer": "No Location"},
            {"Customer": "Elsewhere", "Location": "Nowhere"}
        ]),
    )
    .await;
    let by = |needle: &str| {
        events
            .iter()
            .find(|e| e["payload_in"].to_string().contains(needle))
            .unwrap()
            .clone()
    };
    assert_eq!(by("#1042")["status"], "OK", "{}", by("#1042"));
    assert_eq!(by("Gift wrap")["status"], "OK");
    assert_eq!(by("lost")["error_code"], "NOT_FOUND");
    assert!(by("lost")["message"]
        .as_str()
        .unwrap()
        .contains("Sale not found"));
    assert_eq!(by("No Location")["error_code"], "INVALID_SCHEMA");
    let elsewhere = by("Elsewhere");
    assert_eq!(elsewhere["error_code"], "INVALID_SCHEMA");
    assert!(elsewhere["message"]
        .as_str()
        .unwrap()
        .contains("'Nowhere' does not exist"));
    let d = dear.lock().unwrap();
    let kinds: Vec<&str> = d.written.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "POST sale").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "PUT sale").count(), 1);
    let (_, created) = d.written.iter().find(|(k, _)| k == "POST sale").unwrap();
    assert_eq!(
        created["SkipQuote"], true,
        "so the order can be added at once"
    );
    assert!(
        created.get("Order").is_none(),
        "the order goes on its own call"
    );
    let (_, order) = d
        .written
        .iter()
        .find(|(k, _)| k == "POST sale/order")
        .unwrap();
    assert_eq!(order["SaleID"], created["ID"]);
    assert_eq!(order["Status"], "AUTHORISED");
    assert_eq!(order["Lines"][0]["SKU"], "A-1");
    assert_eq!(d.sales[existing]["Note"], "Gift wrap");
}

async fn dear_sale_from_a_shopify_order_through_the_library(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    dear.lock().unwrap().limited = false;
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key", "base_url": base}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Shopify orders", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sale",
                "key_id": key["id"], "params": {}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Shopify to DEAR", "data_type": "sales_order", "source_id": source["id"],
                "transformation_id": "01900000-0000-7000-8000-000000000009", "destination_id": destination["id"],
                "settings": {"location": "Main Warehouse", "tax_rule": "20% (VAT on Income)"}}),
        )
        .await;
    let order: Value = serde_json::from_str(include_str!(
        "../../src/transform/library/samples/shopify_order.json"
    ))
    .unwrap();
    let (_, events) =
        crate::engine::upload_and_wait(&s, stream["id"].as_str().unwrap(), json!([order])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let d = dear.lock().unwrap();
    let (_, sale) = d.written.iter().find(|(k, _)| k == "POST sale").unwrap();
    assert_eq!(sale["CustomerReference"], "#1042");
    assert_eq!(sale["Location"], "Main Warehouse");
    assert_eq!(sale["SkipQuote"], true);
    let (_, placed) = d
        .written
        .iter()
        .find(|(k, _)| k == "POST sale/order")
        .unwrap();
    assert_eq!(placed["SaleID"], sale["ID"]);
    assert_eq!(placed["Status"], "AUTHORISED");
    let skus: Vec<&str> = placed["Lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["SKU"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["TEE-BLU-M", "TOTE-HBR"]);
    assert_eq!(placed["AdditionalCharges"][0]["Price"], 3.95);
}

/// A DEAR key, a `dear.fulfilment` destination with it (retried twice, at once unless DEAR
/// asks to wait) and a stream to it that takes uploads: the stream's id.
async fn fulfilment_stream(s: &crate::common::Server, base: &str, application_key: &str) -> String {
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": application_key, "base_url": base}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Shipments", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR fulfilment", "system": "dear", "function": "dear.fulfilment",
                "key_id": key["id"], "params": {}, "retry": {"schedule_seconds": [0, 0], "timeout_seconds": 10}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Ship in DEAR", "data_type": "shipment", "source_id": source["id"],
                "transformation_id": crate::common::PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

/// The upload's event for this sale.
fn event_of<'a>(events: &'a [Value], sale: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["payload_in"]["SaleID"] == sale)
        .unwrap()
}

fn calls_for(d: &Dear, sale: &str) -> Vec<String> {
    d.fulfil_calls
        .iter()
        .filter(|(_, s)| s == sale)
        .map(|(c, _)| c.clone())
        .collect()
}

const S1: &str = "916ab4c0-6ccb-4c93-873d-000000000001";
const S2: &str = "916ab4c0-6ccb-4c93-873d-000000000002";
const S3: &str = "916ab4c0-6ccb-4c93-873d-000000000003";
const S4: &str = "916ab4c0-6ccb-4c93-873d-000000000004";
const S5: &str = "916ab4c0-6ccb-4c93-873d-000000000005";
const S6: &str = "916ab4c0-6ccb-4c93-873d-000000000006";
const S7: &str = "916ab4c0-6ccb-4c93-873d-000000000007";

async fn dear_fulfilment_picks_packs_and_ships(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        add_order(
            &mut d,
            S1,
            "AUTHORISED",
            &[("TEE-BLU-M", 2), ("TOTE-HBR", 1)],
        );
        add_order(
            &mut d,
            S2,
            "AUTHORISED",
            &[("TEE-BLU-M", 3), ("TOTE-HBR", 2)],
        );
        add_order(&mut d, S3, "DRAFT", &[("TEE-BLU-M", 1)]);
        add_order(&mut d, S4, "AUTHORISED", &[("TOTE-HBR", 1)]);
        add_order(&mut d, S6, "AUTHORISED", &[("TOTE-HBR", 1)]);
        d.fail
            .push(("GET fulfilment".into(), S6.into(), 200, false));
    }
    let stream = fulfilment_stream(&s, &base, "app-key").await;
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([
            // Autopick, everything in one box, one parcel.
            {"SaleID": S1, "ship": {"ShippingNotes": "Leave with neighbour", "Lines": [
                {"Carrier": "Royal Mail", "TrackingNumber": "RM123456785GB",
                 "TrackingURL": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
                 "ShipmentDate": "2026-11-30"}]}},
            // Part of the order picked as given, in two boxes; one tracking number for both.
            {"SaleID": S2,
             "pick": {"Lines": [{"SKU": "TEE-BLU-M", "Quantity": 2, "Location": "Main Warehouse"},
                                {"SKU": "TOTE-HBR", "Quantity": 1, "Location": "Main Warehouse"}]},
             "pack": {"Lines": [{"SKU": "TEE-BLU-M", "Quantity": 2, "Location": "Main Warehouse", "Box": "Box A"},
                                {"SKU": "TOTE-HBR", "Quantity": 1, "Location": "Main Warehouse", "Box": "Box B"}]},
             "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "15501234567890"}]}},
            // DEAR's refusals: the order is not authorised; an unknown sale; a box never packed.
            {"SaleID": S3, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "1"}]}},
            {"SaleID": "00000000-0000-0000-0000-000000000000"},
            {"SaleID": S4, "pack": {"Box": "Carton 1"}, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "2", "Box": "Carton 9"}]}},
            // A refusal that comes with a 200.
            {"SaleID": S6},
            // Refused before any call: not a fulfilment.
            {"SaleID": S5, "pick": "by hand"}
        ]),
    )
    .await;
    let one = event_of(&events, S1);
    assert_eq!(one["status"], "OK", "{one}");
    assert_eq!(one["attempt_count"], 1);
    let two = event_of(&events, S2);
    assert_eq!(two["status"], "OK", "{two}");
    let draft = event_of(&events, S3);
    assert_eq!(draft["status"], "FAILED");
    assert_eq!(draft["error_code"], "INVALID_SCHEMA");
    assert_eq!(draft["attempt_count"], 1, "a refusal is not retried");
    assert!(
        draft["message"]
            .as_str()
            .unwrap()
            .contains("Sale Order is not authorised"),
        "{draft}"
    );
    let unknown = event_of(&events, "00000000-0000-0000-0000-000000000000");
    assert_eq!(unknown["status"], "FAILED");
    assert_eq!(unknown["error_code"], "NOT_FOUND");
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("Sale not found"));
    let unpacked = event_of(&events, S4);
    assert_eq!(unpacked["error_code"], "INVALID_SCHEMA");
    assert_eq!(unpacked["attempt_count"], 1);
    assert!(
        unpacked["message"]
            .as_str()
            .unwrap()
            .contains("Box 'Carton 9' is not packed"),
        "{unpacked}"
    );
    let refused_in_200 = event_of(&events, S6);
    assert_eq!(refused_in_200["status"], "FAILED");
    assert_eq!(refused_in_200["error_code"], "INVALID_SCHEMA");
    assert!(
        refused_in_200["message"]
            .as_str()
            .unwrap()
            .contains("Sale is being edited by another user"),
        "{refused_in_200}"
    );
    let by_hand = events
        .iter()
        .find(|e| e["payload_in"]["pick"] == "by hand")
        .unwrap();
    assert_eq!(by_hand["error_code"], "INVALID_SCHEMA");
    assert!(by_hand["message"].as_str().unwrap().contains("`pick`"));

    {
        let d = dear.lock().unwrap();
        assert_eq!(
            calls_for(&d, S1),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "POST ship"
            ]
        );
        let task = &d.tasks[S1][0];
        assert_eq!(task["FulFilmentStatus"], "FULFILLED");
        assert_eq!(task["Pick"]["Status"], "AUTHORISED");
        assert_eq!(
            task["Pick"]["Lines"].as_array().unwrap().len(),
            2,
            "autopicked"
        );
        assert_eq!(task["Pack"]["Status"], "AUTHORISED");
        let packed = task["Pack"]["Lines"].as_array().unwrap();
        assert!(
            packed
                .iter()
                .all(|l| l["Box"] == "Box 1" && l["Location"] == MAIN),
            "{packed:?}"
        );
        assert_eq!(by_sku(packed)["TEE-BLU-M"], 2.0);
        assert_eq!(task["Ship"]["Status"], "AUTHORISED");
        assert_eq!(task["Ship"]["ShippingNotes"], "Leave with neighbour");
        assert_eq!(
            task["Ship"]["Lines"],
            json!([{"ID": "51fbd688-47ab-469c-a585-000000000001", "ShipmentDate": "2026-11-30",
                "Carrier": "Royal Mail", "Boxes": "Box 1", "TrackingNumber": "RM123456785GB",
                "TrackingURL": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
                "IsShipped": true}])
        );

        let task = &d.tasks[S2][0];
        assert_eq!(
            by_sku(task["Pick"]["Lines"].as_array().unwrap())["TEE-BLU-M"],
            2.0,
            "the lines given"
        );
        assert_eq!(
            task["Ship"]["Status"], "AUTHORISED",
            "every packed box shipped"
        );
        let boxes: Vec<&str> = task["Ship"]["Lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                assert_eq!(l["TrackingNumber"], "15501234567890");
                assert!(
                    l["ShipmentDate"].as_str().unwrap().len() == 19,
                    "now, as DEAR writes times"
                );
                l["Boxes"].as_str().unwrap()
            })
            .collect();
        assert_eq!(boxes, ["Box A", "Box B"]);

        // S4 stopped at its ship: picked and packed in the box the output named.
        let task = &d.tasks[S4][0];
        assert_eq!(task["Pack"]["Status"], "AUTHORISED");
        assert_eq!(task["Pack"]["Lines"][0]["Box"], "Carton 1");
        assert_eq!(task["Ship"]["Status"], "DRAFT");
        assert!(!d.tasks.contains_key(S3));
        assert_eq!(calls_for(&d, S6), ["GET fulfilment"]);
    }

    // Picked and packed as a draft first; a later output ships it, and the draft pack is
    // replaced (PUT), not added to: a POST would pack every line twice.
    add_order(
        &mut dear.lock().unwrap(),
        S7,
        "AUTHORISED",
        &[("CAP-RED", 2)],
    );
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S7, "pack": {"Status": "DRAFT"}}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(dear.lock().unwrap().tasks[S7][0]["Pack"]["Status"], "DRAFT");
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S7, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "T-7"}]}}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let d = dear.lock().unwrap();
    assert_eq!(
        calls_for(&d, S7),
        [
            "GET fulfilment",
            "POST fulfilment",
            "POST pick",
            "POST pack",
            "GET fulfilment",
            "PUT pack",
            "POST ship"
        ]
    );
    let task = &d.tasks[S7][0];
    assert_eq!(
        by_sku(task["Pack"]["Lines"].as_array().unwrap())["CAP-RED"],
        2.0
    );
    assert_eq!(task["FulFilmentStatus"], "FULFILLED");
}

async fn dear_fulfilment_retries_go_on_from_the_stage_reached(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        add_order(&mut d, S1, "AUTHORISED", &[("TEE-BLU-M", 2)]);
        add_order(&mut d, S2, "AUTHORISED", &[("TOTE-HBR", 1)]);
        // S1's pack fails; S2's shipment is made but its answer is lost.
        d.fail.push(("pack".into(), S1.into(), 500, false));
        d.fail.push(("ship".into(), S2.into(), 502, true));
    }
    let stream = fulfilment_stream(&s, &base, "app-key").await;
    let ship = |sale: &str, tracking: &str| json!({"SaleID": sale, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": tracking, "ShipmentDate": "2026-11-30T10:00:00"}]}});
    let (_, events) =
        crate::engine::upload_and_wait(&s, &stream, json!([ship(S1, "T-1"), ship(S2, "T-2")]))
            .await;
    for (sale, status) in [(S1, 500), (S2, 502)] {
        let e = event_of(&events, sale);
        assert_eq!(e["status"], "OK", "{e}");
        let tries = attempts(&s, e).await;
        let outcomes: Vec<&str> = tries
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["RETRY", "SUCCESS"], "{tries:?}");
        assert_eq!(tries[0]["error_code"], "SERVER_ERROR");
        assert_eq!(tries[0]["http_status"], status);
    }
    {
        let d = dear.lock().unwrap();
        // The retry read the task and went on with its pack: no second task, no second pick.
        assert_eq!(
            calls_for(&d, S1),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "GET fulfilment",
                "POST pack",
                "POST ship"
            ]
        );
        // The shipment went through the first time: the retry found it done.
        assert_eq!(
            calls_for(&d, S2),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "POST ship",
                "GET fulfilment"
            ]
        );
        for sale in [S1, S2] {
            assert_eq!(d.tasks[sale].len(), 1);
            assert_eq!(d.tasks[sale][0]["FulFilmentStatus"], "FULFILLED");
            assert_eq!(
                d.tasks[sale][0]["Ship"]["Lines"].as_array().unwrap().len(),
                1
            );
        }
    }

    // DEAR's limit, used up by another application on the key: the 429 asks for
    // `1 Seconds`, which is waited, and the event goes through.
    {
        let mut d = dear.lock().unwrap();
        add_order(&mut d, S5, "AUTHORISED", &[("TEE-BLU-M", 1)]);
        use_up_the_limit(&mut d);
    }
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S5, "T-5")])).await;
    let e = &events[0];
    assert_eq!(e["status"], "OK", "{e}");
    let tries = attempts(&s, e).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED");
    assert_eq!(tries[0]["http_status"], 429);
    assert_eq!(tries[1]["outcome"], "SUCCESS");
    let t = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        t(&tries[1]) - t(&tries[0]) >= chrono::Duration::milliseconds(900),
        "{tries:?}"
    );
    assert_eq!(
        dear.lock().unwrap().tasks[S5][0]["FulFilmentStatus"],
        "FULFILLED"
    );

    // As DEAR documents its limit: a 503 with the same text.
    {
        let mut d = dear.lock().unwrap();
        add_order(&mut d, S6, "AUTHORISED", &[("TEE-BLU-M", 1)]);
        d.limit_status = 503;
        use_up_the_limit(&mut d);
    }
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S6, "T-6")])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED");
    assert_eq!(tries[0]["http_status"], 503);

    // Wrong credentials: DEAR's 403 text, not retried.
    let stream = fulfilment_stream(&s, &base, "wrong").await;
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S6, "T-7")])).await;
    let e = &events[0];
    assert_eq!(e["status"], "FAILED");
    assert_eq!(e["error_code"], "UNAUTHORIZED");
    assert_eq!(e["attempt_count"], 1);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect credentials!"),
        "{e}"
    );
}

/// A stock row as `ref/productavailability` lists it.
fn row(sku: &str, location: &str, bin: Option<&str>, on_hand: f64, allocated: f64) -> Value {
    json!({"ID": format!("p-{sku}"), "SKU": sku, "Name": format!("Product {sku}"), "Barcode": null,
        "Location": location, "Bin": bin, "Batch": null, "ExpiryDate": null,
        "OnHand": on_hand, "Allocated": allocated, "Available": on_hand - allocated,
        "OnOrder": 0, "StockOnHand": on_hand, "InTransit": 0})
}

async fn dear_stock_is_read_whole_every_run(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        d.stock = vec![
            row("TEE-BLU-M", "Main Warehouse", Some("A-1"), 10.0, 2.0),
            row("TEE-BLU-M", "Main Warehouse", Some("A-2"), 3.5, 0.0),
            row("TEE-BLU-M", "Shop", None, 4.0, 0.0),
            row("TOTE-HBR", "Main Warehouse", None, 1.0, 3.0),
            row("CAP-RED", "Main Warehouse", None, 7.0, 0.0),
        ];
        // Page 2 fails once.
        d.fail.push(("stock".into(), "2".into(), 500, false));
    }
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key", "base_url": base}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "DEAR stock", "system": "dear", "function": "dear.stock",
                "key_id": key["id"], "trigger": "manual", "params": {"page_size": 2}}),
        )
        .await;
    // Through the library's "DEAR stock to Shopify inventory".
    let sink = Sink::ok().await;
    let dest = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
                "params": {"url": sink.url()}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Stock to Shopify", "data_type": "stock", "source_id": source["id"],
                "transformation_id": "01900000-0000-7000-8000-00000000000a", "destination_id": dest["id"]}),
        )
        .await;
    let stream = stream["id"].as_str().unwrap();

    // Every row, in pages of two; page 2's server error is tried again.
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["entity_id"], "TEE-BLU-M");
    let outputs: Vec<&Value> = events.iter().map(|e| &e["payload_out"]).collect();
    assert_eq!(*outputs[0], json!({"sku": "TEE-BLU-M", "available": 8}));
    assert_eq!(
        *outputs[1],
        json!({"sku": "TEE-BLU-M", "available": 3}),
        "floored"
    );
    assert_eq!(
        *outputs[3],
        json!({"sku": "TOTE-HBR", "available": 0}),
        "not below 0"
    );
    {
        let mut d = dear.lock().unwrap();
        let pages: Vec<&str> = d.stock_calls.iter().map(|q| q["page"].as_str()).collect();
        assert_eq!(pages, ["1", "2", "2", "3"]);
        assert!(d
            .stock_calls
            .iter()
            .all(|q| q["limit"] == "2" && !q.contains_key("location")));
        d.stock_calls.clear();
        // A snapshot: the next run reads it all again, within the limit DEAR says is
        // used up (as it documents it, a 503), waiting the `1 Seconds` it asks.
        d.limit_status = 503;
        use_up_the_limit(&mut d);
    }
    let began = Instant::now();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "not the default minute"
    );
    assert_eq!(events_of(&s, &job).await.len(), 5);
    assert_eq!(dear.lock().unwrap().stock_calls.len(), 3);

    // One location, a SKU's bins summed.
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"params": {"location": "Main Warehouse", "sum_by_sku": true}}),
    )
    .await;
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let summed: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| {
            (
                e["payload_in"]["SKU"].as_str().unwrap(),
                &e["payload_in"]["Available"],
            )
        })
        .collect();
    assert_eq!(
        summed,
        [
            ("TEE-BLU-M", &json!(11.5)),
            ("TOTE-HBR", &json!(-2)),
            ("CAP-RED", &json!(7))
        ]
    );
    assert_eq!(
        events[0]["payload_out"],
        json!({"sku": "TEE-BLU-M", "available": 11})
    );
    assert_eq!(
        dear.lock().unwrap().stock_calls.last().unwrap()["location"],
        "Main Warehouse"
    );

    // A SKU DEAR refuses: its message, and the run is not tried again.
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"params": {"sku": "X".repeat(51)}}),
    )
    .await;
    let before = dear.lock().unwrap().stock_calls.len();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("INVALID_SCHEMA") && m.contains("Sku should not be longer"),
        "{j}"
    );
    assert_eq!(
        dear.lock().unwrap().stock_calls.len(),
        before + 1,
        "not tried again"
    );

    // Wrong credentials.
    let bad = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "wrong", "base_url": base}}),
        )
        .await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"], "params": {}}),
    )
    .await;
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Incorrect credentials!"),
        "{j}"
    );
}

both_stores!(
    sales_are_read_by_updated_since_within_the_limit,
    sales_are_created_updated_and_ordered,
    dear_sale_from_a_shopify_order_through_the_library,
    dear_fulfilment_picks_packs_and_ships,
    dear_fulfilment_retries_go_on_from_the_stage_reached,
    dear_stock_is_read_whole_every_run,
);
