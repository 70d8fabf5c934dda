//! A local Peoplevox IntegrationServiceV4, answering as Peoplevox does (see the tests' module
//! comment).

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

const NS: &str = "http://www.peoplevox.net/";
const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const CLIENT: &str = "acme1234";
pub const USER: &str = "apiuser";
pub const PASSWORD: &str = "s3cret&<pvx>";

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
pub struct Pvx {
    pub sessions: Vec<String>,
    /// Sales orders by number: each row's columns.
    pub orders: BTreeMap<String, BTreeMap<String, String>>,
    /// Sales order items by (order, line or item code).
    pub items: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Subscriptions by id: (event type, filter, callback URL, encodeParameterData).
    pub subscriptions: BTreeMap<u64, (String, String, String, bool)>,
    pub next_subscription: u64,
    /// Every call answered: the operation and, for GetData/SaveData, what it asked.
    pub calls: Vec<(String, String)>,
    /// The next this many calls are answered 429.
    pub limited: u32,
    /// The next this many calls (after a login) fail with a server fault.
    pub failing: u32,
    /// The next this many calls (after a login) are read as malformed: a client fault.
    pub unreadable: u32,
    /// Requests in the last 15 s, and how many went over the limit.
    pub recent: VecDeque<Instant>,
    pub over_limit: u32,
}

pub type PvxState = Arc<Mutex<Pvx>>;

impl Pvx {
    pub fn ops(&self) -> Vec<&str> {
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
pub async fn peoplevox() -> (String, PvxState) {
    let state: PvxState = Arc::default();
    let app = Router::new().fallback(service).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

/// Ends every open session, as Peoplevox does after 30 minutes idle.
pub fn expire(p: &PvxState) {
    p.lock().unwrap().sessions.clear();
}
