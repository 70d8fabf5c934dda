//! The outbound guard, size caps and deadlines, end to end. Every peer listens on loopback:
//! the guard is proved on 127.0.0.1, ::1 and `localhost` (each server counts its requests, so a
//! refusal is shown to happen before any connection); the other ranges are unit-tested in
//! `connectors::net::addr`, so no test ever sends to a non-loopback address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_stores;
use crate::common::{send, Db, Env, Server};
use crate::engine::{attempts, events_of, fetch_stream, run, upload_and_wait, wait_for_job};
use crate::peers::Sink;

/// A server that counts every request and answers a one-order page.
struct Counted {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Counted {
    async fn start(bind: &str) -> Counted {
        Counted::with(bind, |_| {
            axum::Json(json!({"orders": [{"id": "1", "name": "#1"}]})).into_response()
        })
        .await
    }

    /// Answers every request with a redirect to `to`.
    async fn redirecting(bind: &str, to: String) -> Counted {
        Counted::with(bind, move |_| {
            (AxStatus::FOUND, [(header::LOCATION, to.clone())]).into_response()
        })
        .await
    }

    async fn with(
        bind: &str,
        answer: impl Fn(usize) -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> Counted {
        Counted::slow(bind, Duration::ZERO, answer).await
    }

    /// Answers each request after `delay`.
    async fn slow(
        bind: &str,
        delay: Duration,
        answer: impl Fn(usize) -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> Counted {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().fallback(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = answer.clone();
            async move {
                tokio::time::sleep(delay).await;
                answer(n)
            }
        });
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Counted { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// A server that answers each request with `head` and then `body`, a chunk at a time every
/// `every`, written raw so nothing is buffered or framed for it.
async fn raw_server(head: &'static str, chunk: Vec<u8>, chunks: usize, every: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..chunks {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                    if !every.is_zero() {
                        tokio::time::sleep(every).await;
                    }
                }
            });
        }
    });
    format!("http://{addr}/orders")
}

/// A server on the product's defaults for the outbound guard (an empty allow list), or with
/// `allow`.
async fn start_with(
    db: Db,
    allow: &[&str],
    tweak: impl FnOnce(&mut wharf::config::Config),
) -> (Env, Server) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.outbound.allow = allow.iter().map(|s| s.to_string()).collect();
    tweak(&mut config);
    let server = Server::start(config).await;
    (env, server)
}

async fn failed_job(s: &Server, url: &str) -> Value {
    let stream = fetch_stream(s, url, "http://127.0.0.1:9/in", json!(null), false).await;
    let job = run(s, &stream).await;
    let j = wait_for_job(s, &job).await;
    assert_eq!(j["status"], "FAILED", "{url}: {j}");
    assert!(events_of(s, &job).await.is_empty(), "{j}");
    j
}

async fn fetches_of_loopback_are_refused_before_connecting(db: Db) {
    let (_env, s) = start_with(db, &[], |_| {}).await;
    let v4 = Counted::start("127.0.0.1:0").await;
    let v6 = Counted::start("[::1]:0").await;
    for (url, host) in [
        (
            format!("http://127.0.0.1:{}/orders", v4.port()),
            "127.0.0.1 is",
        ),
        (format!("http://[::1]:{}/orders", v6.port()), "[::1] is"),
        (
            format!("http://localhost:{}/orders", v4.port()),
            "localhost resolves only to",
        ),
        // Other spellings of loopback are the same address to the guard.
        (
            format!("http://2130706433:{}/orders", v4.port()),
            "127.0.0.1 is",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{}/orders", v4.port()),
            "is a loopback",
        ),
    ] {
        let j = failed_job(&s, &url).await;
        let message = j["message"].as_str().unwrap();
        assert!(message.starts_with("BLOCKED_ADDRESS: "), "{message}");
        assert!(
            message.contains(&format!("{host} a loopback address"))
                || message.contains(host) && message.contains("loopback"),
            "{message}"
        );
        assert!(message.contains("outbound.allow"), "{message}");
    }
    assert_eq!(v4.hits(), 0, "the guard refused before connecting");
    assert_eq!(v6.hits(), 0, "the guard refused before connecting");
}

