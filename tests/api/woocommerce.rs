//! WooCommerce through a local store that behaves as WooCommerce's REST API v3 does: OAuth
//! 1.0a over plain http (HMAC-SHA256 with `consumer_secret&`, a wrong secret answered 401
//! `woocommerce_rest_authentication_error`), `per_page` 1–100, `X-WP-Total`/`X-WP-TotalPages`,
//! `modified_after` with `dates_are_gmt`, a PUT to an unknown order answered 400 and a note to
//! one 404 (codes ending `_invalid_id`), SKU lookups that find variations; and its webhooks,
//! signed in `X-WC-Webhook-Signature`, with the unsigned `webhook_id=N` ping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxMethod, StatusCode as AxStatus, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{read, Db, Server};
use crate::engine::{events_of, run, start, upload_and_wait, wait_for_job};
use crate::peers::Sink;

const CK: &str = "ck_0123456789abcdef";
const CS: &str = "cs_fedcba9876543210";
const HOOK_SECRET: &str = "wc-webhook-secret-0123456789";

#[derive(Default)]
struct Shop {
    orders: BTreeMap<u64, Value>,
    products: BTreeMap<u64, Value>,
    notes: Vec<(u64, Value)>,
    webhooks: BTreeMap<u64, Value>,
    /// Every request the store answered: method, path and query.
    calls: Vec<String>,
    /// Statuses to answer the next requests with: 429 and 503 with `Retry-After: 1`, as a
    /// host in front of WordPress does; 500 as WordPress's own critical error.
    fail_next: std::collections::VecDeque<u16>,
}

type ShopState = Arc<Mutex<Shop>>;

/// RFC 3986 encoding, written here apart from the connector's so the two check each other.
fn rfc3986(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
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

fn problem(status: AxStatus, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message, "data": {"status": status.as_u16()}})),
    )
        .into_response()
}

/// WooCommerce's answer when the OAuth 1.0a signature of the request is not right.
fn refused(method: &AxMethod, url: &str, query: &[(String, String)]) -> Option<Response> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("oauth_consumer_key").as_deref() != Some(CK) {
        return Some(problem(
            AxStatus::UNAUTHORIZED,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot list resources.",
        ));
    }
    let method_ok = matches!(
        get("oauth_signature_method").as_deref(),
        Some("HMAC-SHA256") | Some("HMAC-SHA1")
    );
    let mut params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k != "oauth_signature")
        .map(|(k, v)| (rfc3986(k), rfc3986(v)))
        .collect();
    params.sort();
    let joined = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let base = format!("{}&{}&{}", method.as_str(), rfc3986(url), rfc3986(&joined));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(format!("{CS}&").as_bytes()).unwrap();
    mac.update(base.as_bytes());
    let want = STANDARD.encode(mac.finalize().into_bytes());
    if !method_ok || get("oauth_signature").as_deref() != Some(want.as_str()) {
        return Some(problem(
            AxStatus::UNAUTHORIZED,
            "woocommerce_rest_authentication_error",
            "Consumer secret is invalid.",
        ));
    }
    None
}

