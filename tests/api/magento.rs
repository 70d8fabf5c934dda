//! Magento 2 through a local store that answers as Magento 2.4's REST API does: an integration
//! token as a bearer token (anything else is the 401 "The consumer isn't authorized to access
//! %resources." with its parameters), `/rest/<store_code>/V1` paths, `searchCriteria` paging
//! with `total_count` and an empty page past the end, `updated_at` in `YYYY-MM-DD HH:MM:SS`
//! UTC, `POST /V1/order/{id}/ship` answering the bare shipment id (404 and the "Shipment
//! Document Validation Error(s)" 400 otherwise), and MSI source items answering `[]`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxMethod, StatusCode as AxStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{Db, Server};
use crate::engine::{events_of, run, start, upload_and_wait, wait_for_job};
use crate::peers::Sink;

const TOKEN: &str = "magento-integration-token-0123456789";

#[derive(Default)]
struct Store {
    orders: BTreeMap<u64, Value>,
    /// Products by id (`id`, not `entity_id`, in Magento's product JSON).
    products: BTreeMap<u64, Value>,
    shipments: Vec<(u64, Value)>,
    source_items: Vec<Value>,
    /// Every call answered: method, path and the page asked for.
    calls: Vec<String>,
    /// Statuses to answer the next authorised requests with (429 and 503 with
    /// `Retry-After: 1`).
    fail_next: std::collections::VecDeque<u16>,
}

