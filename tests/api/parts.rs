//! The parts of a process (API, webhook ingest, workers, scheduler, maintenance) each switch
//! off alone, and code outside the API never reaches into it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{no_wharf_connection_left, read, wharf_connections, Db, Env, Server};
use crate::engine::events_of;
use crate::peers::Sink;

/// A generic webhook stream (no signature asked) to `sink`; returns the webhook path.
async fn webhook_stream(s: &Server, sink: &Sink) -> String {
    let source = s
        .create(
            "/sources",
            json!({"title": "Pushes", "system": "http", "function": "http.webhook",
            "trigger": "webhook", "params": {"entity_id_path": "sku"}}),
        )
        .await;
    s.passthrough_stream("Pushes", "stock", &source, &sink.url())
        .await;
    source["webhook_url"].as_str().unwrap().to_string()
}

async fn push(s: &Server, hook: &str, body: Value, delivery_id: &str) -> (StatusCode, Value) {
    let req = s
        .client
        .post(s.url(hook))
        .header("idempotency-key", delivery_id)
        .json(&body);
    read(req.send().await.unwrap()).await
}

async fn with_the_api_off_ingest_still_stores_pushes(db: Db) {
    let env = Env::new(db).await;
    let sink = Sink::ok().await;
    let s = Server::start(env.config()).await;
    let hook = webhook_stream(&s, &sink).await;
    s.stop().await;

    let mut ingest_only = env.config();
    ingest_only.api.enabled = false;
    ingest_only.workers.enabled = false;
    let s = Server::start(ingest_only).await;
    for path in [
        "/api/v1/jobs",
        "/api/v1/keys",
        "/docs",
        "/api/v1/openapi.json",
    ] {
        let res = s
            .client
            .get(s.url(path))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "health stays with the API off"
    );
    let (status, r) = push(&s, &hook, json!([{"sku": "A-1"}, {"sku": "B-2"}]), "d-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap().to_string();
    // With the workers off too, nothing moves the stored events on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.stop().await;

    let mut api_only = env.config();
    api_only.workers.enabled = false;
    let s = Server::start(api_only).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e["status"] == "NEW"),
        "no worker ran: {events:?}"
    );
    assert_eq!(sink.received().len(), 0);
    s.stop().await;
}