/// A page of `items` as WooCommerce answers a list.
fn page_of(items: Vec<Value>, query: &[(String, String)]) -> Response {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let per_page: i64 = get("per_page").and_then(|v| v.parse().ok()).unwrap_or(10);
    if !(1..=100).contains(&per_page) {
        return problem(
            AxStatus::BAD_REQUEST,
            "rest_invalid_param",
            "Invalid parameter(s): per_page",
        );
    }
    let page: usize = get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let after = get("modified_after");
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|i| {
            after
                .as_deref()
                .is_none_or(|a| i["date_modified_gmt"].as_str().unwrap_or("") > a)
        })
        .filter(|i| get("status").is_none_or(|s| i["status"] == s.as_str()))
        .filter(|i| get("sku").is_none_or(|s| i["sku"] == s.as_str()))
        // A list of products holds parents only; a SKU search finds variations too.
        .filter(|i| get("sku").is_some() || i["type"] != "variation")
        .collect();
    // `orderby=modified` sorts by the modification time, then the id (as WooCommerce appends
    // the id to date orders); anything else by id here.
    if get("orderby").as_deref() == Some("modified") {
        items.sort_by(|a, b| {
            (a["date_modified_gmt"].as_str(), a["id"].as_u64())
                .cmp(&(b["date_modified_gmt"].as_str(), b["id"].as_u64()))
        });
    } else {
        items.sort_by_key(|i| i["id"].as_u64());
    }
    let total = items.len();
    let pages = total.div_ceil(per_page as usize).max(1);
    let start = (page - 1) * per_page as usize;
    let slice: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .collect();
    (
        [
            ("x-wp-total", total.to_string()),
            ("x-wp-totalpages", pages.to_string()),
        ],
        axum::Json(Value::Array(slice)),
    )
        .into_response()
}