type StoreState = Arc<Mutex<Store>>;

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn message(status: AxStatus, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn rest(
    State(store): State<StoreState>,
    method: AxMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    // `/rest/V1/…` or `/rest/<store>/V1/…`; only the `uk` store view exists besides default.
    let path = uri.path().to_string();
    let rest = path.trim_start_matches("/rest/");
    let rest = match rest.split_once("/V1/") {
        Some(("uk", tail)) => tail.to_string(),
        Some((_, _)) => {
            return message(
                AxStatus::BAD_REQUEST,
                json!({"message": "Specified request cannot be processed."}),
            )
        }
        None => rest.trim_start_matches("V1/").to_string(),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let resource = match (method.as_str(), parts.as_slice()) {
        ("GET", ["orders"]) => "Magento_Sales::actions_view",
        ("GET", ["products"]) => "Magento_Catalog::products",
        ("POST", ["order", _, "ship"]) => "Magento_Sales::ship",
        ("POST", ["inventory", "source-items"]) => "Magento_InventoryApi::stock_source_item_assign",
        _ => {
            return message(
                AxStatus::NOT_FOUND,
                json!({"message": "Request does not match any route."}),
            )
        }
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(TOKEN) {
        return message(
            AxStatus::UNAUTHORIZED,
            json!({"message": "The consumer isn't authorized to access %resources.",
                "parameters": {"resources": resource}}),
        );
    }
    let mut store = store.lock().unwrap();
    if let Some(status) = store.fail_next.pop_front() {
        let status = AxStatus::from_u16(status).unwrap();
        if matches!(status.as_u16(), 429 | 503) {
            return (
                status,
                [("retry-after", "1")],
                axum::Json(json!({"message": "Too many requests."})),
            )
                .into_response();
        }
        return message(
            status,
            json!({"message": "Internal Error. Details are available in Magento log file. Report ID: webapi-6548a9e6"}),
        );
    }
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match parts.as_slice() {
        [resource @ ("orders" | "products")] => {
            let resource = *resource;
            let size: usize = query
                .get("searchCriteria[pageSize]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX);
            let page: usize = query
                .get("searchCriteria[currentPage]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1);
            store.calls.push(format!("GET {resource} page {page}"));
            // Equal `updated_at` values need the unique column after them to page stably.
            let sort = |k: &str| query.get(k).map(String::as_str);
            assert_eq!(
                (
                    sort("searchCriteria[sortOrders][0][field]"),
                    sort("searchCriteria[sortOrders][1][field]"),
                    sort("searchCriteria[sortOrders][1][direction]"),
                ),
                (Some("updated_at"), Some("entity_id"), Some("ASC")),
                "{query:?}"
            );
            let filter = "searchCriteria[filter_groups][0][filters][0]";
            let after = (query.get(&format!("{filter}[field]")).map(String::as_str)
                == Some("updated_at")
                && query
                    .get(&format!("{filter}[condition_type]"))
                    .map(String::as_str)
                    == Some("gt"))
            .then(|| query.get(&format!("{filter}[value]")).cloned())
            .flatten();
            let records = if resource == "orders" {
                &store.orders
            } else {
                &store.products
            };
            let mut matching: Vec<Value> = records
                .values()
                .filter(|o| {
                    after
                        .as_deref()
                        .is_none_or(|a| o["updated_at"].as_str().unwrap() > a)
                })
                .cloned()
                .collect();
            let id = |v: &Value| v["entity_id"].as_u64().or(v["id"].as_u64());
            matching.sort_by(|a, b| {
                (a["updated_at"].as_str(), id(a)).cmp(&(b["updated_at"].as_str(), id(b)))
            });
            let total = matching.len();
            // 2.4: a page past the end has no items; the count stays.
            let items: Vec<Value> = matching
                .into_iter()
                .skip((page - 1).saturating_mul(size))
                .take(size)
                .collect();
            axum::Json(
                json!({"items": items, "search_criteria": {"page_size": size, "current_page": page},
                "total_count": total}),
            )
            .into_response()
        }
        ["order", id, "ship"] => {
            let id: u64 = id.parse().unwrap_or(0);
            let Some(order) = store.orders.get(&id).cloned() else {
                return message(
                    AxStatus::NOT_FOUND,
                    json!({"message": "The entity that was requested doesn't exist. Verify the entity and try again."}),
                );
            };
            if order["state"] == "complete" {
                return message(
                    AxStatus::BAD_REQUEST,
                    json!({"message": "Shipment Document Validation Error(s):\nThe order does not allow a shipment to be created.\nYou can't create a shipment without products."}),
                );
            }
            store.orders.get_mut(&id).unwrap()["state"] = json!("complete");
            store.shipments.push((id, json_body));
            let shipment = 3 + store.shipments.len() as u64;
            axum::Json(json!(shipment)).into_response()
        }
        _ => {
            let items = json_body["sourceItems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            store
                .calls
                .push(format!("POST source-items {}", items.len()));
            if items.is_empty() {
                return message(
                    AxStatus::BAD_REQUEST,
                    json!({"message": "Input data is empty"}),
                );
            }
            if items.len() > 20 {
                return message(
                    AxStatus::BAD_REQUEST,
                    json!({"message": "Maximum items of type \"%type\" is %max",
                        "parameters": {"type": "\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface", "max": 20}}),
                );
            }
            if items
                .iter()
                .any(|i| i["sku"] == "NO-SUCH" || i["source_code"] != "default")
            {
                return message(
                    AxStatus::BAD_REQUEST,
                    json!({"message": "Could not save Source Item"}),
                );
            }
            store.source_items.extend(items);
            axum::Json(json!([])).into_response()
        }
    }
}

async fn magento() -> (String, StoreState) {
    let store: StoreState = Arc::default();
    {
        let mut s = store.lock().unwrap();
        for i in 1..=230u64 {
            s.orders.insert(
                i,
                json!({"entity_id": i, "increment_id": format!("{:09}", i), "state": "processing",
                    "status": "processing", "updated_at": format!("2026-11-{:02} 10:00:00", 1 + i % 25),
                    "items": [{"item_id": 100 + i, "sku": "MH01-XS-Black", "qty_ordered": 1}]}),
            );
        }
        for (id, sku) in [(1, "MH01-XS-Black"), (2, "MH01-S-Black"), (3, "24-MB01")] {
            s.products.insert(
                id,
                json!({"id": id, "sku": sku, "name": format!("Product {id}"), "price": 52,
                    "status": 1, "type_id": "simple", "updated_at": "2026-11-20 09:00:00"}),
            );
        }
    }
    let app = Router::new().fallback(rest).with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), store)
}

async fn key(s: &Server, base: &str, token: &str) -> Value {
    s.create(
        "/keys",
        json!({"system": "magento2", "title": "Magento", "credentials": {
            "base_url": base, "access_token": token, "store_code": "uk"}}),
    )
    .await
}

async fn orders_are_read_by_updated_at_page_by_page(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, store) = magento().await;
    let k = key(&s, &base, TOKEN).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Magento orders", "system": "magento2", "function": "magento2.orders",
                "key_id": k["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Magento orders", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();
    // Busy, then failing: the first page is asked for again after each, and the run goes on.
    store.lock().unwrap().fail_next.extend([503, 500]);
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["settings"]["source"]["waited_out"], 2, "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 230);
    assert!(events.iter().any(|e| e["entity_id"] == "000000042"));
    assert_eq!(
        store.lock().unwrap().calls,
        [
            "GET orders page 1",
            "GET orders page 2",
            "GET orders page 3"
        ],
        "the count says when to stop"
    );
    {
        let mut st = store.lock().unwrap();
        st.calls.clear();
        st.orders.get_mut(&42).unwrap()["updated_at"] = json!("2026-11-30 09:15:00");
    }
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "000000042");

    // A token the store refuses: the run fails with Magento's message, its placeholder filled.
    let bad = key(&s, &base, "revoked-token").await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"]}),
    )
    .await;
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED")
            && m.contains("isn't authorized to access Magento_Sales::actions_view"),
        "{j}"
    );
}

async fn shipments_and_stock_reach_the_store(db: Db) {
    let (_env, s) = start(db).await;
    let (base, store) = magento().await;
    let k = key(&s, &base, TOKEN).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "magento2", "function": "magento2.orders",
                "key_id": k["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream_to = |function: &'static str, mode: &'static str| {
        s.stream_to(
            &source,
            json!({"title": function, "system": "magento2", "function": function,
                "key_id": k["id"], "mode": mode, "params": {},
                "retry": {"schedule_seconds": [0, 1], "timeout_seconds": 10}}),
        )
    };

    let ship = stream_to("magento2.shipment", "realtime").await;
    store.lock().unwrap().orders.get_mut(&7).unwrap()["state"] = json!("complete");
    let (_, events) = upload_and_wait(
        &s,
        &ship,
        json!([
            {"order_id": 5, "tracks": [{"track_number": "1Z999AA10123456784", "title": "United Parcel Service", "carrier_code": "ups"}], "comment": "Left the warehouse"},
            {"order_id": 999},
            {"order_id": 7},
            {"increment_id": "000000008"}
        ]),
    )
    .await;
    let of = |id: &str| {
        events
            .iter()
            .find(|e| e["payload_in"].to_string().contains(id))
            .unwrap()
            .clone()
    };
    assert_eq!(of("1Z999")["status"], "OK", "{}", of("1Z999"));
    assert_eq!(
        of("1Z999")["destination_ref"],
        "4",
        "the shipment's id, as Magento answered it"
    );
    let missing = of("999}");
    assert_eq!(missing["error_code"], "NOT_FOUND");
    assert!(missing["message"]
        .as_str()
        .unwrap()
        .contains("doesn't exist"));
    let shipped = of("\"order_id\":7");
    assert_eq!(shipped["error_code"], "INVALID_SCHEMA");
    assert!(shipped["message"]
        .as_str()
        .unwrap()
        .contains("does not allow a shipment"));
    assert_eq!(of("000000008")["error_code"], "INVALID_SCHEMA");
    {
        let st = store.lock().unwrap();
        assert_eq!(st.shipments.len(), 1);
        let (order, body) = &st.shipments[0];
        assert_eq!(*order, 5);
        assert_eq!(body["tracks"][0]["carrier_code"], "ups");
        assert_eq!(body["notify"], true);
        assert_eq!(body["appendComment"], true);
        assert_eq!(body["comment"]["comment"], "Left the warehouse");
    }

    // A server error and then the rate limit: each attempt is on record, and the shipment is
    // made in the end.
    for (order, status, code) in [(9, 500, "SERVER_ERROR"), (10, 429, "RATE_LIMITED")] {
        store.lock().unwrap().fail_next.push_back(status);
        let (_, events) = upload_and_wait(&s, &ship, json!([{"order_id": order}])).await;
        assert_eq!(events[0]["status"], "OK", "{}", events[0]);
        let attempts = crate::engine::attempts(&s, &events[0]).await;
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0]["error_code"], code, "{attempts:?}");
    }
    assert_eq!(store.lock().unwrap().shipments.len(), 3);

    // Stock for a whole job at once: 25 levels go as source items, twenty a call.
    let stock = stream_to("magento2.stock", "aggregate").await;
    let levels: Vec<Value> = (1..=25)
        .map(|i| json!({"sku": format!("MH01-{i}"), "quantity": i % 3}))
        .collect();
    let (job, _) = upload_and_wait(&s, &stock, json!(levels)).await;
    let j = wait_for_job(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    {
        let st = store.lock().unwrap();
        assert_eq!(st.source_items.len(), 25);
        assert!(st.calls.contains(&"POST source-items 20".to_string()));
        assert!(st.calls.contains(&"POST source-items 5".to_string()));
        let first = &st.source_items[0];
        assert_eq!(first["source_code"], "default");
        assert_eq!(first["status"], 1);
        let out = st
            .source_items
            .iter()
            .find(|i| i["sku"] == "MH01-3")
            .unwrap();
        assert_eq!(out["status"], 0, "nothing left is out of stock");
    }
    // An unknown SKU: Magento refuses the call, and says so.
    let (_, events) = upload_and_wait(&s, &stock, json!([{"sku": "NO-SUCH", "quantity": 1}])).await;
    assert_eq!(events[0]["status"], "FAILED", "{}", events[0]);
    assert_eq!(events[0]["error_code"], "INVALID_SCHEMA");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("Could not save Source Item"));
    // The rate limit is waited out, then the stock saved.
    store.lock().unwrap().fail_next.push_back(429);
    let (job, _) = upload_and_wait(&s, &stock, json!([{"sku": "MH01-3", "quantity": 2}])).await;
    let j = wait_for_job(&s, job["id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert!(store
        .lock()
        .unwrap()
        .source_items
        .iter()
        .any(|i| i["sku"] == "MH01-3" && i["quantity"].as_f64() == Some(2.0)));
    // A refused token: UNAUTHORIZED, final, with Magento's words.
    let bad = key(&s, &base, "wrong-token").await;
    let stream = s
        .stream_to(
            &source,
            json!({"title": "Bad", "system": "magento2", "function": "magento2.shipment",
                "key_id": bad["id"], "params": {}}),
        )
        .await;
    let (_, events) = upload_and_wait(&s, &stream, json!([{"order_id": 11}])).await;
    assert_eq!(events[0]["status"], "FAILED", "{}", events[0]);
    assert_eq!(events[0]["error_code"], "UNAUTHORIZED");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("isn't authorized"));
}

async fn products_are_read_then_only_what_changed(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, store) = magento().await;
    let k = key(&s, &base, TOKEN).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Magento products", "system": "magento2", "function": "magento2.products",
                "key_id": k["id"], "trigger": "manual", "params": {"page_size": 2}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Magento products", "product", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let skus: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        skus,
        ["MH01-XS-Black", "MH01-S-Black", "24-MB01"],
        "known by SKU"
    );
    assert_eq!(
        store.lock().unwrap().calls,
        ["GET products page 1", "GET products page 2"]
    );
    store.lock().unwrap().products.get_mut(&3).unwrap()["updated_at"] =
        json!("2026-11-30 12:00:00");
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "24-MB01");
}

both_stores!(
    products_are_read_then_only_what_changed,
    orders_are_read_by_updated_at_page_by_page,
    shipments_and_stock_reach_the_store,
);