async fn a_redirect_to_loopback_is_not_followed(db: Db) {
    let v4 = Counted::start("127.0.0.1:0").await;
    let v6 = Counted::start("[::1]:0").await;
    let targets = [
        format!("http://127.0.0.1:{}/orders", v4.port()),
        format!("http://[::1]:{}/orders", v6.port()),
        // A name is judged on what it resolves to, at the hop too.
        format!("http://localhost:{}/orders", v4.port()),
    ];
    // An allowed network (127.0.0.2 only) redirecting to loopback addresses and names.
    let (_env, s) = start_with(db, &["127.0.0.2/32"], |_| {}).await;
    for target in &targets {
        let hop = Counted::redirecting("127.0.0.2:0", target.clone()).await;
        let j = failed_job(&s, &format!("http://127.0.0.2:{}/orders", hop.port())).await;
        let message = j["message"].as_str().unwrap();
        assert!(message.starts_with("BLOCKED_ADDRESS: "), "{message}");
        assert!(message.contains("loopback"), "{message}");
        assert_eq!(hop.hits(), 1, "the allowed host was called");
    }
    s.stop().await;
    // A host allowed by name (`localhost`) redirecting to the addresses it stands for: an
    // allowed name does not allow its addresses.
    let (_env, s) = start_with(db, &["localhost"], |_| {}).await;
    for target in &targets[..2] {
        let hop = Counted::redirecting("127.0.0.1:0", target.clone()).await;
        let j = failed_job(&s, &format!("http://localhost:{}/orders", hop.port())).await;
        let message = j["message"].as_str().unwrap();
        assert!(message.starts_with("BLOCKED_ADDRESS: "), "{message}");
        assert!(message.contains("loopback"), "{message}");
        assert_eq!(hop.hits(), 1, "the allowed host was called");
    }
    assert_eq!(v4.hits(), 0, "no redirect was followed");
    assert_eq!(v6.hits(), 0, "no redirect was followed");
}

async fn the_allow_list_lets_loopback_through(db: Db) {
    // The harness's own allow list: 127.0.0.0/8 and ::1.
    let (_env, s) = start_with(db, &["127.0.0.0/8", "::1/128"], |_| {}).await;
    let v4 = Counted::start("127.0.0.1:0").await;
    let v6 = Counted::start("[::1]:0").await;
    let hop =
        Counted::redirecting("127.0.0.1:0", format!("http://[::1]:{}/orders", v6.port())).await;
    let sink = Sink::ok().await;
    for url in [
        format!("http://127.0.0.1:{}/orders", v4.port()),
        format!("http://[::1]:{}/orders", v6.port()),
        format!("http://localhost:{}/orders", v4.port()),
        format!("http://127.0.0.1:{}/orders", hop.port()),
    ] {
        let stream = fetch_stream(&s, &url, &sink.url(), json!(null), false).await;
        let job = run(&s, &stream).await;
        let j = wait_for_job(&s, &job).await;
        assert_eq!(j["status"], "FINISHED", "{url}: {j}");
        assert_eq!(j["counts"]["OK"], 1, "{url}: {j}");
    }
    assert_eq!(v4.hits(), 2);
    assert_eq!(v6.hits(), 2, "direct, and through the redirect");
    assert_eq!(sink.received().len(), 4);
}

/// A stream whose records are uploaded (no source read) to `url`; returns its id.
async fn upload_stream(s: &Server, url: &str, retry: Value) -> String {
    fetch_stream(s, "http://127.0.0.1:9/unused", url, retry, false).await
}

async fn upload(s: &Server, stream: &str, records: Value) -> Value {
    upload_and_wait(s, stream, records).await.0
}

async fn a_send_to_loopback_is_refused_and_final(db: Db) {
    let (_env, s) = start_with(db, &[], |_| {}).await;
    let v4 = Counted::start("127.0.0.1:0").await;
    let v6 = Counted::start("[::1]:0").await;
    for url in [
        format!("http://127.0.0.1:{}/in", v4.port()),
        format!("http://[::1]:{}/in", v6.port()),
        format!("http://localhost:{}/in", v4.port()),
    ] {
        let stream = upload_stream(&s, &url, json!(null)).await;
        let j = upload(&s, &stream, json!([{"id": "1", "name": "#1"}])).await;
        assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{url}: {j}");
        let events = events_of(&s, j["id"].as_str().unwrap()).await;
        assert_eq!(events.len(), 1);
        let ev = &events[0];
        assert_eq!(ev["status"], "FAILED", "{ev}");
        assert_eq!(ev["error_code"], "BLOCKED_ADDRESS", "{ev}");
        assert_eq!(
            ev["retries_remaining"], 0,
            "no retry of a refused host: {ev}"
        );
        let tries = attempts(&s, ev).await;
        assert_eq!(tries.len(), 1, "{tries:?}");
        assert_eq!(tries[0]["outcome"], "FAILED");
        assert_eq!(tries[0]["error_code"], "BLOCKED_ADDRESS");
        assert!(tries[0]["http_status"].is_null());
        assert!(tries[0]["response_excerpt"].is_null());
        assert!(ev["message"].as_str().unwrap().contains("loopback"), "{ev}");
    }
    assert_eq!(v4.hits(), 0, "nothing was sent");
    assert_eq!(v6.hits(), 0, "nothing was sent");
}