async fn store_api(
    State(shop): State<ShopState>,
    method: AxMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let path = uri.path().to_string();
    if let Some(answer) = refused(&method, &format!("http://{host}{path}"), &query) {
        return answer;
    }
    let mut shop = shop.lock().unwrap();
    if let Some(status) = shop.fail_next.pop_front() {
        let status = AxStatus::from_u16(status).unwrap();
        if status.as_u16() == 500 {
            return problem(
                status,
                "internal_server_error",
                "There has been a critical error on this website.",
            );
        }
        return (status, [("retry-after", "1")], "Too Many Requests").into_response();
    }
    shop.calls.push(format!("{method} {path}"));
    let parts: Vec<&str> = path
        .trim_start_matches("/wp-json/wc/v3/")
        .split('/')
        .collect();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["webhooks"]) => {
            let topics = ["order.created", "order.updated", "product.updated"];
            if !json_body["topic"]
                .as_str()
                .is_some_and(|t| topics.contains(&t))
            {
                return problem(
                    AxStatus::BAD_REQUEST,
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic is required and must be valid.",
                );
            }
            let id = 40 + shop.webhooks.len() as u64;
            let mut hook = json_body.clone();
            hook["id"] = json!(id);
            // Created webhooks are always active; the secret is never shown back.
            hook["status"] = json!("active");
            shop.webhooks.insert(id, hook.clone());
            hook.as_object_mut().unwrap().remove("secret");
            (AxStatus::CREATED, axum::Json(hook)).into_response()
        }
        ("DELETE", ["webhooks", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            if !query.iter().any(|(k, v)| k == "force" && v == "true") {
                return problem(
                    AxStatus::NOT_IMPLEMENTED,
                    "woocommerce_rest_trash_not_supported",
                    "Webhooks do not support trashing.",
                );
            }
            match shop.webhooks.remove(&id) {
                Some(h) => axum::Json(h).into_response(),
                None => problem(
                    AxStatus::NOT_FOUND,
                    "woocommerce_rest_shop_webhook_invalid_id",
                    "Invalid ID.",
                ),
            }
        }
        ("GET", ["orders"]) => page_of(shop.orders.values().cloned().collect(), &query),
        ("GET", ["products"]) => page_of(shop.products.values().cloned().collect(), &query),
        ("PUT", ["orders", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let status = json_body["status"].as_str().unwrap_or_default().to_string();
            let Some(order) = shop.orders.get_mut(&id) else {
                return problem(
                    AxStatus::BAD_REQUEST,
                    "woocommerce_rest_shop_order_invalid_id",
                    "Invalid ID.",
                );
            };
            if ![
                "pending",
                "processing",
                "on-hold",
                "completed",
                "cancelled",
                "refunded",
                "failed",
            ]
            .contains(&status.as_str())
            {
                return problem(
                    AxStatus::BAD_REQUEST,
                    "rest_invalid_param",
                    "Invalid parameter(s): status",
                );
            }
            order["status"] = json!(status);
            axum::Json(order.clone()).into_response()
        }
        ("POST", ["orders", id, "notes"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            if !shop.orders.contains_key(&id) {
                return problem(
                    AxStatus::NOT_FOUND,
                    "woocommerce_rest_order_invalid_id",
                    "Invalid order ID.",
                );
            }
            shop.notes.push((id, json_body.clone()));
            (
                AxStatus::CREATED,
                axum::Json(json!({"id": 90 + shop.notes.len(), "author": "WooCommerce",
                    "note": json_body["note"], "customer_note": json_body["customer_note"]})),
            )
                .into_response()
        }
        ("PUT", ["products", id]) | ("PUT", ["products", _, "variations", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let parent = parts.get(1).and_then(|p| p.parse::<u64>().ok());
            let Some(product) = shop.products.get_mut(&id) else {
                return problem(
                    AxStatus::BAD_REQUEST,
                    "woocommerce_rest_product_invalid_id",
                    "Invalid ID.",
                );
            };
            let is_variation = product["parent_id"].as_u64().unwrap_or(0) > 0;
            if is_variation != (parts.len() == 4)
                || (is_variation && parent != product["parent_id"].as_u64())
            {
                return problem(
                    AxStatus::BAD_REQUEST,
                    "woocommerce_rest_product_invalid_id",
                    "Invalid ID.",
                );
            }
            if let Some(q) = json_body.get("stock_quantity") {
                product["stock_quantity"] = q.clone();
            }
            if let Some(m) = json_body.get("manage_stock") {
                product["manage_stock"] = m.clone();
            }
            axum::Json(product.clone()).into_response()
        }
        _ => problem(
            AxStatus::NOT_FOUND,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        ),
    }
}

/// The store on loopback: its address and its data.
async fn shop() -> (String, ShopState) {
    let shop: ShopState = Arc::default();
    {
        let mut s = shop.lock().unwrap();
        for i in 1..=250u64 {
            s.orders.insert(
                1000 + i,
                json!({"id": 1000 + i, "number": format!("{}", 1000 + i), "status": "processing",
                    "date_modified_gmt": format!("2026-11-{:02}T10:00:00", 1 + i % 20),
                    "line_items": [{"sku": "TSHIRT-RED-M", "quantity": 1}]}),
            );
        }
        s.products.insert(
            50,
            json!({"id": 50, "sku": "MUG", "type": "simple", "parent_id": 0, "manage_stock": false,
                "stock_quantity": null, "date_modified_gmt": "2026-11-01T09:00:00"}),
        );
        s.products.insert(
            60,
            json!({"id": 60, "sku": "TSHIRT", "type": "variable", "parent_id": 0,
                "date_modified_gmt": "2026-11-01T09:00:00"}),
        );
        s.products.insert(
            61,
            json!({"id": 61, "sku": "TSHIRT-RED-M", "type": "variation", "parent_id": 60,
                "manage_stock": "parent", "stock_quantity": 2, "date_modified_gmt": "2026-11-01T09:00:00"}),
        );
    }
    let app = Router::new().fallback(store_api).with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), shop)
}

async fn key(s: &Server, base: &str, secret: &str) -> Value {
    s.create(
        "/keys",
        json!({"system": "woocommerce", "title": "Shop", "credentials": {
            "base_url": base, "consumer_key": CK, "consumer_secret": secret,
            "webhook_secret": HOOK_SECRET}}),
    )
    .await
}

