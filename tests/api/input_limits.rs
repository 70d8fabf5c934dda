//! Inputs that would multiply memory or storage are bounded: CSV bodies, bulk replication,
//! lookup CSVs; and every refusal of a body is a problem document that names its limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{read, send, Db, Env, Server};
use crate::engine::{events_of, start};

/// A webhook source taking CSV pushes, and its stream; returns (webhook path, stream id).
async fn csv_stream(s: &Server) -> (String, String) {
    let source = s
        .create(
            "/sources",
            json!({"title": "Stock file", "system": "http", "function": "http.webhook",
            "trigger": "webhook", "params": {"format": "csv", "entity_id_path": "sku"}}),
        )
        .await;
    let dest = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": "http://127.0.0.1:9/unused"}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Stock", "data_type": "stock", "source_id": source["id"],
            "transformation_id": "01900000-0000-7000-8000-000000000001",
            "destination_id": dest["id"]}),
        )
        .await;
    let stream = stream["id"].as_str().unwrap().to_string();
    (source["webhook_url"].as_str().unwrap().to_string(), stream)
}

async fn push_csv(s: &Server, hook: &str, body: &str) -> (StatusCode, Value) {
    let req = s
        .client
        .post(s.url(hook))
        .header("content-type", "text/csv")
        .body(body.to_string());
    read(req.send().await.unwrap()).await
}

async fn upload_csv(s: &Server, stream: &str, body: &str) -> (StatusCode, Value) {
    send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "text/csv")
            .body(body.to_string()),
    )
    .await
}

/// A header row of `columns` names of `len` characters each, then `rows` empty rows.
fn crafted_csv(columns: usize, len: usize, rows: usize) -> String {
    let header: Vec<String> = (0..columns).map(|i| format!("{i:0>len$}")).collect();
    let empty = format!("{}\n", ",".repeat(columns - 1));
    format!("{}\n{}", header.join(","), empty.repeat(rows))
}

async fn csv_bodies_cannot_multiply_into_records(db: Db) {
    let (_env, s) = start(db).await;
    let (hook, stream) = csv_stream(&s).await;

    // The body: 100 columns named by 1,000 characters, 1,000 empty rows.
    let crafted = crafted_csv(100, 1000, 1000);
    assert!(crafted.len() < 200 * 1024);
    for (status, p) in [
        push_csv(&s, &hook, &crafted).await,
        upload_csv(&s, &stream, &crafted).await,
    ] {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        let why = p["errors"][0]["message"].as_str().unwrap();
        assert!(
            why.contains("csv_max_header_bytes") && why.contains("1000 bytes"),
            "{p}"
        );
    }
    // Within the header limits, the decoded size is what refuses it.
    let crafted = crafted_csv(100, 200, 1000);
    for (status, p) in [
        push_csv(&s, &hook, &crafted).await,
        upload_csv(&s, &stream, &crafted).await,
    ] {
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
        let why = p["detail"].as_str().unwrap();
        assert!(why.contains("ingest.max_decoded_ratio"), "{p}");
    }
    // Too many columns.
    let wide = crafted_csv(501, 3, 1);
    let (status, p) = upload_csv(&s, &stream, &wide).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("csv_max_columns"));
    // Nothing was stored.
    let (_, page) = s.get(&format!("/jobs?stream_id={stream}")).await;
    assert_eq!(page["items"], json!([]), "{page}");

    // An ordinary file still goes through both ways.
    let mut normal = "sku,name,on_hand,location\n".to_string();
    for i in 0..300 {
        normal.push_str(&format!("SKU-{i},Widget {i},{},Shelf {}\n", i % 17, i % 5));
    }
    let (status, r) = push_csv(&s, &hook, &normal).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let events = events_of(&s, r["job_id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 300);
    assert_eq!(
        events[7]["payload_in"],
        json!({"sku": "SKU-7", "name": "Widget 7", "on_hand": "7", "location": "Shelf 2"})
    );
    let (status, r) = upload_csv(&s, &stream, &normal).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["event_ids"].as_array().unwrap().len(), 300);
}

