//! DEAR's sales read on a schedule, through a local DEAR answering as its External API v2
//! documents: the account headers (403 "Incorrect credentials!" otherwise), `saleList` with
//! `Page`/`Limit` (either case), `UpdatedSince` and `Status`, `{Total, Page, SaleList}`, the
//! rate limit as a 429, and `GET /sale?ID=` for a sale in full.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::Db;
use crate::engine::{events_of, run, start, wait_for_job};
use crate::peers::Sink;

#[derive(Default)]
struct Dear {
    sales: BTreeMap<String, Value>,
    /// Sales made or changed through the API, and the orders added to them.
    written: Vec<(String, Value)>,
    /// The list calls answered, with their query; `limited` says whether the next is a 429.
    calls: Vec<BTreeMap<String, String>>,
    limited: bool,
}

type DearState = Arc<Mutex<Dear>>;

fn authed(h: &HeaderMap) -> bool {
    h.get("api-auth-accountid").is_some_and(|v| v == "acct-1")
        && h.get("api-auth-applicationkey")
            .is_some_and(|v| v == "app-key")
}

/// DEAR's times, written as it writes them: trailing zeros of the fraction dropped.
fn updated(day: u32, ms: u32) -> String {
    let t = format!("2026-11-{day:02}T08:00:00.{ms:03}");
    format!("{}Z", t.trim_end_matches('0').trim_end_matches('.'))
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
                if !authed(&h) {
                    return (AxStatus::FORBIDDEN, "Incorrect credentials!").into_response();
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
                if !authed(&h) {
                    return (AxStatus::FORBIDDEN, "Incorrect credentials!").into_response();
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
                if !authed(&h) {
                    return (AxStatus::FORBIDDEN, "Incorrect credentials!").into_response();
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
                if !authed(&h) {
                    return (AxStatus::FORBIDDEN, "Incorrect credentials!").into_response();
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
                if !authed(&h) {
                    return (AxStatus::FORBIDDEN, "Incorrect credentials!").into_response();
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

both_stores!(
    sales_are_read_by_updated_since_within_the_limit,
    sales_are_created_updated_and_ordered,
);
