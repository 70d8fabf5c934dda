//! Webhook ingest: verification, formats, deduplication, durability, DEAR thin payloads and
//! subscription installation, against local servers that behave like Shopify's and DEAR's APIs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{read, send, Db, Env, Server};
use crate::engine::{events_of, start, wait_for_job};
use crate::peers::Sink;

pub(crate) const SECRET: &str = "shpss_webhook_secret";

fn sign(body: &[u8], secret: &str) -> String {
    wharf_testkit::sign::hmac_sha256_base64(secret.as_bytes(), body)
}

fn order(n: u64) -> Value {
    json!({"id": 820982911946154000u64 + n, "name": format!("#{}", 1000 + n), "email": "jon@example.com",
           "total_price": "199.65", "currency": "GBP", "financial_status": "paid",
           "line_items": [{"id": 866550311766439000u64 + n, "sku": "IPOD2008PINK", "quantity": 1, "price": "199.00"}]})
}

/// A Shopify webhook stream to `sink`; returns (webhook path, source id).
async fn shopify_stream(s: &Server, sink: &Sink, base_url: Option<String>) -> (String, String) {
    let mut creds = json!({"shop_domain": "example.myshopify.com", "access_token": "shpat_admin", "webhook_secret": SECRET});
    if let Some(b) = base_url {
        creds["base_url"] = json!(b);
    }
    let key = s
        .create(
            "/keys",
            json!({"system": "shopify", "title": "Shop", "credentials": creds}),
        )
        .await;
    let source = s
        .create("/sources", json!({"title": "Orders", "system": "shopify", "function": "shopify.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["orders/create", "orders/updated"]}}))
        .await;
    s.passthrough_stream("Shop orders", "sales_order", &source, &sink.url())
        .await;
    (
        source["webhook_url"].as_str().unwrap().to_string(),
        source["id"].as_str().unwrap().to_string(),
    )
}

pub(crate) async fn push(
    s: &Server,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (StatusCode, Value) {
    let mut req = s.client.post(s.url(path)).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    read(req.send().await.unwrap()).await
}

pub(crate) fn shopify_headers(
    body: &[u8],
    secret: &str,
    webhook_id: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("x-shopify-hmac-sha256", sign(body, secret)),
        ("x-shopify-topic", "orders/create".into()),
        ("x-shopify-shop-domain", "example.myshopify.com".into()),
        ("x-shopify-webhook-id", webhook_id.into()),
        (
            "x-shopify-event-id",
            "98880550-7158-44d4-b7cd-2c97c8a091b5".into(),
        ),
        ("x-shopify-triggered-at", "2026-11-22T10:00:00Z".into()),
        ("x-shopify-api-version", "2025-01".into()),
    ]
}

async fn jobs(s: &Server) -> Vec<Value> {
    let (_, page) = s.get("/jobs").await;
    page["items"].as_array().unwrap().clone()
}

async fn signed_shopify_push_is_stored_before_202(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (hook, _) = shopify_stream(&s, &sink, None).await;
    let body = serde_json::to_vec(&order(1)).unwrap();
    let (status, receipt) = push(
        &s,
        &hook,
        &body,
        &shopify_headers(&body, SECRET, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    let job = receipt["job_id"].as_str().unwrap();
    // Stored before the answer: the job and its event exist already.
    let (status, j) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(j["trigger"], "webhook");
    assert_eq!(j["settings"]["webhook"]["topic"], "orders/create");
    assert_eq!(
        j["settings"]["webhook"]["shop_domain"],
        "example.myshopify.com"
    );
    assert_eq!(
        j["settings"]["webhook"]["event_id"],
        "98880550-7158-44d4-b7cd-2c97c8a091b5"
    );
    assert_eq!(j["settings"]["webhook"]["api_version"], "2025-01");
    let j = wait_for_job(&s, job).await;
    assert_eq!(j["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "#1001");
    assert_eq!(sink.received()[0].body, order(1));
}

async fn unverified_pushes_are_401_and_store_nothing(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (hook, source) = shopify_stream(&s, &sink, None).await;
    let body = serde_json::to_vec(&order(2)).unwrap();
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let good = shopify_headers(&body, SECRET, "w-1");
    let wrong_secret = shopify_headers(&body, "not-the-secret", "w-2");
    let missing: Vec<_> = good
        .iter()
        .filter(|(k, _)| *k != "x-shopify-hmac-sha256")
        .cloned()
        .collect();
    for (b, h) in [
        (&tampered, &good),
        (&body, &wrong_secret),
        (&body, &missing),
    ] {
        let (status, p) = push(&s, &hook, b, h).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("nothing was stored"));
    }
    assert!(jobs(&s).await.is_empty(), "nothing stored");
    let (_, src) = s.get(&format!("/sources/{source}")).await;
    assert_eq!(src["rejected_count"], 3);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"wharf_webhooks_total{system="shopify",outcome="rejected"} 3"#),
        "{metrics}"
    );

    // Unknown and inactive sources are not found.
    let (status, _) = push(&s, "/hooks/no-such-token", &body, &good).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .patch(&format!("/sources/{source}"), json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = push(&s, &hook, &body, &good).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(jobs(&s).await.is_empty());
}

async fn concurrent_duplicates_make_one_job(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (hook, _) = shopify_stream(&s, &sink, None).await;
    let body = serde_json::to_vec(&order(3)).unwrap();
    let headers = shopify_headers(&body, SECRET, "dup-0001");
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (s, hook, body, headers) = (s.clone(), hook.clone(), body.clone(), headers.clone());
        tasks.push(tokio::spawn(async move {
            push(&s, &hook, &body, &headers).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let created = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::ACCEPTED)
        .count();
    let dups = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    assert_eq!((created, dups), (1, 9), "{answers:?}");
    let job_ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(_, b)| b["job_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(job_ids.len(), 1, "every answer names the one job");
    assert_eq!(jobs(&s).await.len(), 1);
    wait_for_job(&s, job_ids.iter().next().unwrap()).await;
    assert_eq!(sink.received().len(), 1);
}

/// Pushes arriving together commit together: every one is answered after the commit, repeats
/// within the same burst name the first delivery's job, and each order arrives once.
async fn a_burst_of_pushes_is_stored_and_delivered_once_each(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (hook, _) = shopify_stream(&s, &sink, None).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for round in 0..3 {
        for n in 0..40u64 {
            let body = serde_json::to_vec(&order(100 + n)).unwrap();
            let headers = shopify_headers(&body, SECRET, &format!("burst-{n}"));
            let (s, hook) = (s.clone(), hook.clone());
            tasks.push(tokio::spawn(async move {
                let (status, receipt) = push(&s, &hook, &body, &headers).await;
                (round, n, status, receipt)
            }));
        }
    }
    let mut by_order: HashMap<u64, Vec<(StatusCode, String)>> = HashMap::new();
    for t in tasks {
        let (_, n, status, receipt) = t.await.unwrap();
        assert!(
            status == StatusCode::ACCEPTED || status == StatusCode::OK,
            "{status} {receipt}"
        );
        assert_eq!(receipt["duplicate"], status == StatusCode::OK, "{receipt}");
        by_order
            .entry(n)
            .or_default()
            .push((status, receipt["job_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(by_order.len(), 40);
    for (n, answers) in &by_order {
        let created = answers
            .iter()
            .filter(|(st, _)| *st == StatusCode::ACCEPTED)
            .count();
        assert_eq!(created, 1, "order {n}: {answers:?}");
        let ids: std::collections::HashSet<_> = answers.iter().map(|(_, j)| j).collect();
        assert_eq!(
            ids.len(),
            1,
            "order {n}: every answer names one job: {answers:?}"
        );
    }
    for answers in by_order.values() {
        let job = wait_for_job(&s, &answers[0].1).await;
        assert_eq!(job["status"], "FINISHED", "{job}");
        assert_eq!(events_of(&s, &answers[0].1).await.len(), 1);
    }
    let (_, page) = s.get("/jobs?limit=100").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 40);
    let mut delivered: HashMap<u64, usize> = HashMap::new();
    for r in sink.received() {
        *delivered.entry(r.body["id"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(delivered.len(), 40, "{delivered:?}");
    assert!(delivered.values().all(|k| *k == 1), "{delivered:?}");
}

/// U+0000 in a push is kept: a payload is stored as its JSON text on both stores (`json` on
/// Postgres, which keeps `\u0000` as written) and delivered as it came, while pushes committed
/// beside it (usually in the same batch) are stored and delivered once each. An entity id is
/// text: there U+0000 is U+FFFD, on both stores alike.
async fn a_push_holding_u0000_is_stored_and_delivered(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let hook = http_stream(&s, &sink, json!({"entity_id_path": "ref"}), json!({})).await;
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for n in 0..30u64 {
        let body = if n == 15 {
            br#"{"id": 15, "ref": "R\u0000", "note": "a\u0000b"}"#.to_vec()
        } else {
            serde_json::to_vec(&json!({"id": n})).unwrap()
        };
        let (s, hook) = (s.clone(), hook.clone());
        tasks.push(tokio::spawn(async move {
            let headers = [("content-type", "application/json".to_string())];
            (n, push(&s, &hook, &body, &headers).await)
        }));
    }
    let mut jobs_made = Vec::new();
    let mut job_15 = None;
    for t in tasks {
        let (n, (status, body)) = t.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "push {n}: {body}");
        let job = body["job_id"].as_str().unwrap().to_string();
        if n == 15 {
            job_15 = Some(job.clone());
        }
        jobs_made.push(job);
    }
    for job in &jobs_made {
        wait_for_job(&s, job).await;
    }
    assert_eq!(jobs_made.len(), 30);
    let (_, page) = s.get("/jobs?limit=100").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        30,
        "nothing else stored"
    );
    let events = events_of(&s, &job_15.unwrap()).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(events[0]["entity_id"], "R\u{FFFD}");
    assert_eq!(events[0]["payload_in"]["note"], "a\u{0}b");
    assert_eq!(events[0]["payload_in"]["ref"], "R\u{0}");
    let mut delivered: HashMap<u64, usize> = HashMap::new();
    for r in sink.received() {
        *delivered.entry(r.body["id"].as_u64().unwrap()).or_default() += 1;
        if r.body["id"] == 15 {
            assert_eq!(r.body["note"], "a\u{0}b", "delivered as it came");
        }
    }
    assert_eq!(delivered.len(), 30, "{delivered:?}");
    assert!(delivered.values().all(|k| *k == 1), "{delivered:?}");
}

async fn bad_bodies_are_refused(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.http.body_limit_bytes = 4096;
    let s = Server::start(config).await;
    let sink = Sink::ok().await;
    let (hook, _) = shopify_stream(&s, &sink, None).await;
    let big = serde_json::to_vec(&json!({"note": "x".repeat(8000)})).unwrap();
    let (status, p) = push(&s, &hook, &big, &shopify_headers(&big, SECRET, "big")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    let malformed = b"{\"id\": 1, ";
    let (status, p) = push(
        &s,
        &hook,
        malformed,
        &shopify_headers(malformed, SECRET, "bad"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("not valid JSON"),
        "{p}"
    );
    assert!(jobs(&s).await.is_empty());
    s.stop().await;
}

/// A generic http webhook source with the given params and key.
async fn http_stream(s: &Server, sink: &Sink, params: Value, creds: Value) -> String {
    let key = s
        .create(
            "/keys",
            json!({"system": "http", "title": "push", "credentials": creds}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Pushes", "system": "http", "function": "http.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": params}),
        )
        .await;
    s.passthrough_stream("Pushes", "stock", &source, &sink.url())
        .await;
    source["webhook_url"].as_str().unwrap().to_string()
}

async fn csv_and_generic_pushes(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let hook = http_stream(
        &s,
        &sink,
        json!({"format": "csv", "entity_id_path": "sku"}),
        json!({}),
    )
    .await;
    let csv = b"sku,on_hand\nA-1,5\nB-2,0\nC-3,12\n";
    let (status, r) = push(&s, &hook, csv, &[("content-type", "text/csv".into())]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    wait_for_job(&s, job).await;
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[1]["payload_in"],
        json!({"sku": "B-2", "on_hand": "0"})
    );
    assert_eq!(events[1]["entity_id"], "B-2");

    // HMAC in hex under a header of the sender's choosing, and Idempotency-Key dedup.
    let hook = http_stream(
        &s,
        &sink,
        json!({"hmac_header": "X-Signature", "hmac_encoding": "hex"}),
        json!({"hmac_secret": "s3cret"}),
    )
    .await;
    let body = br#"[{"id": "x1"}, {"id": "x2"}]"#;
    let hex = wharf_testkit::sign::hmac_sha256_hex(b"s3cret", body);
    let headers = vec![
        ("x-signature", format!("sha256={hex}")),
        ("idempotency-key", "k-1".to_string()),
    ];
    let (status, r) = push(&s, &hook, body, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let (status, again) = push(&s, &hook, body, &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["job_id"], r["job_id"]);
    assert_eq!(again["duplicate"], true);
    let (status, _) = push(&s, &hook, body, &[("x-signature", "sha256=00".to_string())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A DEAR API on loopback: sales by id (the first read answers 429), and webhook subscriptions.
#[derive(Clone, Default)]
struct DearMock {
    calls: Arc<Mutex<Vec<String>>>,
    subscriptions: Arc<Mutex<HashMap<String, Value>>>,
}

async fn dear_api() -> (String, DearMock) {
    let mock = DearMock::default();
    let authed = |h: &HeaderMap| {
        h.get("api-auth-accountid").is_some_and(|v| v == "acct-1")
            && h.get("api-auth-applicationkey")
                .is_some_and(|v| v == "app-key")
    };
    let app = Router::new()
        .route("/ExternalApi/v2/sale", get(move |State(m): State<DearMock>, h: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
            if !authed(&h) {
                return (AxStatus::FORBIDDEN, "bad credentials").into_response();
            }
            let id = q.get("ID").cloned().unwrap_or_default();
            let first = {
                let mut calls = m.calls.lock().unwrap();
                calls.push(format!("GET sale {id}"));
                calls.len() == 1
            };
            if first {
                return (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response();
            }
            axum::Json(json!({"ID": id, "Customer": "Cash Customer", "Status": "ORDERED",
                "Order": {"SaleOrderNumber": "SO-00042", "Lines": [{"SKU": "A-1", "Quantity": 2}]}})).into_response()
        }))
        .route("/ExternalApi/v2/webhooks", post(|State(m): State<DearMock>, axum::Json(b): axum::Json<Value>| async move {
            let id = format!("wh-{}", m.subscriptions.lock().unwrap().len() + 1);
            m.subscriptions.lock().unwrap().insert(id.clone(), b.clone());
            let mut out = b;
            out["ID"] = json!(id);
            axum::Json(out)
        }))
        .route("/ExternalApi/v2/webhooks", delete(|State(m): State<DearMock>, Query(q): Query<HashMap<String, String>>| async move {
            let id = q.get("ID").cloned().unwrap_or_default();
            match m.subscriptions.lock().unwrap().remove(&id) {
                Some(_) => (AxStatus::OK, "").into_response(),
                None => (AxStatus::NOT_FOUND, "").into_response(),
            }
        }))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/ExternalApi/v2"), mock)
}

async fn dear_stream(s: &Server, sink: &Sink, base: &str, auth: Value) -> (String, String) {
    let key = s
        .create("/keys", json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key", "base_url": base, "webhook_auth": auth}}))
        .await;
    let source = s
        .create("/sources", json!({"title": "Sales", "system": "dear", "function": "dear.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["Sale/OrderAuthorised"]}}))
        .await;
    s.passthrough_stream("DEAR sales", "sales_order", &source, &sink.url())
        .await;
    (
        source["webhook_url"].as_str().unwrap().to_string(),
        source["id"].as_str().unwrap().to_string(),
    )
}

async fn dear_pushes_are_verified_and_completed_from_the_api(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, mock) = dear_api().await;

    // Basic credentials.
    let (hook, _) = dear_stream(
        &s,
        &sink,
        &base,
        json!({"type": "basic", "username": "dear", "password": "pw"}),
    )
    .await;
    let thin =
        br#"{"SaleID": "5b4e5f8c-1d23-4c1e-9a3e-2d6f8c7b9a10", "SaleOrderNumber": "SO-00042"}"#;
    let basic = format!("Basic {}", STANDARD.encode("dear:pw"));
    let wrong = format!("Basic {}", STANDARD.encode("dear:nope"));
    let (status, _) = push(&s, &hook, thin, &[("authorization", wrong)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, r) = push(&s, &hook, thin, &[("authorization", basic)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    let j = wait_for_job(&s, job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    // The event carries the full sale read from the API (after backing off a 429).
    assert_eq!(
        events[0]["payload_in"]["Order"]["SaleOrderNumber"],
        "SO-00042"
    );
    assert_eq!(
        events[0]["entity_id"],
        "5b4e5f8c-1d23-4c1e-9a3e-2d6f8c7b9a10"
    );
    assert_eq!(
        mock.calls.lock().unwrap().len(),
        2,
        "one 429, then the read"
    );
    assert_eq!(sink.received()[0].body["Customer"], "Cash Customer");

    // A custom header.
    let (hook, _) = dear_stream(
        &s,
        &sink,
        &base,
        json!({"type": "header", "header_name": "X-Dear-Secret", "header_value": "hv"}),
    )
    .await;
    let (status, _) = push(&s, &hook, thin, &[("x-dear-secret", "nope".to_string())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = push(&s, &hook, thin, &[("x-dear-secret", "hv".to_string())]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // A push is kept as sent, U+0000 included, on both stores: a thin push's records are
    // the job's (`json` on Postgres, as events' payloads are).
    let nul = br#"{"SaleID": "5b4e5f8c-1d23-4c1e-9a3e-2d6f8c7b9a10", "Note": "a\u0000b"}"#;
    let (status, r) = push(&s, &hook, nul, &[("x-dear-secret", "hv".to_string())]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let j = wait_for_job(&s, r["job_id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
}

/// A Shopify Admin API on loopback: webhook subscriptions, behind the access token.
/// A local store answering the GraphQL Admin API (see `shopify.rs`), whose token is
/// `shpat_admin`… as every Shopify key of these tests gives.
pub(crate) async fn shopify_api() -> (String, crate::shopify::Shop) {
    crate::shopify::store_with_token("shpat_admin").await
}

async fn subscriptions_install_and_uninstall(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.public_base_url = Some("https://wharf.example.com".into());
    let s = Server::start(config).await;
    let sink = Sink::ok().await;

    let (shop, subs) = shopify_api().await;
    let (hook, source) = shopify_stream(&s, &sink, Some(shop)).await;
    assert!(hook.starts_with("https://wharf.example.com/hooks/"));
    let (status, out) = s
        .post(&format!("/sources/{source}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["webhooks"]["installed"], true);
    assert_eq!(
        out["webhooks"]["subscriptions"].as_array().unwrap().len(),
        2
    );
    // Installing again replaces the subscriptions: none is left behind at the store.
    let (status, again) = s
        .post(&format!("/sources/{source}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(subs.lock().unwrap().subscriptions.len(), 2);
    assert_ne!(
        again["webhooks"]["subscriptions"][0]["id"],
        out["webhooks"]["subscriptions"][0]["id"]
    );
    {
        let subs = &subs.lock().unwrap().subscriptions;
        let topics: Vec<_> = subs
            .values()
            .map(|w| w["topic"].as_str().unwrap().to_string())
            .collect();
        assert!(
            topics.contains(&"ORDERS_CREATE".to_string())
                && topics.contains(&"ORDERS_UPDATED".to_string())
        );
        assert!(subs
            .values()
            .all(|w| w["callbackUrl"] == hook && w["format"] == "JSON"));
    }
    let (status, out) = s
        .post(
            &format!("/sources/{source}/webhooks/uninstall"),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["webhooks"]["installed"], false);
    assert!(subs.lock().unwrap().subscriptions.is_empty());

    let (base, mock) = dear_api().await;
    let (hook, source) =
        dear_stream(&s, &sink, &base, json!({"type": "bearer", "token": "tok"})).await;
    let (status, out) = s
        .post(&format!("/sources/{source}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    {
        let subs = mock.subscriptions.lock().unwrap();
        let sub = subs.values().next().unwrap();
        assert_eq!(sub["Type"], "Sale/OrderAuthorised");
        assert_eq!(sub["ExternalURL"], hook.as_str());
        assert_eq!(sub["ExternalAuthorizationType"], "bearerauth");
        assert_eq!(sub["ExternalBearerToken"], "tok");
    }
    let (status, _) = s
        .post(
            &format!("/sources/{source}/webhooks/uninstall"),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(mock.subscriptions.lock().unwrap().is_empty());

    // A system that refuses is a 502 that says so.
    let (shop, _) = shopify_api().await;
    let key = s
        .create(
            "/keys",
            json!({"system": "shopify", "title": "Bad", "credentials": {
        "shop_domain": "x.myshopify.com", "access_token": "wrong", "base_url": shop}}),
        )
        .await;
    let src = s
        .create(
            "/sources",
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook",
        "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
        )
        .await;
    let (status, p) = s
        .post(
            &format!("/sources/{}/webhooks/install", src["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("401"), "{p}");
    s.stop().await;
}

/// The same Shopify order gets the same entity id however it arrives: pushed, uploaded, made
/// by hand, or replicated with an edited payload.
async fn every_way_in_names_the_same_entity(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (hook, _) = shopify_stream(&s, &sink, None).await;
    let body = serde_json::to_vec(&order(1)).unwrap();
    let (status, receipt) = push(&s, &hook, &body, &shopify_headers(&body, SECRET, "e-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    let pushed = receipt["job_id"].as_str().unwrap().to_string();
    let (_, streams) = s.get("/streams").await;
    let stream = streams["items"][0]["id"].as_str().unwrap().to_string();

    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(json!([order(2)]).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let uploaded = out["job_id"].as_str().unwrap().to_string();
    let (status, out) = s
        .post(
            "/events",
            json!({"stream_id": stream, "payloads": [order(3)]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let by_hand = out["job_id"].as_str().unwrap().to_string();
    wait_for_job(&s, &pushed).await;
    let (status, out) = s
        .post(
            &format!("/jobs/{pushed}/replicate"),
            json!({"payload": [order(4)]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let replica = out["job_id"].as_str().unwrap().to_string();

    for (job, name) in [
        (&pushed, "#1001"),
        (&uploaded, "#1002"),
        (&by_hand, "#1003"),
        (&replica, "#1004"),
    ] {
        wait_for_job(&s, job).await;
        let events = events_of(&s, job).await;
        assert_eq!(events.len(), 1, "{job}");
        assert_eq!(events[0]["entity_id"], name, "{:?}", events[0]);
    }
}

/// A push whose body is one JSON record is stored as its text, not parsed into a value first:
/// its entity id is still read where the source says (through lists, a key given twice
/// counting as its last, a number as its text), and a body nested past the parser's limit or
/// cut short is still refused with nothing stored.
async fn one_record_pushes_name_their_entity(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let hook = http_stream(
        &s,
        &sink,
        json!({"entity_id_path": "order.lines.1.sku"}),
        json!({}),
    )
    .await;
    let headers = [("content-type", "application/json".to_string())];
    let body = br#" {"order": {"lines": [{"sku": "A-1"}, {"sku": "B-2"}]},
                     "order": {"lines": [{"sku": "C-3"}, {"sku": 42}]}} "#;
    let (status, r) = push(&s, &hook, body, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    wait_for_job(&s, job).await;
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "42", "{:?}", events[0]);
    assert_eq!(
        events[0]["payload_in"],
        json!({"order": {"lines": [{"sku": "C-3"}, {"sku": 42}]}})
    );
    assert_eq!(sink.received().len(), 1);

    let deep = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
    for bad in [deep.as_bytes(), br#"{"order": {"lines": []}"#.as_slice()] {
        let (status, p) = push(&s, &hook, bad, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
        assert!(
            p["detail"].as_str().unwrap().contains("not valid JSON"),
            "{p}"
        );
    }
    assert_eq!(jobs(&s).await.len(), 1, "nothing else stored");
}

both_stores!(
    one_record_pushes_name_their_entity,
    signed_shopify_push_is_stored_before_202,
    every_way_in_names_the_same_entity,
    unverified_pushes_are_401_and_store_nothing,
    concurrent_duplicates_make_one_job,
    a_burst_of_pushes_is_stored_and_delivered_once_each,
    a_push_holding_u0000_is_stored_and_delivered,
    bad_bodies_are_refused,
    csv_and_generic_pushes,
    dear_pushes_are_verified_and_completed_from_the_api,
    subscriptions_install_and_uninstall,
);

/// With Postgres gone, a push is 503: never a 2xx for data not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_push_is_503() {
    let (env, s) = start(Db::Postgres).await;
    let sink = Sink::ok().await;
    let hook = http_stream(&s, &sink, json!({}), json!({})).await;
    env.pg.as_ref().unwrap().drop_now().await;
    let (status, p) = push(&s, &hook, br#"{"id": 1}"#, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
}
