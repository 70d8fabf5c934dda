//! The local DEAR: the External API v2 as its documentation describes it, for the tests in
//! this folder — the account headers (403 "Incorrect credentials!" otherwise), 60 calls in any
//! 60 seconds per application key (429, or 503, with `Retry-After: N Seconds`), error arrays
//! (`[{"ErrorCode": 400, "Exception": …}]`), `saleList`, `sale`, `sale/order`, the fulfilment
//! task's state machine and `ref/productavailability`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
pub(crate) struct Dear {
    pub(crate) sales: BTreeMap<String, Value>,
    /// Sales made or changed through the API, and the orders added to them.
    pub(crate) written: Vec<(String, Value)>,
    /// The list calls answered, with their query; `limited` says whether the next is a 429.
    pub(crate) calls: Vec<BTreeMap<String, String>>,
    pub(crate) limited: bool,
    /// Every call's time per application key, for the limit of 60 calls in any 60 seconds.
    pub(crate) window: HashMap<String, VecDeque<Instant>>,
    /// How the limit is answered: 429 (as DEAR answers now) or 503 (as it documents).
    pub(crate) limit_status: u16,
    /// Whether the next call finds the limit used up (see `use_up_the_limit`).
    pub(crate) used_up: bool,
    /// Sales to fulfil, by id: `{"Order": {"Status", "Lines"}, "ShippingAddress"}`.
    pub(crate) orders: BTreeMap<String, Value>,
    /// Fulfilment tasks by sale id.
    pub(crate) tasks: BTreeMap<String, Vec<Value>>,
    /// Fulfilment calls answered: (endpoint, sale id).
    pub(crate) fulfil_calls: Vec<(String, String)>,
    /// One-shot failures: (endpoint, sale id, status, whether the call is done before failing).
    pub(crate) fail: Vec<(String, String, u16, bool)>,
    /// `ref/productavailability` rows, and the queries answered.
    pub(crate) stock: Vec<Value>,
    pub(crate) stock_calls: Vec<BTreeMap<String, String>>,
}

pub(crate) type DearState = Arc<Mutex<Dear>>;

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
pub(crate) fn use_up_the_limit(d: &mut Dear) {
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
pub(crate) const MAIN: &str = "Main Warehouse";
const MAIN_ID: &str = "19aeca31-bd49-4fbe-8abd-37a6169cc2cb";

/// A sale to fulfil whose order has this status and these `(SKU, quantity)` lines.
pub(crate) fn add_order(d: &mut Dear, id: &str, status: &str, lines: &[(&str, u32)]) {
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
pub(crate) fn by_sku(lines: &[Value]) -> BTreeMap<String, f64> {
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

pub(crate) async fn dear() -> (String, DearState) {
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