/// A list of empty records costs little to send and much to store (an event each).
async fn json_bodies_of_many_empty_records_are_refused(db: Db) {
    let (_env, s) = start(db).await;
    let hook = json_hook(&s).await;
    let (_, stream) = csv_stream(&s).await;
    let empties = format!("[{}{{}}]", "{},".repeat(99_999));
    let (status, p) = read(
        s.client
            .post(s.url(&hook))
            .header("content-type", "application/json")
            .body(empties.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("100000 records"),
        "{p}"
    );
    let (status, p) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(empties.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("ingest.max_decoded_ratio"),
        "{p}"
    );
    // Events made by hand are held to the same budget.
    let payloads: Value = serde_json::from_str(&empties).unwrap();
    let (status, p) = s
        .post(
            "/events",
            json!({"stream_id": stream, "payloads": payloads}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("100000 records"),
        "{p}"
    );
    let (_, page) = s.get("/jobs").await;
    assert_eq!(page["items"], json!([]), "nothing was stored: {page}");

    // A ping of an empty object, and records of ordinary size, are fine.
    let (status, p) = read(
        s.client
            .post(s.url(&hook))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    let records: Vec<Value> = (0..2000)
        .map(|i| json!({"sku": format!("SKU-{i}"), "qty": i % 7}))
        .collect();
    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(Value::Array(records).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["event_ids"].as_array().unwrap().len(), 2000);
}

/// A webhook source taking JSON pushes with an `Idempotency-Key`, and its stream.
async fn json_hook(s: &Server) -> String {
    let source = s
        .create(
            "/sources",
            json!({"title": "Pushes", "system": "http", "function": "http.webhook",
            "trigger": "webhook", "params": {}}),
        )
        .await;
    s.passthrough_stream("Pushes", "stock", &source, "http://127.0.0.1:9/unused")
        .await;
    source["webhook_url"].as_str().unwrap().to_string()
}

/// Pushes `{"id": key}` with `key` as its delivery id; the answer, its Retry-After, and how long
/// it took.
async fn push_keyed(s: &Server, hook: &str, key: &str) -> (StatusCode, Value, bool, Duration) {
    push_to(s.client.clone(), s.url(hook), key.to_string()).await
}

async fn push_to(
    client: reqwest::Client,
    url: String,
    key: String,
) -> (StatusCode, Value, bool, Duration) {
    let started = Instant::now();
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", &key)
        .body(json!({"id": key}).to_string())
        .send()
        .await
        .unwrap();
    let retry_after = res.headers().contains_key("retry-after");
    let (status, body) = read(res).await;
    (status, body, retry_after, started.elapsed())
}

/// A TCP relay to Postgres that the test can cut: existing connections are closed, and new
/// ones are accepted but never answered, as when the database host stops responding.
struct Relay {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Relay {
    async fn to(upstream: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            down: Arc::default(),
            links: Arc::default(),
            held: Arc::default(),
        };
        let (down, links, held) = (relay.down.clone(), relay.links.clone(), relay.held.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if down.load(Ordering::SeqCst) {
                    held.lock().unwrap().push(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                links.lock().unwrap().push(link);
            }
        });
        relay
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

/// Holds the store's write lock from outside the server (SQLite: a reserved lock; Postgres:
/// the tables a push writes, locked against inserts) until released.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(env: &Env) -> WriteLock {
        use sqlx::{Connection, Executor};
        match &env.pg {
            Some(pg) => {
                let mut c = sqlx::PgConnection::connect(&pg.url).await.unwrap();
                c.execute("BEGIN").await.unwrap();
                c.execute("LOCK TABLE webhook_receipts, jobs IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                WriteLock::Postgres(c)
            }
            None => {
                let url = format!("sqlite://{}", env.data_path().join("wharf.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                c.execute("BEGIN IMMEDIATE").await.unwrap();
                WriteLock::Sqlite(c)
            }
        }
    }

    async fn release(self) {
        use sqlx::{Connection, Executor};
        match self {
            WriteLock::Postgres(mut c) => {
                c.execute("ROLLBACK").await.unwrap();
                c.close().await.unwrap();
            }
            WriteLock::Sqlite(mut c) => {
                c.execute("ROLLBACK").await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// Storage gone while pushes arrive together: all are answered 503 with Retry-After at once,
/// not one connection wait after another until the request timeout; none of them is stored.
async fn a_storage_outage_fails_pushes_promptly(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    // Connections wait 3 s (the harness's acquire timeout); requests 20 s.
    config.http.request_timeout_seconds = 20;
    let relay = match &env.pg {
        Some(pg) => {
            let mut url = reqwest::Url::parse(&pg.url).unwrap();
            let host = url.host_str().unwrap().to_string();
            let port = url.port().unwrap_or(5432);
            let upstream = tokio::net::lookup_host((host.as_str(), port))
                .await
                .unwrap()
                .next()
                .unwrap();
            let relay = Relay::to(upstream).await;
            url.set_host(Some("127.0.0.1")).unwrap();
            url.set_port(Some(relay.addr.port())).unwrap();
            config.database_url = Some(url.to_string());
            Some(relay)
        }
        None => None,
    };
    let s = Server::start(config).await;
    let hook = json_hook(&s).await;
    let (status, out, _, _) = push_keyed(&s, &hook, "warm").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");

    // SQLite has no server to lose: a lock held past the busy timeout is its outage.
    let lock = match &relay {
        Some(relay) => {
            relay.cut();
            None
        }
        None => Some(WriteLock::take(&env).await),
    };
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..8 {
        pushes.spawn(push_to(s.client.clone(), s.url(&hook), format!("k{i}")));
    }
    let answers = pushes.join_all().await;
    for (status, p, retry_after, took) in &answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
        assert!(retry_after, "503 carries Retry-After");
        assert!(
            *took < Duration::from_secs(15),
            "answered after {took:?}, at the request timeout rather than at once"
        );
    }
    match (relay, lock) {
        (Some(relay), _) => relay.restore(),
        (_, Some(lock)) => lock.release().await,
        _ => unreachable!(),
    }
    // Storage back: each push is new, so none of those answered 503 was stored.
    for i in 0..8 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, out, _, _) = push_keyed(&s, &hook, &format!("k{i}")).await;
            if status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, StatusCode::ACCEPTED, "{out}");
            assert_eq!(out["duplicate"], false, "{out}");
            break;
        }
    }
}

/// A push whose request timed out (503) before its write could commit is never committed
/// after: the sender's retry is a new push, not a duplicate of one it was told failed.
async fn a_push_answered_503_is_never_committed(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.http.request_timeout_seconds = 1;
    let s = Server::start(config).await;
    let hook = json_hook(&s).await;
    let lock = WriteLock::take(&env).await;
    let (status, p, retry_after, _) = push_keyed(&s, &hook, "late").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    assert!(retry_after);
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("http.request_timeout_seconds") && detail.contains("not stored"),
        "the answer says the request ran out of time, not that storage is down: {p}"
    );
    // The write was still waiting for the lock; now it could go on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, out, _, _) = push_keyed(&s, &hook, "late").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(
        out["duplicate"], false,
        "the push answered 503 was stored: {out}"
    );
}

async fn bulk_replication_is_bounded_and_paged(db: Db) {
    let (_env, s) = start(db).await;
    let (_, stream) = csv_stream(&s).await;
    let records: Vec<Value> = (0..1001)
        .map(|i| json!({"sku": format!("R-{i}")}))
        .collect();
    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(Value::Array(records).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let job = out["job_id"].as_str().unwrap().to_string();
    let ids: Vec<Value> = out["event_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 1001);

    // Past the limit of ids: refused, naming it.
    let (status, p) = s.post("/events/replicate", json!({"event_ids": ids})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "event_ids");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ingest.replicate_max_ids"),
        "{p}"
    );
    // Within it: every listed event (read together) is replicated, a repeat too.
    let mut some: Vec<Value> = ids[..1000].to_vec();
    some[999] = ids[0].clone();
    let (status, out) = s
        .post("/events/replicate", json!({"event_ids": some}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["replicated"], 1000);
    let replica_job = out["job_ids"][0].as_str().unwrap().to_string();
    let replicas = events_of(&s, &replica_job).await;
    assert_eq!(replicas.len(), 1000);
    let of_first: Vec<&Value> = replicas
        .iter()
        .filter(|r| r["original_event_id"] == ids[0])
        .collect();
    assert_eq!(of_first.len(), 2);
    assert!(of_first
        .iter()
        .all(|r| r["payload_in"] == json!({"sku": "R-0"})));
    // An id of no event is named.
    let (status, p) = s
        .post(
            "/events/replicate",
            json!({"event_ids": [ids[0], "01900000-0000-7000-8000-00000000ffff"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("01900000-0000-7000-8000-00000000ffff"));

    // By filter, across several pages of events.
    let (status, out) = s
        .post("/events/replicate", json!({"filter": {"job_id": job}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["replicated"], 1001);
    let replicas = events_of(&s, out["job_ids"][0].as_str().unwrap()).await;
    let skus: std::collections::HashSet<&str> = replicas
        .iter()
        .map(|r| r["payload_in"]["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus.len(), 1001, "every event once");
}

async fn lookup_csv_is_safe_in_spreadsheets_and_validated(db: Db) {
    let (_env, s) = start(db).await;
    let t = s
        .create("/lookup-tables", json!({"name": "codes", "entries": {}}))
        .await;
    let id = t["id"].as_str().unwrap();
    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/entries"))
            .json(
                &json!({"entries": {"=cmd|' /C calc'!A0": "+1", "@SUM": "-2", "plain": "\tx",
                "quoted": "'=x"}}),
            ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let res = s
        .req(Method::GET, &format!("/lookup-tables/{id}/csv"))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert_eq!(
        body, "key,value\n'=cmd|' /C calc'!A0,'+1\n'@SUM,'-2\nplain,'\tx\nquoted,''=x\n",
        "no cell starts a formula"
    );
    // The download uploads back unchanged.
    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/csv"))
            .header("content-type", "text/csv")
            .body(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (_, page) = s.get(&format!("/lookup-tables/{id}/entries")).await;
    assert_eq!(
        page["items"],
        json!([{"key": "=cmd|' /C calc'!A0", "value": "+1"}, {"key": "@SUM", "value": "-2"},
               {"key": "plain", "value": "\tx"}, {"key": "quoted", "value": "'=x"}])
    );

    // The JSON API's key rule holds for uploads too.
    let long = format!("key,value\nok,1\n{},2\n", "k".repeat(501));
    let (status, p) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/csv"))
            .header("content-type", "text/csv")
            .body(long),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 3"),
        "{p}"
    );
    let (_, t) = s.get(&format!("/lookup-tables/{id}")).await;
    assert_eq!(t["entry_count"], 4, "a refused upload changes nothing");

    // Many rows, a repeated key among them (the last wins), stored together.
    let mut many = "key,value\n".to_string();
    for i in 0..1200 {
        many.push_str(&format!("K{i:04},{i}\n"));
    }
    many.push_str("K0007,last\n");
    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/csv"))
            .header("content-type", "text/csv")
            .body(many),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["entry_count"], 1200);
    let (_, page) = s
        .get(&format!("/lookup-tables/{id}/entries?limit=10"))
        .await;
    assert_eq!(page["items"][7], json!({"key": "K0007", "value": "last"}));
}

async fn odd_methods_share_one_metrics_label(db: Db) {
    let (_env, s) = start(db).await;
    let (status, _) = s.get("/keys").await;
    assert_eq!(status, StatusCode::OK);
    for method in ["FROBNICATE", "X-PROBE-1", "X-PROBE-2"] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let res = s
            .client
            .request(m, s.url("/api/v1/keys"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{method}: {}", res.status());
    }
    let text = s.metrics().await;
    assert!(
        !text.contains("FROBNICATE") && !text.contains("X-PROBE"),
        "{text}"
    );
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(text.contains("method=\"GET\""), "{text}");
}

/// Every body over the limit is a problem document naming the limit, whatever reads it.
async fn every_body_too_large_is_a_problem(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.http.body_limit_bytes = 4096;
    let s = Server::start(config).await;
    let (hook, stream) = csv_stream(&s).await;
    let t = s
        .create("/lookup-tables", json!({"name": "big", "entries": {}}))
        .await;
    let big = format!("sku,name\n{}", "A-1,Widget\n".repeat(1000));
    let requests = [
        s.client.post(s.url(&hook)),
        s.req(Method::POST, &format!("/streams/{stream}/uploads")),
        s.req(
            Method::PUT,
            &format!("/lookup-tables/{}/csv", t["id"].as_str().unwrap()),
        ),
        s.req(
            Method::POST,
            "/events/01900000-0000-7000-8000-00000000ffff/replicate",
        ),
        s.req(Method::POST, "/keys"),
    ];
    for req in requests {
        let (status, p) = send(req.header("content-type", "text/csv").body(big.clone())).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{p}");
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("http.body_limit_bytes") && detail.contains("4096"),
            "{p}"
        );
    }
}

both_stores!(
    csv_bodies_cannot_multiply_into_records,
    json_bodies_of_many_empty_records_are_refused,
    a_storage_outage_fails_pushes_promptly,
    a_push_answered_503_is_never_committed,
    bulk_replication_is_bounded_and_paged,
    lookup_csv_is_safe_in_spreadsheets_and_validated,
    odd_methods_share_one_metrics_label,
    every_body_too_large_is_a_problem,
);
