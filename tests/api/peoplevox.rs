//! Peoplevox through a local IntegrationServiceV4 that answers as Peoplevox does: SOAP 1.1 at
//! `/{clientId}/resources/integrationservicev4.asmx` (any case), the SOAPAction checked against
//! the body, `Authenticate` with a base64 password, the `UserSessionCredentials` header on
//! every other call (`System : Security - Invalid Session` otherwise, and when a session is
//! expired on demand), business errors as HTTP 200 with `ResponseId` -1, ASMX faults (HTTP 500)
//! for malformed requests, `GetData` paged with a search clause, `SaveData` checked against the
//! templates' columns with per-line errors, event subscriptions whose callbacks it fires with
//! GET, and its limit of 15 requests in 15 s (and a 429 on demand).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode as AxStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{read, Db, Env, Server};
use crate::engine::{attempts, events_of, run, upload_and_wait, wait_for_job};
use crate::peers::Sink;

const NS: &str = "http://www.peoplevox.net/";
const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const CLIENT: &str = "acme1234";
const USER: &str = "apiuser";
const PASSWORD: &str = "s3cret&<pvx>";
const PUBLIC: &str = "https://wharf.example.com";
const PASSTHROUGH: &str = "01900000-0000-7000-8000-000000000001";
const DESPATCH_TO_FULFILLMENT: &str = "01900000-0000-7000-8000-00000000000b";
const SHOPIFY_TO_IMPORT: &str = "01900000-0000-7000-8000-00000000000c";

/// The import templates' columns (Peoplevox's defaults).
const SALES_ORDERS: &str = "SalesOrderNumber,Customer,CustomerPurchaseOrderReferenceNumber,ShippingAddressLine1,ShippingAddressLine2,ShippingAddressCity,ShippingAddressRegion,ShippingAddressPostcode,ShippingAddressCountry,ShippingAddressReference,InvoiceAddressLine1,InvoiceAddressLine2,InvoiceAddressCity,InvoiceAddressRegion,InvoiceAddressPostcode,InvoiceAddressCountry,InvoiceAddressReference,IsPartialShipment,Status,RequestedDeliveryDate,ShippingCost,Email,ContactName,TotalSale,Discount,TaxPaid,CreatedDate,PaymentMethod,ServiceType,ChannelName";
const SALES_ORDER_ITEMS: &str =
    "SalesOrderNumber,ItemCode,QuantityOrdered,RequestedDeliveryDate,Line,Sequence,SalePrice";
/// The columns `GetData` exports for "Sales orders".
const EXPORT: [&str; 5] = [
    "SalesOrderNumber",
    "Customer",
    "Email",
    "Status",
    "LastUpdated",
];
const EVENTS: [&str; 9] = [
    "AvailabilityChanges",
    "SalesOrderStatusChanges",
    "GoodsReceived",
    "TrackingNumberReceived",
    "IncrementalChanges",
    "Returns",
    "DespatchPackageTrackingNumberReceived",
    "OnDespatchOrderReceived",
    "DespatchPackageDespatched",
];

#[derive(Default)]
struct Pvx {
    sessions: Vec<String>,
    /// Sales orders by number: each row's columns.
    orders: BTreeMap<String, BTreeMap<String, String>>,
    /// Sales order items by (order, line or item code).
    items: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Subscriptions by id: (event type, filter, callback URL, encodeParameterData).
    subscriptions: BTreeMap<u64, (String, String, String, bool)>,
    next_subscription: u64,
    /// Every call answered: the operation and, for GetData/SaveData, what it asked.
    calls: Vec<(String, String)>,
    /// The next this many calls are answered 429.
    limited: u32,
    /// The next this many calls (after a login) fail with a server fault.
    failing: u32,
    /// The next this many calls (after a login) are read as malformed: a client fault.
    unreadable: u32,
    /// Requests in the last 15 s, and how many went over the limit.
    recent: VecDeque<Instant>,
    over_limit: u32,
}

type PvxState = Arc<Mutex<Pvx>>;

impl Pvx {
    fn ops(&self) -> Vec<&str> {
        self.calls.iter().map(|(op, _)| op.as_str()).collect()
    }
}

fn envelope(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{SOAP}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"><soap:Body>{inner}</soap:Body></soap:Envelope>"
    )
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\r', "&#13;")
}