async fn with_ingest_off_pushes_are_404(db: Db) {
    let env = Env::new(db).await;
    let sink = Sink::ok().await;
    let mut config = env.config();
    config.ingest.enabled = false;
    let s = Server::start(config).await;
    let hook = webhook_stream(&s, &sink).await;
    let (status, _) = push(&s, &hook, json!([{"sku": "A-1"}]), "d-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = s.get("/jobs").await;
    assert_eq!(status, StatusCode::OK, "the API stays with ingest off");
    assert_eq!(page["items"], json!([]));
    s.stop().await;
}

async fn scheduled_jobs(s: &Server) -> Vec<Value> {
    let (status, page) = s.get("/jobs?trigger=scheduled").await;
    assert_eq!(status, StatusCode::OK);
    page["items"].as_array().unwrap().clone()
}

async fn with_the_scheduler_off_due_runs_wait(db: Db) {
    let env = Env::new(db).await;
    let sink = Sink::ok().await;
    let mut config = env.config();
    config.scheduler.enabled = false;
    config.workers.poll_interval_ms = 50;
    let s = Server::start(config.clone()).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Yearly", "system": "http", "function": "http.fetch",
            "trigger": "scheduled", "schedule": "0 0 1 1 *",
            "params": {"url": "http://127.0.0.1:9/none"}}),
        )
        .await;
    s.passthrough_stream("Scheduled", "stock", &source, &sink.url())
        .await;
    let source_id = source["id"].as_str().unwrap();
    env.set_next_run(source_id, chrono::Utc::now() - chrono::Duration::minutes(1))
        .await;
    // The scheduler looks every second: three of them would have fired the run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(scheduled_jobs(&s).await.is_empty());
    s.stop().await;

    config.scheduler.enabled = true;
    let s = Server::start(config).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while scheduled_jobs(&s).await.is_empty() {
        assert!(Instant::now() < deadline, "the due run never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scheduled_jobs(&s).await.len(), 1);
    s.stop().await;
}

/// Forgetting old webhook receipts is maintenance: with it off, a delivery id is remembered
/// past the window; with it on, a repeat after the window is a new push.
async fn with_maintenance_off_old_receipts_stay(db: Db) {
    let env = Env::new(db).await;
    let sink = Sink::ok().await;
    let mut config = env.config();
    config.maintenance.enabled = false;
    config.workers.enabled = false;
    // No window at all (below what a configuration file may set), so that every receipt is
    // old by the next maintenance tick.
    config.ingest.dedup_retention_hours = 0;
    let s = Server::start(config.clone()).await;
    let hook = webhook_stream(&s, &sink).await;
    let (status, first) = push(&s, &hook, json!([{"sku": "A-1"}]), "d-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, again) = push(&s, &hook, json!([{"sku": "A-1"}]), "d-1").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["job_id"], first["job_id"]);
    s.stop().await;

    config.maintenance.enabled = true;
    let s = Server::start(config).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, r) = push(&s, &hook, json!([{"sku": "A-1"}]), "d-1").await;
        if status == StatusCode::ACCEPTED {
            assert_ne!(r["job_id"], first["job_id"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old receipt was never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}

both_stores!(
    with_the_api_off_ingest_still_stores_pushes,
    with_ingest_off_pushes_are_404,
    with_the_scheduler_off_due_runs_wait,
    with_maintenance_off_old_receipts_stay,
);

/// Source files under `src/` that name the API module: only the API itself and the
/// composition root that mounts it may.
#[test]
fn nothing_outside_the_api_reaches_into_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(&root).unwrap().to_path_buf();
            if path.is_dir() {
                if rel != std::path::Path::new("api") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || rel == std::path::Path::new("app.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if names_the_api(line) {
                    offenders.push(format!("src/{}:{}: {}", rel.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outside src/api/ only the composition root (src/app.rs) may use the API module:\n{}",
        offenders.join("\n")
    );
}

/// `crate::api`, `api` in a `crate::{…}` import, or `api::…` as a path of its own (not the
/// tail of `openapi::`).
fn names_the_api(line: &str) -> bool {
    if line.contains("crate::api") {
        return true;
    }
    if line.contains("crate::{")
        && line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == "api")
    {
        return true;
    }
    line.match_indices("api::").any(|(i, _)| {
        line[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

#[test]
fn the_api_pattern_is_told_from_its_neighbours() {
    assert!(names_the_api("use crate::api::AppState;"));
    assert!(names_the_api("    let r = api::router();"));
    assert!(names_the_api("use crate::{api, engine};"));
    assert!(!names_the_api("utoipa::openapi::ObjectBuilder::new()"));
    assert!(!names_the_api("let rapi::x = 1;"));
}

/// Several nodes share a database only on Postgres.
mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_stored_by_one_node_wakes_another_nodes_workers() {
        super::work_stored_by_one_node_wakes_another_nodes_workers().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_server_leaves_no_connection_open() {
        super::a_stopped_server_leaves_no_connection_open().await
    }
}

/// A push stored by a node without workers wakes another node's idle workers at once (they
/// `LISTEN` for work), long before their own poll would find it; the listening connection is
/// made like the store's (named `wharf`, no TLS to a server on this host).
async fn work_stored_by_one_node_wakes_another_nodes_workers() {
    use sqlx::Connection;
    let env = Env::new(Db::Postgres).await;
    let sink = Sink::ok().await;
    let mut workers = env.config();
    workers.workers.poll_interval_ms = 60_000;
    let w = Server::start(workers).await;
    let hook = webhook_stream(&w, &sink).await;
    let url = env.pg.as_ref().unwrap().url.clone();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listening = loop {
        let rows: Vec<(Option<String>, Option<bool>)> = sqlx::query_as(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a \
             LEFT JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database() AND a.query ILIKE 'LISTEN%'",
        )
        .fetch_all(&mut look)
        .await
        .unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the workers' node never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        listening,
        vec![(Some("wharf".to_string()), Some(false))],
        "one listener, named wharf, without TLS"
    );

    let mut ingest = env.config();
    ingest.workers.enabled = false;
    let i = Server::start(ingest).await;
    let (status, r) = push(&i, &hook, json!([{"sku": "L-1"}]), "wake-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    // Well within the minute the workers' poll would take.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the other node's workers were not woken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.received().len(), 1);
    i.stop().await;
    w.stop().await;
}

/// The group-commit writers keep connections of their own, on a thread of their own: a server
/// that stops closes them with the rest, leaving nothing open on its database.
async fn a_stopped_server_leaves_no_connection_open() {
    use sqlx::Connection;
    let env = Env::new(Db::Postgres).await;
    let sink = Sink::ok().await;
    let s = Server::start(env.config()).await;
    let hook = webhook_stream(&s, &sink).await;
    // Pushes (one group-commit queue) delivered by the workers (the status changes' queue).
    for n in 0..3 {
        let (status, r) = push(
            &s,
            &hook,
            json!([{"sku": format!("C-{n}")}]),
            &format!("close-{n}"),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.received().len() < 3 {
        assert!(Instant::now() < deadline, "the pushes were not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = env.pg.as_ref().unwrap().url.clone();
    let mut look = sqlx::PgConnection::connect(&url).await.unwrap();
    let serving = wharf_connections(&mut look).await;
    // The listener's, the main pool's and the writers' own (not told apart here: the store
    // suite checks the writers' alone).
    assert!(serving >= 3, "{serving} connections while serving");
    s.stop().await;
    no_wharf_connection_left(&mut look, "the server stopped").await;
}