async fn installing_at_a_loopback_host_is_refused(db: Db) {
    let (_env, s) = start_with(db, &[], |c| {
        c.public_base_url = Some("https://wharf.example.com".into());
    })
    .await;
    let shop = Counted::start("127.0.0.1:0").await;
    let key = s
        .create(
            "/keys",
            json!({"system": "shopify", "title": "Shop", "credentials": {
                "shop_domain": "example.myshopify.com", "access_token": "shpat_admin",
                "webhook_secret": "s", "base_url": format!("http://127.0.0.1:{}", shop.port())}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "shopify", "function": "shopify.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
        )
        .await;
    let id = source["id"].as_str().unwrap();
    let (status, p) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "credentials.base_url", "{p}");
    let message = p["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("BLOCKED_ADDRESS: "), "{message}");
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(shop.hits(), 0);
    let (_, source) = s.get(&format!("/sources/{id}")).await;
    assert_ne!(source["webhooks"]["installed"], true, "{source}");

    let dear = Counted::start("[::1]:0").await;
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key",
            "base_url": format!("http://[::1]:{}/ExternalApi/v2", dear.port()),
            "webhook_auth": {"type": "bearer", "token": "tok"}}}),
        )
        .await;
    let source = s
        .create("/sources", json!({"title": "Sales", "system": "dear", "function": "dear.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["Sale/OrderAuthorised"]}}))
        .await;
    let id = source["id"].as_str().unwrap();
    let (status, p) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "credentials.base_url", "{p}");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("BLOCKED_ADDRESS: "));
    assert_eq!(dear.hits(), 0);
}

async fn a_dear_read_of_a_loopback_host_fails_the_job(db: Db) {
    let (_env, s) = start_with(db, &[], |_| {}).await;
    let dear = Counted::start("127.0.0.1:0").await;
    let key = s
        .create(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {
            "account_id": "acct-1", "application_key": "app-key",
            "base_url": format!("http://localhost:{}/ExternalApi/v2", dear.port()),
            "webhook_auth": {"type": "bearer", "token": "tok"}}}),
        )
        .await;
    let source = s
        .create("/sources", json!({"title": "Sales", "system": "dear", "function": "dear.webhook",
            "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["Sale/OrderAuthorised"]}}))
        .await;
    let dest = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": "http://127.0.0.1:9/in"}}),
        )
        .await;
    s.create(
        "/streams",
        json!({"title": "DEAR sales", "data_type": "sales_order", "source_id": source["id"],
        "transformation_id": "01900000-0000-7000-8000-000000000001", "destination_id": dest["id"]}),
    )
    .await;
    let hook = source["webhook_url"].as_str().unwrap();
    let (status, r) = send(
        s.client
            .post(s.url(hook))
            .bearer_auth("tok")
            .header("content-type", "application/json")
            .body(r#"{"SaleID": "5b4e5f8c-1d23-4c1e-9a3e-2d6f8c7b9a10"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    let j = wait_for_job(&s, job).await;
    assert_eq!(j["status"], "FAILED", "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.starts_with("BLOCKED_ADDRESS: reading sale"),
        "{message}"
    );
    assert!(
        message.contains("localhost resolves only to a loopback address"),
        "{message}"
    );
    assert!(events_of(&s, job).await.is_empty());
    assert_eq!(dear.hits(), 0);
}

async fn an_oversized_page_fails_the_job_and_a_big_answer_is_cut_to_the_excerpt(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |c| {
        c.outbound.max_response_bytes = 64 * 1024;
        c.outbound.excerpt_bytes = 1024;
    })
    .await;
    // 4 MiB with no length given: the cap has to hold while streaming, not from a header.
    let mut chunk = b"{\"orders\": [".to_vec();
    chunk.resize(64 * 1024, b' ');
    let big = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        chunk.clone(),
        64,
        Duration::ZERO,
    )
    .await;
    let j = failed_job(&s, &big).await;
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("larger than 65536 bytes"), "{message}");
    assert!(message.contains("outbound.max_response_bytes"), "{message}");

    // The same answer to a delivery: the attempt keeps its first KiB, the rest is not read.
    let sink = raw_server(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n",
        vec![b'x'; 64 * 1024],
        64,
        Duration::ZERO,
    )
    .await;
    let stream = upload_stream(&s, &sink, json!(null)).await;
    let j = upload(&s, &stream, json!([{"id": "1", "name": "#1"}])).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let ev = &events_of(&s, j["id"].as_str().unwrap()).await[0];
    let tries = attempts(&s, ev).await;
    assert_eq!(tries[0]["outcome"], "SUCCESS");
    assert_eq!(
        tries[0]["response_excerpt"].as_str().unwrap(),
        "x".repeat(1024)
    );
}