fn result(op: &str, id: i64, total: usize, detail: &str) -> Response {
    let body = envelope(&format!(
        "<{op}Response xmlns=\"{NS}\"><{op}Result><ResponseId>{id}</ResponseId><TotalCount>{total}</TotalCount><Detail>{}</Detail></{op}Result></{op}Response>",
        xml(detail)
    ));
    (
        AxStatus::OK,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn fault(code: &str, text: &str) -> Response {
    let body = envelope(&format!(
        "<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{}</faultstring><detail /></soap:Fault>",
        xml(text)
    ));
    (
        AxStatus::INTERNAL_SERVER_ERROR,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The text of a child element of `node` in Peoplevox's namespace.
fn field(node: roxmltree::Node, name: &str) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name((NS, name)))
        .map(|c| c.text().unwrap_or_default().to_string())
}

/// An int field as ASMX reads it: absent is 0; `None` for anything but a number, which ASMX
/// answers with [`not_an_int`].
fn int(node: roxmltree::Node, name: &str) -> Option<i64> {
    match field(node, name) {
        None => Some(0),
        Some(t) => t.trim().parse().ok(),
    }
}

fn not_an_int() -> Response {
    fault(
        "Client",
        "Server was unable to read request. ---> There is an error in XML document (1, 1). ---> Input string was not in a correct format.",
    )
}

async fn service(
    State(state): State<PvxState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_ascii_lowercase();
    if path
        != format!(
            "/{}/resources/integrationservicev4.asmx",
            CLIENT.to_ascii_lowercase()
        )
    {
        return (AxStatus::NOT_FOUND, "The resource cannot be found.").into_response();
    }
    if method != Method::POST {
        return (AxStatus::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("text/xml") {
        return (AxStatus::UNSUPPORTED_MEDIA_TYPE, "text/xml expected").into_response();
    }
    let action = headers
        .get("soapaction")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    let Ok(doc) = roxmltree::Document::parse(&text) else {
        return fault(
            "Client",
            "Server was unable to read request. ---> There is an error in XML document (1, 1).",
        );
    };
    let root = doc.root_element();
    let op_node = root
        .has_tag_name((SOAP, "Envelope"))
        .then(|| root.children().find(|c| c.has_tag_name((SOAP, "Body"))))
        .flatten()
        .and_then(|b| b.children().find(|c| c.is_element()));
    let Some(op_node) = op_node.filter(|n| n.tag_name().namespace() == Some(NS)) else {
        return fault(
            "Client",
            "Server was unable to read request. ---> There is an error in XML document (1, 1).",
        );
    };
    let op = op_node.tag_name().name().to_string();
    if action != format!("{NS}{op}") {
        return fault(
            "Client",
            &format!("Server did not recognize the value of HTTP Header SOAPAction: {action}."),
        );
    }
    let mut p = state.lock().unwrap();
    let now = Instant::now();
    while p
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(15))
    {
        p.recent.pop_front();
    }
    p.recent.push_back(now);
    if p.recent.len() > 15 {
        p.over_limit += 1;
        return (
            AxStatus::TOO_MANY_REQUESTS,
            [("retry-after", "15")],
            "Too many requests",
        )
            .into_response();
    }
    if p.limited > 0 {
        p.limited -= 1;
        p.calls.push((op.clone(), "429".into()));
        return (
            AxStatus::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "Too many requests",
        )
            .into_response();
    }
    if op == "Authenticate" {
        p.calls.push((op.clone(), String::new()));
        let given = |n: &str| field(op_node, n).unwrap_or_default();
        let password = STANDARD
            .decode(given("password").trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if given("clientId") != CLIENT
            || given("username") != USER
            || password.as_deref() != Some(PASSWORD)
        {
            return result(&op, -1, 0, "Invalid username or password");
        }
        let session = uuid::Uuid::new_v4().simple().to_string();
        p.sessions.push(session.clone());
        return result(&op, 0, 0, &format!("{CLIENT},{session}"));
    }
    let creds = root
        .children()
        .find(|c| c.has_tag_name((SOAP, "Header")))
        .and_then(|h| {
            h.children()
                .find(|c| c.has_tag_name((NS, "UserSessionCredentials")))
        });
    let valid = creds.is_some_and(|c| {
        let user_id_ok = field(c, "UserId").is_none_or(|u| u.trim().parse::<i64>().is_ok());
        field(c, "ClientId").as_deref() == Some(CLIENT)
            && field(c, "SessionId").is_some_and(|s| p.sessions.contains(&s))
            && user_id_ok
    });
    if !valid {
        p.calls.push((op.clone(), "invalid session".into()));
        return result(&op, -1, 0, "System : Security - Invalid Session");
    }
    if p.unreadable > 0 {
        p.unreadable -= 1;
        p.calls.push((op.clone(), "client fault".into()));
        return fault(
            "Client",
            "Server was unable to read request. ---> There is an error in XML document (1, 120).",
        );
    }
    if p.failing > 0 {
        p.failing -= 1;
        p.calls.push((op.clone(), "fault".into()));
        return fault(
            "Server",
            "Server was unable to process request. ---> Timeout expired.",
        );
    }
    match op.as_str() {
        "GetData" => get_data(&mut p, op_node),
        "SaveData" => save_data(&mut p, op_node),
        "SubscribeEvent" => {
            let event = field(op_node, "eventType").unwrap_or_default();
            let url = field(op_node, "callbackUrl").unwrap_or_default();
            p.calls.push((op.clone(), url.clone()));
            if !EVENTS.contains(&event.as_str()) {
                return result(&op, -1, 0, &format!("Invalid event type: {event}"));
            }
            if !url.starts_with("http") {
                return result(&op, -1, 0, "Invalid callback url");
            }
            let encode = field(op_node, "encodeParameterData").is_some_and(|e| e == "true");
            p.next_subscription += 1;
            let id = p.next_subscription;
            let filter = field(op_node, "filter").unwrap_or_default();
            p.subscriptions.insert(id, (event, filter, url, encode));
            result(&op, 0, 0, &id.to_string())
        }
        "UnsubscribeEvent" => {
            let Some(id) = int(op_node, "subscriptionId") else {
                return not_an_int();
            };
            p.calls.push((op.clone(), id.to_string()));
            if p.subscriptions.remove(&(id as u64)).is_some() {
                result(&op, 0, 0, "True")
            } else {
                result(&op, -1, 0, &format!("Subscription {id} does not exist"))
            }
        }
        _ => fault(
            "Client",
            &format!("Server did not recognize the value of HTTP Header SOAPAction: {action}."),
        ),
    }
}

/// One condition of a search clause, or why it is not one.
fn matches(cond: &str, row: &BTreeMap<String, String>) -> Result<bool, String> {
    let cond = cond.trim();
    if let Some(inner) = cond.strip_prefix('(').and_then(|c| c.strip_suffix(')')) {
        return matches(inner, row);
    }
    let (negate, cond) = match cond.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, cond),
    };
    let quoted = |v: &str| {
        v.trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_string)
    };
    for method in ["Equals", "Contains", "StartsWith", "EndsWith"] {
        if let Some((name, arg)) = cond.split_once(&format!(".{method}(")) {
            let arg = arg
                .strip_suffix(')')
                .and_then(quoted)
                .ok_or("a bad argument")?;
            let value = row
                .get(name.trim())
                .ok_or_else(|| format!("no field {name}"))?;
            let hit = match method {
                "Equals" => *value == arg,
                "Contains" => value.contains(&arg),
                "StartsWith" => value.starts_with(&arg),
                _ => value.ends_with(&arg),
            };
            return Ok(hit != negate);
        }
    }
    for op in [">=", "<=", "!=", "==", ">", "<"] {
        if let Some((name, given)) = cond.split_once(op) {
            let value = row
                .get(name.trim())
                .ok_or_else(|| format!("no field {}", name.trim()))?;
            let ord = if let Some(t) = given
                .trim()
                .strip_prefix("DateTime(")
                .and_then(|t| t.strip_suffix(')'))
            {
                let n: Vec<u32> = t
                    .split(',')
                    .map(|x| x.trim().parse().map_err(|_| "a bad DateTime"))
                    .collect::<Result<_, _>>()?;
                let [y, mo, d, h, mi, s] = n[..] else {
                    return Err("DateTime takes six numbers".into());
                };
                let bound = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)
                    .and_then(|d| d.and_hms_opt(h, mi, s))
                    .ok_or("a bad DateTime")?;
                let at = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
                    .map_err(|_| format!("{name} is not a date"))?;
                at.cmp(&bound)
            } else if let Some(text) = quoted(given) {
                value.as_str().cmp(text.as_str())
            } else {
                let n: f64 = given
                    .trim()
                    .parse()
                    .map_err(|_| format!("a bad value {given}"))?;
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("{name} is not a number"))?;
                v.partial_cmp(&n).ok_or("not comparable")?
            };
            use std::cmp::Ordering::*;
            let hit = match op {
                ">=" => ord != Less,
                "<=" => ord != Greater,
                "!=" => ord != Equal,
                "==" => ord == Equal,
                ">" => ord == Greater,
                _ => ord == Less,
            };
            return Ok(hit != negate);
        }
    }
    Err(format!("cannot read `{cond}`"))
}

