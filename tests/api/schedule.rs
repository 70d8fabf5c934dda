//! Scheduled sources fire once per due run, across restarts.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{Db, Env, Server};
use crate::engine::wait_for_job;
use crate::peers::{paginated_source, Sink};

async fn server(env: &Env) -> Server {
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    Server::start(config).await
}

async fn scheduled_jobs(s: &Server) -> Vec<Value> {
    let (status, page) = s.get("/jobs?trigger=scheduled&order=asc").await;
    assert_eq!(status, StatusCode::OK);
    page["items"].as_array().unwrap().clone()
}

async fn wait_for_scheduled(s: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = scheduled_jobs(s).await;
        if jobs.len() >= n {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "only {} scheduled jobs",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scheduled_sources_fire_once_per_due_run_across_restarts(db: Db) {
    let env = Env::new(db).await;
    let s = server(&env).await;
    let orders = paginated_source(2, 10).await;
    let sink = Sink::ok().await;
    let source = s
        .create(
            "/sources",
            // Yearly, so that no due run of its own can fall inside the test's window: the
            // runs under test are the ones the test makes due.
            json!({"title": "New Year", "system": "http", "function": "http.fetch",
            "trigger": "scheduled", "schedule": "0 0 1 1 *", "timezone": "Europe/London",
            "params": {"url": format!("http://{orders}/orders"), "records_path": "orders"}}),
        )
        .await;
    let source_id = source["id"].as_str().unwrap().to_string();
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": sink.url()}}),
        )
        .await;
    s.create("/streams", json!({"title": "Scheduled", "data_type": "sales_order", "source_id": source_id,
        "transformation_id": "01900000-0000-7000-8000-000000000001", "destination_id": destination["id"]}))
        .await;
    let next: chrono::DateTime<chrono::Utc> =
        source["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > chrono::Utc::now() && next <= chrono::Utc::now() + chrono::Duration::days(366));

    // Ten minutes of missed runs (the node was down) fire once, not ten times.
    env.set_next_run(
        &source_id,
        chrono::Utc::now() - chrono::Duration::minutes(10),
    )
    .await;
    let jobs = wait_for_scheduled(&s, 1).await;
    let j = wait_for_job(&s, jobs[0]["id"].as_str().unwrap()).await;
    assert_eq!(j["status"], "FINISHED");
    assert_eq!(j["counts"]["OK"], 2);
    let (_, src) = s.get(&format!("/sources/{source_id}")).await;
    let moved: chrono::DateTime<chrono::Utc> =
        src["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        moved > chrono::Utc::now(),
        "the next run moved past now: {moved}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(scheduled_jobs(&s).await.len(), 1, "no repeat while running");
    s.stop().await;

    // A restart does not fire the run again.
    let s = server(&env).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        scheduled_jobs(&s).await.len(),
        1,
        "no repeat after a restart"
    );

    // The next due run fires once more.
    env.set_next_run(
        &source_id,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    let jobs = wait_for_scheduled(&s, 2).await;
    wait_for_job(&s, jobs[1]["id"].as_str().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(scheduled_jobs(&s).await.len(), 2);
    assert_eq!(sink.received().len(), 4);
    s.stop().await;
}

both_stores!(scheduled_sources_fire_once_per_due_run_across_restarts);