async fn a_dribbling_server_is_cut_off_at_the_deadline(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |c| {
        c.outbound.request_timeout_seconds = 1;
    })
    .await;
    // One byte every 200 ms of a 100,000-byte answer: each read is quick, the whole never ends.
    let head =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
    let dribble = raw_server(head, b" ".to_vec(), 100_000, Duration::from_millis(200)).await;
    let started = Instant::now();
    let j = failed_job(&s, &dribble).await;
    assert!(started.elapsed() < Duration::from_secs(15), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(message.starts_with("TIMEOUT: "), "{message}");
    assert!(message.contains("within 1 s"), "{message}");

    // A delivery is held to its destination's timeout, answer included.
    let stream = upload_stream(
        &s,
        &dribble,
        json!({"schedule_seconds": [0], "timeout_seconds": 1}),
    )
    .await;
    let j = upload(&s, &stream, json!([{"id": "1", "name": "#1"}])).await;
    let ev = &events_of(&s, j["id"].as_str().unwrap()).await[0];
    let tries = attempts(&s, ev).await;
    let took = tries[0]["duration_ms"].as_i64().unwrap();
    assert!((900..5000).contains(&took), "{tries:?}");
}

async fn a_job_run_ends_at_its_deadline(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |c| {
        c.outbound.job_deadline_seconds = Some(2);
    })
    .await;
    // Every page answers within 50 ms and names a next page: a run of 10,000 pages (8 min).
    let pages = Counted::slow("127.0.0.1:0", Duration::from_millis(50), |n| {
        let next = format!("</orders?page={}>; rel=\"next\"", n + 1);
        (
            [(header::LINK, next)],
            axum::Json(json!({"orders": [{"id": format!("{n}"), "name": format!("#{n}")}]})),
        )
            .into_response()
    })
    .await;
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/orders", pages.port());
    let j = failed_job(&s, &url).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(message.starts_with("TIMEOUT: "), "{message}");
    assert!(
        message.contains("outbound.job_deadline_seconds (2 s)"),
        "{message}"
    );
    assert!(pages.hits() > 1, "the run was under way");
    // Stopped, not left PROCESSING: no more pages are read.
    let seen = pages.hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pages.hits(), seen);
}

/// A page's `Link: rel="next"` names another host: the key's credentials go with every page,
/// so the run stops there rather than send them to a host the answer chose.
async fn a_next_page_on_another_host_is_not_fetched(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |_| {}).await;
    let elsewhere = Counted::start("127.0.0.2:0").await;
    let next = format!(
        "<http://127.0.0.2:{}/orders?page=2>; rel=\"next\"",
        elsewhere.port()
    );
    let first = Counted::with("127.0.0.1:0", move |_| {
        (
            [(header::LINK, next.clone())],
            axum::Json(json!({"orders": [{"id": "1"}]})),
        )
            .into_response()
    })
    .await;
    let j = failed_job(&s, &format!("http://127.0.0.1:{}/orders", first.port())).await;
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("on another host"), "{message}");
    assert_eq!(first.hits(), 1);
    assert_eq!(elsewhere.hits(), 0, "the other host was never called");
}