fn get_data(p: &mut Pvx, node: roxmltree::Node) -> Response {
    let op = "GetData";
    let Some(req) = node.children().find(|c| c.has_tag_name((NS, "getRequest"))) else {
        return fault("Client", "Server was unable to read request.");
    };
    let template = field(req, "TemplateName").unwrap_or_default();
    let (page, size) = match (int(req, "PageNo"), int(req, "ItemsPerPage")) {
        (Some(p), Some(s)) => (p.max(1) as usize, s.max(0) as usize),
        _ => return not_an_int(),
    };
    let clause = field(req, "SearchClause").unwrap_or_default();
    p.calls
        .push((op.into(), format!("{template}|{page}|{size}|{clause}")));
    if template != "Sales orders" {
        return result(op, -1, 0, &format!("Template '{template}' does not exist"));
    }
    let mut rows = Vec::new();
    for row in p.orders.values() {
        let mut hit = true;
        if !clause.trim().is_empty() {
            for part in clause.split(" AND ") {
                match matches(part, row) {
                    Ok(h) => hit &= h,
                    Err(e) => return result(op, -1, 0, &format!("Invalid search clause: {e}")),
                }
            }
        }
        if hit {
            rows.push(row);
        }
    }
    let total = rows.len();
    let chosen: Vec<_> = if size == 0 {
        rows
    } else {
        rows.into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect()
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(EXPORT).unwrap();
    for row in chosen {
        w.write_record(
            EXPORT
                .iter()
                .map(|c| row.get(*c).cloned().unwrap_or_default()),
        )
        .unwrap();
    }
    let csv = String::from_utf8(w.into_inner().unwrap()).unwrap();
    result(op, 0, total, &csv)
}

fn save_data(p: &mut Pvx, node: roxmltree::Node) -> Response {
    let op = "SaveData";
    let Some(req) = node
        .children()
        .find(|c| c.has_tag_name((NS, "saveRequest")))
    else {
        return fault("Client", "Server was unable to read request.");
    };
    let template = field(req, "TemplateName").unwrap_or_default();
    let Some(action) = int(req, "Action") else {
        return not_an_int();
    };
    let csv_text = field(req, "CsvData").unwrap_or_default();
    p.calls
        .push((op.into(), format!("{template}|{action}|{csv_text}")));
    let columns: Vec<&str> = match template.as_str() {
        "Sales orders" => SALES_ORDERS.split(',').collect(),
        "Sales order items" => SALES_ORDER_ITEMS.split(',').collect(),
        _ => return result(op, -1, 0, &format!("Template '{template}' does not exist")),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(csv_text.trim_start_matches(['\r', '\n']).as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return result(op, -1, 0, &format!("Invalid CSV data: {e}")),
    };
    if let Some(bad) = header.iter().find(|h| !columns.contains(&h.as_str())) {
        return result(
            op,
            -1,
            0,
            &format!("Column '{bad}' is not part of template '{template}'"),
        );
    }
    if !header.iter().any(|h| h == "SalesOrderNumber") {
        return result(op, -1, 0, "Column 'SalesOrderNumber' is required");
    }
    let mut saved = 0;
    let mut errors = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 1;
        let Ok(rec) = rec else {
            errors.push(format!("Line {line}: the row cannot be read"));
            continue;
        };
        if rec.len() != header.len() {
            errors.push(format!(
                "Line {line}: expected {} values, found {}",
                header.len(),
                rec.len()
            ));
            continue;
        }
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(rec.iter().map(str::to_string))
            .collect();
        match check_row(p, &template, &row) {
            Err(e) => errors.push(format!("Line {line}: {e}")),
            Ok(()) => {
                let number = row["SalesOrderNumber"].clone();
                if template == "Sales orders" {
                    if action == 2 {
                        p.orders.remove(&number);
                    } else {
                        let entry = p.orders.entry(number).or_default();
                        entry.extend(row.clone());
                        entry.insert("LastUpdated".into(), "2026-12-01 09:00:00".into());
                    }
                } else {
                    let line_key = row
                        .get("Line")
                        .or(row.get("ItemCode"))
                        .cloned()
                        .unwrap_or_default();
                    p.items.insert((number, line_key), row);
                }
                saved += 1;
            }
        }
    }
    if errors.is_empty() {
        result(op, 0, saved, "")
    } else {
        result(op, -1, saved, &errors.join("\n"))
    }
}

/// A template row's checks, as Peoplevox's import makes them.
fn check_row(p: &Pvx, template: &str, row: &BTreeMap<String, String>) -> Result<(), String> {
    let number = &row["SalesOrderNumber"];
    if number.is_empty() {
        return Err("SalesOrderNumber is required".into());
    }
    if number.chars().count() > 30 {
        return Err("SalesOrderNumber must be 30 characters or fewer".into());
    }
    let decimal = |c: &str| {
        row.get(c)
            .is_none_or(|v| v.is_empty() || v.parse::<f64>().is_ok())
    };
    let integer = |c: &str| {
        row.get(c)
            .is_none_or(|v| v.is_empty() || v.parse::<i64>().is_ok())
    };
    let date = |c: &str| {
        row.get(c).is_none_or(|v| {
            v.is_empty() || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S").is_ok()
        })
    };
    if template == "Sales orders" {
        for c in ["ShippingCost", "TotalSale", "Discount", "TaxPaid"] {
            if !decimal(c) {
                return Err(format!("{c} '{}' is not a valid decimal", row[c]));
            }
        }
        if !integer("PaymentMethod") {
            return Err("PaymentMethod is not a valid number".into());
        }
        for c in ["CreatedDate", "RequestedDeliveryDate"] {
            if !date(c) {
                return Err(format!(
                    "{c} '{}' is not a valid date (yyyy-MM-dd HH:mm:ss)",
                    row[c]
                ));
            }
        }
        if row
            .get("Status")
            .is_some_and(|s| !s.is_empty() && s != "Cancelled")
        {
            return Err("Status can only be set to Cancelled".into());
        }
        // A new order needs what the template marks required.
        if !p.orders.contains_key(number) && row.get("Email").is_none_or(String::is_empty) {
            return Err("Email is required".into());
        }
    } else {
        if !p.orders.contains_key(number) {
            return Err(format!("Sales order '{number}' does not exist"));
        }
        if row.get("ItemCode").is_none_or(String::is_empty) {
            return Err("ItemCode is required".into());
        }
        if !integer("QuantityOrdered") || !integer("Sequence") {
            return Err("QuantityOrdered is not a valid number".into());
        }
        if !decimal("SalePrice") {
            return Err("SalePrice is not a valid decimal".into());
        }
    }
    Ok(())
}

/// A local Peoplevox: the `base_url` for a key, and its state.
async fn peoplevox() -> (String, PvxState) {
    let state: PvxState = Arc::default();
    let app = Router::new().fallback(service).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

/// Ends every open session, as Peoplevox does after 30 minutes idle.
fn expire(p: &PvxState) {
    p.lock().unwrap().sessions.clear();
}

async fn key(s: &Server, base: &str, password: &str) -> Value {
    s.create(
        "/keys",
        json!({"system": "peoplevox", "title": "Peoplevox", "credentials": {
            "client_id": CLIENT, "username": USER, "password": password, "base_url": base}}),
    )
    .await
}

/// Calls a subscription's callback as Peoplevox does: its placeholders filled (URL-encoded,
/// as `encodeParameterData` asks) and a GET, at the test server instead of the public address.
async fn fire(s: &Server, p: &PvxState, event: &str, values: &Value) -> (StatusCode, Value) {
    let url = {
        let p = p.lock().unwrap();
        let (_, _, url, encode) = p
            .subscriptions
            .values()
            .find(|(e, ..)| e == event)
            .expect("a subscription to the event")
            .clone();
        assert!(encode, "values are asked for URL-encoded");
        let mut url = url;
        for (k, v) in values.as_object().unwrap() {
            let v: String = form_encode(v.as_str().unwrap());
            url = url.replace(&format!("{{{k}}}"), &v);
        }
        assert!(!url.contains('{'), "every placeholder is filled: {url}");
        url.replace(PUBLIC, &s.url(""))
    };
    read(s.client.get(url).send().await.unwrap()).await
}

fn form_encode(v: &str) -> String {
    serde_urlencoded::to_string([("x", v)]).unwrap()[2..].to_string()
}

async fn imports_go_in_order_in_one_session(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let (base, pvx) = peoplevox().await;
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": k["id"], "trigger": "webhook", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Peoplevox", "system": "peoplevox", "function": "peoplevox.import",
                "key_id": k["id"], "params": {}, "retry": {"schedule_seconds": [0], "timeout_seconds": 10}}),
        )
        .await;
    let stream = |transformation: &'static str| {
        let (s, source, destination) = (&s, &source, &destination);
        async move {
            let out = s
                .create(
                    "/streams",
                    json!({"title": "To Peoplevox", "data_type": "sales_order", "source_id": source["id"],
                        "transformation_id": transformation, "destination_id": destination["id"]}),
                )
                .await;
            out["id"].as_str().unwrap().to_string()
        }
    };
    // A Shopify order through the library's transformation: the order, then its items,
    // accepted by the templates' columns.
    let shopify = stream(SHOPIFY_TO_IMPORT).await;
    let order: Value = serde_json::from_str(include_str!(
        "../../src/transform/library/samples/shopify_order.json"
    ))
    .unwrap();
    let (job, events) = upload_and_wait(&s, &shopify, json!([order])).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["Authenticate", "SaveData", "SaveData"]);
        assert!(
            p.calls[1].1.starts_with("Sales orders|0|"),
            "{}",
            p.calls[1].1
        );
        assert!(p.calls[2].1.starts_with("Sales order items|0|"));
        let o = &p.orders["1042"];
        assert_eq!(o["ContactName"], "Jo Bloggs");
        assert_eq!(o["ServiceType"], "Royal Mail Tracked 24");
        assert_eq!(p.items.len(), 2);
        assert_eq!(
            p.items[&("1042".to_string(), "2".to_string())]["ItemCode"],
            "TOTE-HBR"
        );
    }
    // The next delivery keeps the session; rows become CSV quoted as CSV needs, and
    // `imports` go in their order.
    let direct = stream(PASSTHROUGH).await;
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"imports": [
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2001", "Customer": "Doe, \"Jane\" & Co <x>",
                "Email": "jane@example.com", "TotalSale": 12.5, "IsPartialShipment": false}]},
            {"template": "Sales order items", "csv": "SalesOrderNumber,ItemCode,QuantityOrdered,Line\nSO-2001,A-1,2,1\n"}
        ]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    {
        let mut p = pvx.lock().unwrap();
        assert_eq!(p.ops()[3..], ["SaveData", "SaveData"], "no new login");
        let o = &p.orders["SO-2001"];
        assert_eq!(o["Customer"], "Doe, \"Jane\" & Co <x>");
        assert_eq!(o["IsPartialShipment"], "false");
        assert_eq!(o["TotalSale"], "12.5");
        assert_eq!(
            p.items[&("SO-2001".to_string(), "1".to_string())]["ItemCode"],
            "A-1"
        );
        assert_eq!(p.over_limit, 0, "requests are paced within the limit");
        p.calls.clear();
    }
    // The session expires: Peoplevox says so, Wharf signs in again once and the import goes on.
    expire(&pvx);
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2002", "Email": "a@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(attempts(&s, &events[0]).await.len(), 1);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["SaveData", "Authenticate", "SaveData"]);
        assert_eq!(p.calls[0].1, "invalid session");
        assert!(p.orders.contains_key("SO-2002"));
    }
    // A deletion with the destination's action.
    let (status, _) = s
        .patch(
            &format!("/destinations/{}", destination["id"].as_str().unwrap()),
            json!({"params": {"action": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2002"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert!(!pvx.lock().unwrap().orders.contains_key("SO-2002"));
}

async fn import_refusals_are_final_and_failures_retried(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let (base, pvx) = peoplevox().await;
    let good = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": good["id"], "trigger": "webhook", "params": {}}),
        )
        .await;
    let stream_with = |k: Value| {
        let (s, source) = (&s, &source);
        async move {
            let destination = s
                .create(
                    "/destinations",
                    json!({"title": "Peoplevox", "system": "peoplevox", "function": "peoplevox.import",
                        "key_id": k["id"], "params": {}, "retry": {"schedule_seconds": [0, 0], "timeout_seconds": 10}}),
                )
                .await;
            let out = s
                .create(
                    "/streams",
                    json!({"title": "To Peoplevox", "data_type": "sales_order", "source_id": source["id"],
                        "transformation_id": PASSTHROUGH, "destination_id": destination["id"]}),
                )
                .await;
            out["id"].as_str().unwrap().to_string()
        }
    };
    let stream = stream_with(good).await;
    // Peoplevox refuses some rows: what it took is said, with its own words, and nothing is
    // tried again.
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([
            {"template": "Sales orders", "rows": [
                {"SalesOrderNumber": "SO-1", "Email": "a@example.com", "TotalSale": "9.99"},
                {"SalesOrderNumber": "SO-2", "Email": "b@example.com", "TotalSale": "lots"}]},
            {"template": "Sales order items", "rows": [{"SalesOrderNumber": "SO-404", "ItemCode": "A-1", "QuantityOrdered": 1}]},
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-3", "Colour": "red"}]},
            {"template": "Sales orders", "rows": [{"Customer": "nobody"}]}
        ]),
    )
    .await;
    let by = |n: usize| events[n].clone();
    for (i, says) in [
        (0, "Peoplevox imported 1 of 2 rows of template Sales orders: Line 2: TotalSale 'lots' is not a valid decimal"),
        (1, "Peoplevox imported 0 of 1 rows of template Sales order items: Line 1: Sales order 'SO-404' does not exist"),
        (2, "Column 'Colour' is not part of template 'Sales orders'"),
        (3, "Column 'SalesOrderNumber' is required"),
    ] {
        let e = by(i);
        assert_eq!(e["status"], "FAILED", "{e}");
        assert_eq!(e["error_code"], "INVALID_SCHEMA", "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
        assert_eq!(attempts(&s, &e).await.len(), 1, "a refusal is not tried again");
    }
    assert!(pvx.lock().unwrap().orders.contains_key("SO-1"));
    // An output Peoplevox cannot take is refused before anything is sent.
    let (_, events) =
        upload_and_wait(&s, &stream, json!([{"rows": [{"SalesOrderNumber": "X"}]}])).await;
    assert_eq!(events[0]["error_code"], "INVALID_SCHEMA");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("names no `template`"));

    // A fault of the server, then Peoplevox's limit: each tried again, then delivered.
    pvx.lock().unwrap().failing = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-5", "Email": "e@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0]["error_code"], "SERVER_ERROR", "{tries:?}");
    assert_eq!(tries[0]["http_status"], 500);
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("Timeout expired"),
        "{tries:?}"
    );
    // A request Peoplevox cannot read is a client fault: final, with its words.
    pvx.lock().unwrap().unreadable = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-8", "Email": "h@example.com"}]}]),
    )
    .await;
    let e = &events[0];
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error_code"], "INVALID_SCHEMA");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("There is an error in XML document (1, 120)"),
        "{e}"
    );
    assert_eq!(attempts(&s, e).await.len(), 1);
    pvx.lock().unwrap().limited = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-6", "Email": "f@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED", "{tries:?}");
    assert!(pvx.lock().unwrap().orders.contains_key("SO-6"));

    // A wrong password: Peoplevox's refusal, final.
    let bad = key(&s, &base, "wrong").await;
    let stream = stream_with(bad).await;
    let (job, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-7", "Email": "g@example.com"}]}]),
    )
    .await;
    assert_eq!(job["status"], "FINISHED_WITH_ISSUES", "{job}");
    let e = &events[0];
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error_code"], "UNAUTHORIZED");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Invalid username or password"),
        "{e}"
    );
    assert_eq!(attempts(&s, e).await.len(), 1);
    assert!(!pvx.lock().unwrap().orders.contains_key("SO-7"));
}