async fn orders_are_read_page_by_page_then_only_what_changed(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, shop) = shop().await;
    let k = key(&s, &base, CS).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Woo orders", "system": "woocommerce", "function": "woocommerce.orders",
                "key_id": k["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Woo orders", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();

    // The first run reads all 250, in three pages of 100; a busy answer and a critical
    // error on the way are waited out and the page asked for again.
    shop.lock().unwrap().fail_next.extend([503, 500]);
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["settings"]["source"]["waited_out"], 2, "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 250);
    assert!(
        events.iter().any(|e| e["entity_id"] == "1001"),
        "an order is known by its number"
    );
    // Read in modification order (the oldest first).
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["payload_in"]["date_modified_gmt"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(
        shop.lock().unwrap().calls,
        ["GET /wp-json/wc/v3/orders"; 3],
        "three pages"
    );
    // Two orders change; the next run reads only them.
    {
        let mut sh = shop.lock().unwrap();
        sh.calls.clear();
        for id in [1007, 1100] {
            let o = sh.orders.get_mut(&id).unwrap();
            o["status"] = json!("completed");
            o["date_modified_gmt"] = json!("2026-11-30T08:00:00");
        }
    }
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let mut changed: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["1007", "1100"]);
    // Nothing changed since: an empty run.
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    assert!(events_of(&s, &job).await.is_empty());

    // A wrong consumer secret fails the run with WooCommerce's own message.
    let bad = key(&s, &base, "cs_wrong").await;
    let (status, _) = s
        .patch(
            &format!("/sources/{}", source["id"].as_str().unwrap()),
            json!({"key_id": bad["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED", "{j}");
    let message = j["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("UNAUTHORIZED") && message.contains("Consumer secret is invalid"),
        "{j}"
    );
    // Params out of WooCommerce's range are refused when the source is saved.
    let (status, problem) = s
        .post(
            "/sources",
            json!({"title": "Too big", "system": "woocommerce", "function": "woocommerce.products",
                "key_id": k["id"], "trigger": "manual", "params": {"per_page": "many"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

async fn webhooks_are_verified_and_pings_answered(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, _shop) = shop().await;
    let k = key(&s, &base, CS).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Woo hooks", "system": "woocommerce", "function": "woocommerce.webhook",
                "key_id": k["id"], "trigger": "webhook", "params": {}}),
        )
        .await;
    s.passthrough_stream("Woo hooks", "sales_order", &source, &sink.url())
        .await;
    let hook = source["webhook_url"].as_str().unwrap();
    let post = |body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        let mut req = s.client.post(s.url(hook)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    };
    // The ping when the webhook is made: answered 200, nothing stored.
    let (status, out) = read(
        post(
            b"webhook_id=7".to_vec(),
            vec![("content-type", "application/x-www-form-urlencoded".into())],
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["ping"], true);
    let (_, jobs) = s.get("/jobs").await;
    assert!(jobs["items"].as_array().unwrap().is_empty());

    let body =
        serde_json::to_vec(&json!({"id": 1042, "number": "1042", "status": "processing"})).unwrap();
    let headers = |sig: String, delivery: &str| {
        vec![
            ("content-type", "application/json".to_string()),
            (
                "x-wc-webhook-source",
                "https://shop.example.com/".to_string(),
            ),
            ("x-wc-webhook-topic", "order.created".to_string()),
            ("x-wc-webhook-resource", "order".to_string()),
            ("x-wc-webhook-event", "created".to_string()),
            ("x-wc-webhook-signature", sig),
            ("x-wc-webhook-id", "7".to_string()),
            ("x-wc-webhook-delivery-id", delivery.to_string()),
        ]
    };
    // A wrong signature, and none at all on a JSON body: refused.
    let (status, _) = read(
        post(body.clone(), headers("bm90IGl0".into(), "d1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = read(
        post(
            body.clone(),
            vec![("content-type", "application/json".into())],
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Signed: stored, known by its number; the same delivery again is a duplicate.
    let (status, r) = read(
        post(body.clone(), headers(signature(&body), "d1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events[0]["entity_id"], "1042");
    let (status, again) = read(
        post(body.clone(), headers(signature(&body), "d1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    // WooCommerce's delivery id is the webhook id and the second: another order sent in the
    // same second shares it, and must not be taken for a redelivery.
    let other =
        serde_json::to_vec(&json!({"id": 1043, "number": "1043", "status": "processing"})).unwrap();
    let (status, r) = read(
        post(other.clone(), headers(signature(&other), "d1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    assert_eq!(sink.received().len(), 2);
}

async fn order_updates_and_stock_reach_the_store(db: Db) {
    let (_env, s) = start(db).await;
    let (base, shop) = shop().await;
    let k = key(&s, &base, CS).await;
    let retry = json!({"schedule_seconds": [0, 1], "timeout_seconds": 10});
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "woocommerce", "function": "woocommerce.orders",
                "key_id": k["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream_to = |function: &'static str| {
        s.stream_to(
            &source,
            json!({"title": function, "system": "woocommerce", "function": function,
                "key_id": k["id"], "params": {}, "retry": retry}),
        )
    };

    // Orders: a status and a tracking note; an unknown order and a status WooCommerce lacks fail.
    let orders = stream_to("woocommerce.order_update").await;
    let (_, events) = upload_and_wait(
        &s,
        &orders,
        json!([
            {"id": 1001, "status": "completed", "note": "Shipped with DPD, tracking 15501234", "customer_note": true},
            {"id": 9999, "status": "completed"},
            {"id": 1002, "status": "shipped-ish"},
            {"id": 1003}
        ]),
    )
    .await;
    let by_id = |id: u64| {
        events
            .iter()
            .find(|e| e["payload_in"]["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(1001)["status"], "OK", "{}", by_id(1001));
    assert_eq!(by_id(1001)["destination_ref"], "1001");
    assert!(by_id(9999)["destination_ref"].is_null());
    assert_eq!(by_id(9999)["status"], "FAILED");
    assert_eq!(by_id(9999)["error_code"], "NOT_FOUND");
    assert!(by_id(9999)["message"]
        .as_str()
        .unwrap()
        .contains("Invalid ID."));
    assert_eq!(by_id(1002)["error_code"], "INVALID_SCHEMA");
    assert_eq!(
        by_id(1003)["error_code"],
        "INVALID_SCHEMA",
        "nothing to change"
    );
    {
        let sh = shop.lock().unwrap();
        assert_eq!(sh.orders[&1001]["status"], "completed");
        assert_eq!(sh.orders[&1002]["status"], "processing");
        assert_eq!(sh.notes.len(), 1);
        assert_eq!(sh.notes[0].0, 1001);
        assert_eq!(sh.notes[0].1["customer_note"], true);
    }

    // A critical error and then the rate limit: each attempt is on record, and the order is
    // updated in the end.
    for (order, status, code) in [(1004, 500, "SERVER_ERROR"), (1005, 429, "RATE_LIMITED")] {
        shop.lock().unwrap().fail_next.push_back(status);
        let (_, events) =
            upload_and_wait(&s, &orders, json!([{"id": order, "status": "completed"}])).await;
        assert_eq!(events[0]["status"], "OK", "{}", events[0]);
        let attempts = crate::engine::attempts(&s, &events[0]).await;
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0]["error_code"], code, "{attempts:?}");
        assert_eq!(shop.lock().unwrap().orders[&order]["status"], "completed");
    }

    // Stock: by SKU (a variation, updated under its product), by product id; an unknown SKU fails.
    let stock = stream_to("woocommerce.stock").await;
    let (_, events) = upload_and_wait(
        &s,
        &stock,
        json!([
            {"sku": "TSHIRT-RED-M", "quantity": 7},
            {"product_id": 50, "quantity": 3},
            {"sku": "NO-SUCH", "quantity": 1}
        ]),
    )
    .await;
    let ok = events.iter().filter(|e| e["status"] == "OK").count();
    assert_eq!(ok, 2, "{events:?}");
    let missing = events
        .iter()
        .find(|e| e["payload_in"]["sku"] == "NO-SUCH")
        .unwrap();
    assert_eq!(missing["error_code"], "NOT_FOUND");
    {
        let sh = shop.lock().unwrap();
        assert_eq!(sh.products[&61]["stock_quantity"], 7);
        assert_eq!(sh.products[&50]["stock_quantity"], 3);
        assert_eq!(sh.products[&50]["manage_stock"], true);
        assert!(sh
            .calls
            .iter()
            .any(|c| c == "PUT /wp-json/wc/v3/products/60/variations/61"));
    }
    // The rate limit is waited out, then the level set.
    shop.lock().unwrap().fail_next.push_back(429);
    let (_, events) = upload_and_wait(&s, &stock, json!([{"product_id": 50, "quantity": 4}])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let attempts = crate::engine::attempts(&s, &events[0]).await;
    assert_eq!(attempts[0]["error_code"], "RATE_LIMITED", "{attempts:?}");
    assert_eq!(shop.lock().unwrap().products[&50]["stock_quantity"], 4);
    // A wrong secret: UNAUTHORIZED, final, with WooCommerce's words.
    let bad = key(&s, &base, "cs_wrong").await;
    let stream = s
        .stream_to(
            &source,
            json!({"title": "Bad", "system": "woocommerce", "function": "woocommerce.stock",
                "key_id": bad["id"], "params": {}, "retry": retry}),
        )
        .await;
    let (_, events) =
        upload_and_wait(&s, &stream, json!([{"product_id": 50, "quantity": 5}])).await;
    assert_eq!(events[0]["status"], "FAILED", "{}", events[0]);
    assert_eq!(events[0]["error_code"], "UNAUTHORIZED");
    assert_eq!(events[0]["attempt_count"], 1, "not retried");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("Consumer secret is invalid"));
}

async fn webhooks_install_at_the_store_and_come_off_again(db: Db) {
    let env = crate::common::Env::new(db).await;
    let mut config = env.config();
    config.public_base_url = Some("https://wharf.example.com".into());
    let s = Server::start(config).await;
    let sink = Sink::ok().await;
    let (base, shop) = shop().await;
    let k = key(&s, &base, CS).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Woo hooks", "system": "woocommerce", "function": "woocommerce.webhook",
                "key_id": k["id"], "trigger": "webhook",
                "params": {"topics": ["order.created", "order.updated"]}}),
        )
        .await;
    s.passthrough_stream("Woo hooks", "sales_order", &source, &sink.url())
        .await;
    let id = source["id"].as_str().unwrap();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["webhooks"]["installed"], true);
    {
        let sh = shop.lock().unwrap();
        assert_eq!(sh.webhooks.len(), 2);
        for hook in sh.webhooks.values() {
            assert_eq!(hook["delivery_url"], source["webhook_url"]);
            assert_eq!(hook["secret"], HOOK_SECRET, "signed with the key's secret");
            assert_eq!(hook["name"], "Wharf: Woo hooks");
        }
    }
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/uninstall"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(shop.lock().unwrap().webhooks.is_empty());
    // A topic WooCommerce does not have: the store's refusal, quoted, and the webhook made
    // before it removed again, so nothing delivers unseen.
    let (status, _) = s
        .patch(
            &format!("/sources/{id}"),
            json!({"params": {"topics": ["order.created", "order.exploded"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("woocommerce_rest_shop_webhook_invalid_topic"));
    assert!(shop.lock().unwrap().webhooks.is_empty(), "no orphan left");
}

async fn products_are_read_then_only_what_changed(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, shop) = shop().await;
    let k = key(&s, &base, CS).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Woo products", "system": "woocommerce", "function": "woocommerce.products",
                "key_id": k["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Woo products", "product", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let mut ids: Vec<u64> = events
        .iter()
        .map(|e| e["payload_in"]["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [50, 60], "products, not their variations");
    shop.lock().unwrap().products.get_mut(&60).unwrap()["date_modified_gmt"] =
        json!("2026-11-30T08:00:00");
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["payload_in"]["id"], 60);
}

both_stores!(
    products_are_read_then_only_what_changed,
    webhooks_install_at_the_store_and_come_off_again,
    orders_are_read_page_by_page_then_only_what_changed,
    webhooks_are_verified_and_pings_answered,
    order_updates_and_stock_reach_the_store,
);