/// Serves on `bind`: `POST /in` is recorded (headers and body); `POST /cross` and `POST /same`
/// answer 307 to `cross_to` and to this server's own `/in`.
async fn redirecting_recorder(
    bind: &str,
    cross_to: Option<String>,
) -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
) {
    use axum::routing::post;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let cross = cross_to.unwrap_or_default();
    let app = Router::new()
        .route(
            "/in",
            post(move |headers: axum::http::HeaderMap, body: String| {
                log.lock().unwrap().push((headers, body));
                async { AxStatus::OK }
            }),
        )
        .route(
            "/cross",
            post(move || {
                let to = cross.clone();
                async move { (AxStatus::TEMPORARY_REDIRECT, [(header::LOCATION, to)]) }
            }),
        )
        .route(
            "/same",
            post(|| async { (AxStatus::TEMPORARY_REDIRECT, [(header::LOCATION, "/in")]) }),
        );
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

/// A delivery redirected to another host takes its body there but none of its key's
/// credentials or headers; redirected on its own host, it keeps them.
async fn a_redirect_to_another_host_carries_no_credentials(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |c| c.workers.poll_interval_ms = 50).await;
    let (other, elsewhere) = redirecting_recorder("127.0.0.2:0", None).await;
    let (front, here) =
        redirecting_recorder("127.0.0.1:0", Some(format!("http://{other}/in"))).await;
    let key = s
        .create(
            "/keys",
            json!({"system": "http", "title": "ERP", "credentials": {
                "base_url": format!("http://{front}"), "bearer_token": "tok_secret_value",
                "secret_headers": {"X-Api-Key": "sk_hidden_value"}}}),
        )
        .await;
    for path in ["cross", "same"] {
        let destination = s
            .create(
                "/destinations",
                json!({"title": path, "system": "http", "function": "http.send",
                    "key_id": key["id"], "params": {"url": format!("http://{front}/{path}")}}),
            )
            .await;
        let source = s
            .create(
                "/sources",
                json!({"title": path, "system": "http", "function": "http.webhook",
                    "trigger": "webhook"}),
            )
            .await;
        let stream = s
            .create(
                "/streams",
                json!({"title": path, "data_type": "sales_order", "source_id": source["id"],
                    "transformation_id": "01900000-0000-7000-8000-000000000001",
                    "destination_id": destination["id"]}),
            )
            .await;
        let (status, out) = s
            .post(
                "/events",
                json!({"stream_id": stream["id"], "payloads": [{"id": path}]}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while elsewhere.lock().unwrap().is_empty() || here.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the redirected deliveries never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (headers, body) = elsewhere.lock().unwrap()[0].clone();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"id": "cross"})
    );
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    assert!(headers.get("x-api-key").is_none(), "{headers:?}");
    let (headers, body) = here.lock().unwrap()[0].clone();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"id": "same"})
    );
    assert_eq!(headers["authorization"], "Bearer tok_secret_value");
    assert_eq!(headers["x-api-key"], "sk_hidden_value");
}

/// A source run's records are held until they are stored together: a page of very many tiny
/// records, or more records in a run than `outbound.max_records_per_run`, fail the job instead
/// of growing memory without bound.
async fn a_fetch_run_holds_a_bounded_number_of_records(db: Db) {
    let (_env, s) = start_with(db, &["127.0.0.0/8"], |c| {
        c.outbound.max_records_per_run = 5;
    })
    .await;
    let empties = Counted::with("127.0.0.1:0", |_| {
        let page = format!("{{\"orders\": [{}{{}}]}}", "{},".repeat(49_999));
        ([(header::CONTENT_TYPE, "application/json")], page).into_response()
    })
    .await;
    let j = failed_job(&s, &format!("http://127.0.0.1:{}/orders", empties.port())).await;
    let message = j["message"].as_str().unwrap();
    assert!(message.starts_with("INVALID_API_RESPONSE: "), "{message}");
    assert!(message.contains("50000 records"), "{message}");

    // Pages of three, over a limit of five records a run: the third page is never read.
    let pages = crate::peers::paginated_source(9, 3).await;
    let j = failed_job(&s, &format!("http://{pages}/orders")).await;
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("more than 5 records") && message.contains("outbound.max_records_per_run"),
        "{message}"
    );
}

both_stores!(
    fetches_of_loopback_are_refused_before_connecting,
    a_redirect_to_loopback_is_not_followed,
    the_allow_list_lets_loopback_through,
    a_send_to_loopback_is_refused_and_final,
    installing_at_a_loopback_host_is_refused,
    a_dear_read_of_a_loopback_host_fails_the_job,
    an_oversized_page_fails_the_job_and_a_big_answer_is_cut_to_the_excerpt,
    a_dribbling_server_is_cut_off_at_the_deadline,
    a_job_run_ends_at_its_deadline,
    a_next_page_on_another_host_is_not_fetched,
    a_redirect_to_another_host_carries_no_credentials,
    a_fetch_run_holds_a_bounded_number_of_records,
);