async fn template_rows_are_read_page_by_page_then_only_what_changed(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let sink = Sink::ok().await;
    let (base, pvx) = peoplevox().await;
    {
        let mut p = pvx.lock().unwrap();
        for i in 1..=230u32 {
            let number = format!("SO-{i:04}");
            let row: BTreeMap<String, String> = [
                ("SalesOrderNumber", number.clone()),
                ("Customer", format!("Customer {i}, Ltd")),
                ("Email", format!("c{i}@example.com")),
                (
                    "Status",
                    if i % 3 == 0 { "Despatched" } else { "New" }.to_string(),
                ),
                (
                    "LastUpdated",
                    format!("2026-11-{:02} 08:{:02}:00", 1 + i % 20, i % 60),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            p.orders.insert(number, row);
        }
        // The first call of the run finds Peoplevox over its limit for a moment.
        p.limited = 1;
    }
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Peoplevox orders", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual",
                "params": {"template": "Sales orders", "since_field": "LastUpdated", "entity_id_path": "SalesOrderNumber"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Peoplevox orders", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 230);
    let e = events.iter().find(|e| e["entity_id"] == "SO-0042").unwrap();
    assert_eq!(e["payload_in"]["Customer"], "Customer 42, Ltd");
    assert_eq!(e["payload_in"]["Status"], "Despatched");
    {
        let mut p = pvx.lock().unwrap();
        let pages: Vec<&str> = p
            .calls
            .iter()
            .filter(|(op, _)| op == "GetData")
            .map(|(_, asked)| asked.as_str())
            .collect();
        assert_eq!(
            pages,
            [
                "Sales orders|1|100|",
                "Sales orders|2|100|",
                "Sales orders|3|100|"
            ]
        );
        assert_eq!(
            p.calls[..2],
            [
                ("Authenticate".to_string(), "429".to_string()),
                ("Authenticate".to_string(), String::new())
            ],
            "the first call met the limit and was made again"
        );
        p.calls.clear();
        // Two orders change after the newest the run saw; the session expires meanwhile.
        for n in ["SO-0007", "SO-0099"] {
            p.orders
                .get_mut(n)
                .unwrap()
                .insert("LastUpdated".into(), "2026-11-30 09:00:00".into());
        }
        p.sessions.clear();
    }
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let mut numbers: Vec<String> = events_of(&s, &job)
        .await
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["SO-0007", "SO-0099"]);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["GetData", "Authenticate", "GetData"]);
        assert_eq!(
            p.calls[2].1, "Sales orders|1|100|LastUpdated > DateTime(2026,11,20,08,59,00)",
            "the newest row before the change: day 20"
        );
    }
    // A search clause of the source's own, a server fault waited out, small pages.
    let despatched = s
        .create(
            "/sources",
            json!({"title": "Despatched", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual",
                "params": {"template": "Sales orders", "search_clause": "Status == \"Despatched\" AND SalesOrderNumber.StartsWith(\"SO-00\")", "page_size": 10}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Despatched", "sales_order", &despatched, &sink.url())
        .await;
    pvx.lock().unwrap().failing = 1;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 33, "SO-0003 … SO-0099 in steps of 3");
    assert!(events
        .iter()
        .all(|e| e["payload_in"]["Status"] == "Despatched"));

    // A template Peoplevox does not have: its refusal fails the run.
    let missing = s
        .create(
            "/sources",
            json!({"title": "Nothing", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual", "params": {"template": "Sales ordres"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Nothing", "sales_order", &missing, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("INVALID_SCHEMA") && m.contains("Template 'Sales ordres' does not exist"),
        "{j}"
    );

    // A wrong password fails the run with Peoplevox's answer.
    let bad = key(&s, &base, "wrong").await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"]}),
    )
    .await;
    let stream = s
        .passthrough_stream("Peoplevox bad", "sales_order", &source, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Invalid username or password"),
        "{j}"
    );
    assert_eq!(
        pvx.lock().unwrap().over_limit,
        0,
        "requests are paced within the limit"
    );
}

async fn callbacks_are_subscribed_received_and_unsubscribed(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.public_base_url = Some(PUBLIC.into());
    let s = Server::start(config).await;
    let sink = Sink::ok().await;
    let (base, pvx) = peoplevox().await;
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Despatches", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": k["id"], "trigger": "webhook",
                "params": {"event_type": "TrackingNumberReceived", "entity_id_path": "SalesOrderNumber"}}),
        )
        .await;
    let sink_destination = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send", "params": {"url": sink.url()}}),
        )
        .await;
    s.create(
        "/streams",
        json!({"title": "Despatches to Shopify", "data_type": "shipment", "source_id": source["id"],
            "transformation_id": DESPATCH_TO_FULFILLMENT, "destination_id": sink_destination["id"]}),
    )
    .await;
    let id = source["id"].as_str().unwrap();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let hook = source["webhook_url"].as_str().unwrap();
    let local = |url: &str| url.replace(PUBLIC, &s.url(""));
    let subscription = {
        let p = pvx.lock().unwrap();
        assert_eq!(p.subscriptions.len(), 1);
        let (event, filter, url, _) = &p.subscriptions[&1];
        assert_eq!(event, "TrackingNumberReceived");
        assert_eq!(filter, "");
        assert_eq!(
            *url,
            format!("{hook}?SalesOrderNumber={{Picks.SalesOrder.SalesOrderNumber}}&DespatchNumber={{DespatchNumber}}&TrackingNumber={{TrackingNumber}}&Carrier={{Carrier.Number}}&Service={{ServiceType.Name}}&ServiceCode={{ServiceType.Code}}&Email={{Picks.SalesOrder.Email}}")
        );
        url.clone()
    };
    assert_eq!(out["webhooks"]["subscriptions"][0]["id"], 1);
    assert_eq!(
        out["webhooks"]["subscriptions"][0]["topic"],
        "TrackingNumberReceived"
    );
    assert_eq!(
        out["webhooks"]["subscriptions"][0]["callback_url"],
        subscription
    );

    // Peoplevox calls back with GET: the parameters, decoded, are the record.
    let values = json!({"Picks.SalesOrder.SalesOrderNumber": "1042", "DespatchNumber": "D000456",
        "TrackingNumber": "JD0002212345678", "Carrier.Number": "DPD",
        "ServiceType.Name": "UK Standard 1-2 Days (Tracked)", "ServiceType.Code": "DPD12",
        "Picks.SalesOrder.Email": "jo.bloggs+pvx@example.com"});
    let (status, r) = fire(&s, &pvx, "TrackingNumberReceived", &values).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "1042");
    assert_eq!(
        events[0]["payload_in"],
        json!({"SalesOrderNumber": "1042", "DespatchNumber": "D000456", "TrackingNumber": "JD0002212345678",
            "Carrier": "DPD", "Service": "UK Standard 1-2 Days (Tracked)", "ServiceCode": "DPD12",
            "Email": "jo.bloggs+pvx@example.com"})
    );
    assert_eq!(
        events[0]["payload_out"],
        json!({"order_name": "#1042", "tracking": {"number": "JD0002212345678", "company": "DPD", "url": null},
            "notify_customer": true})
    );
    assert_eq!(sink.received().len(), 1);
    // A HEAD of the callback stores nothing.
    let head = s
        .client
        .head(local(&format!(
            "{hook}?SalesOrderNumber=1043&TrackingNumber=X1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The same callback again is the same delivery.
    let (status, again) = fire(&s, &pvx, "TrackingNumberReceived", &values).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    let (_, jobs) = s.get("/jobs").await;
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        1,
        "neither the HEAD nor the repeat made a job"
    );
    // Subscribed with SubscribePostEvent, Peoplevox posts the values as a form; a POST with
    // the values in its URL and no body is read the same way.
    for (url, body, number) in [
        (
            local(hook),
            "SalesOrderNumber=1043&TrackingNumber=JD9&Carrier=DPD",
            "1043",
        ),
        (
            local(&format!(
                "{hook}?SalesOrderNumber=1044&TrackingNumber=JD10&Carrier=DPD"
            )),
            "",
            "1044",
        ),
    ] {
        let mut req = s.client.post(url).body(body);
        if !body.is_empty() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let (status, r) = read(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        let job = r["job_id"].as_str().unwrap();
        assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
        let events = events_of(&s, job).await;
        assert_eq!(events[0]["entity_id"], number);
        assert_eq!(events[0]["payload_out"]["tracking"]["company"], "DPD");
    }
    // A callback with no parameters carries no record.
    let (status, _) = read(s.client.get(local(hook)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Other sources still answer GET with 405.
    let http = s
        .create(
            "/sources",
            json!({"title": "HTTP", "system": "http", "function": "http.webhook", "trigger": "webhook", "params": {}}),
        )
        .await;
    let res = s
        .client
        .get(local(http["webhook_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The session expired meanwhile: uninstalling signs in again and removes the subscription.
    expire(&pvx);
    pvx.lock().unwrap().calls.clear();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/uninstall"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    {
        let p = pvx.lock().unwrap();
        assert!(p.subscriptions.is_empty());
        assert_eq!(
            p.ops(),
            ["UnsubscribeEvent", "Authenticate", "UnsubscribeEvent"]
        );
        assert_eq!(p.calls[2].1, "1");
    }
    // An event type Peoplevox does not have, and one whose fields must be named: refused.
    s.patch(
        &format!("/sources/{id}"),
        json!({"params": {"event_type": "Returns"}}),
    )
    .await;
    let (status, problem) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("callback_fields"),
        "{problem}"
    );
    s.patch(
        &format!("/sources/{id}"),
        json!({"params": {"event_type": "AvailabilityChanges", "filter": "site == \"PrimarySite\""}}),
    )
    .await;
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    {
        let p = pvx.lock().unwrap();
        let (event, filter, url, _) = &p.subscriptions[&2];
        assert_eq!(event, "AvailabilityChanges");
        assert_eq!(filter, "site == \"PrimarySite\"");
        assert!(
            url.ends_with("?ItemCode={ItemCode}&Available={Available}"),
            "{url}"
        );
    }
    // A stock level called back again is news, not a repeat: each is stored.
    for _ in 0..2 {
        let values = json!({"ItemCode": "TEE-BLU-M", "Available": "5"});
        let (status, r) = fire(&s, &pvx, "AvailabilityChanges", &values).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["duplicate"], false);
    }
    // A wrong password: Peoplevox's refusal, quoted.
    let bad = key(&s, &base, "wrong").await;
    s.patch(&format!("/sources/{id}"), json!({"key_id": bad["id"]}))
        .await;
    let (status, problem) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("UNAUTHORIZED") && detail.contains("Invalid username or password"),
        "{problem}"
    );
}

both_stores!(
    imports_go_in_order_in_one_session,
    import_refusals_are_final_and_failures_retried,
    template_rows_are_read_page_by_page_then_only_what_changed,
    callbacks_are_subscribed_received_and_unsubscribed,
);
