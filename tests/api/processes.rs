//! The real binary under faults and in pairs: `kill -9` mid-run, and two processes sharing one
//! Postgres database, with a reader following the event log while they work.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::binary::{wait_for_listen, wharf};
use crate::common::{send, Db, Env, OWNER_TOKEN};
use crate::peers::{paginated_source, Sink};

const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A `wharf serve` process of `env`, with short leases so a dead process's work returns fast.
fn spawn(env: &Env) -> (Child, String) {
    spawn_with_lease(env, 5)
}

/// A `wharf serve` process of `env` whose workers' leases last `lease` seconds.
fn spawn_with_lease(env: &Env, lease: u64) -> (Child, String) {
    let mut cmd = wharf();
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(env.data_path())
        .env("WHARF_BOOTSTRAP_TOKEN", OWNER_TOKEN)
        .env("WHARF_MASTER_KEY", MASTER_KEY)
        .env("WHARF_WORKERS__LEASE_SECONDS", lease.to_string())
        .env("WHARF_WORKERS__POLL_INTERVAL_MS", "50")
        .env("WHARF_LOG__LEVEL", "warn,wharf=info")
        // The sink listens on loopback, which the outbound guard refuses unless allowed.
        .env("WHARF_OUTBOUND__ALLOW", "127.0.0.0/8")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(pg) = &env.pg {
        cmd.args(["--database-url", &pg.url]);
    }
    let mut child = cmd.spawn().unwrap();
    let (addr, _) = wait_for_listen(&mut child);
    (child, format!("http://{addr}/api/v1"))
}

/// A small API client for a spawned process.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(OWNER_TOKEN),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, out) = send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(OWNER_TOKEN)
                .json(&body),
        )
        .await;
        assert!(status.is_success(), "POST {path}: {out}");
        out
    }

    async fn stream(&self, source_url: &str, sink_url: &str) -> String {
        let source = self.post("/sources", json!({"title": "Orders", "system": "http", "function": "http.fetch",
            "trigger": "manual", "params": {"url": source_url, "records_path": "orders", "entity_id_path": "name"}})).await;
        let dest = self
            .post(
                "/destinations",
                json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": sink_url}}),
            )
            .await;
        let stream = self
            .post(
                "/streams",
                json!({"title": "Orders", "data_type": "sales_order",
            "source_id": source["id"], "transformation_id": "01900000-0000-7000-8000-000000000001",
            "destination_id": dest["id"]}),
            )
            .await;
        stream["id"].as_str().unwrap().to_string()
    }

    async fn wait_for_job(&self, job: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (_, j) = self.get(&format!("/jobs/{job}")).await;
            if matches!(
                j["status"].as_str(),
                Some("FINISHED" | "FINISHED_WITH_ISSUES" | "FAILED")
            ) {
                return j;
            }
            assert!(Instant::now() < deadline, "job did not end: {j}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn events(&self, job: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (_, page) = self
                .get(&format!("/events?job_id={job}&order=asc&limit=500{cursor}"))
                .await;
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    }
}

/// Runs a stream from `source` (a paginated orders server) to `sink` and waits until the sink
/// has answered `n` deliveries; the run's job.
async fn run_until_delivered(
    api: &Api,
    source: std::net::SocketAddr,
    sink: &Sink,
    n: usize,
) -> String {
    let stream = api
        .stream(&format!("http://{source}/orders"), &sink.url())
        .await;
    let job = api.post(&format!("/streams/{stream}/run"), json!({})).await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received().len() < n {
        assert!(Instant::now() < deadline, "deliveries never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job
}

fn kill_hard(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn stop(child: &mut Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn killed_mid_run_loses_nothing(db: Db) {
    let env = Env::new(db).await;
    let source = paginated_source(300, 100).await;
    let sink = Sink::slow(Duration::from_millis(25)).await;
    let (mut first, base) = spawn(&env);
    let api = Api::new(base);
    let job = run_until_delivered(&api, source, &sink, 40).await;
    kill_hard(&mut first);
    let delivered_before = sink.received().len();
    assert!(
        delivered_before < 300,
        "killed mid-run ({delivered_before} delivered)"
    );

    let (mut second, base) = spawn(&env);
    let api = Api::new(base);
    let j = api.wait_for_job(&job, Duration::from_secs(90)).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = api.events(&job).await;
    assert_eq!(events.len(), 300, "no event lost");
    for e in &events {
        assert_eq!(e["status"], "OK", "{e}");
        assert_eq!(e["is_running"], false);
    }
    let counts = sink.counts_by_id();
    assert_eq!(counts.len(), 300, "every order reached the sink");
    // Only deliveries in flight at the kill (at most one per worker, the default count) can
    // have been sent twice.
    let repeats: usize = counts.values().map(|n| n - 1).sum();
    let workers = wharf::config::WorkersConfig::default().count;
    assert!(repeats <= workers, "{repeats} repeats");
    stop(&mut second);
}

/// SQLite is served by one process: a restarted process takes back the work its killed
/// predecessor held at once, not when the (here two-minute) leases run out, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_sqlite_process_takes_back_its_predecessor_s_work_at_once() {
    let env = Env::new(Db::Sqlite).await;
    let source = paginated_source(200, 100).await;
    let sink = Sink::slow(Duration::from_millis(100)).await;
    let (mut first, base) = spawn_with_lease(&env, 120);
    let api = Api::new(base);
    let job = run_until_delivered(&api, source, &sink, 20).await;
    // The destination stops answering, so the workers' next deliveries hang with their events
    // claimed (workers deliver in waves: between two, nothing may be held): then the kill.
    sink.pause(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    kill_hard(&mut first);
    sink.pause(false);
    assert!(sink.received().len() < 200, "killed mid-run");

    let (mut second, base) = spawn_with_lease(&env, 120);
    let api = Api::new(base.clone());
    let j = api.wait_for_job(&job, Duration::from_secs(60)).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = api.events(&job).await;
    assert_eq!(events.len(), 200);
    assert!(events.iter().all(|e| e["status"] == "OK"), "{events:?}");
    assert_eq!(
        sink.counts_by_id().len(),
        200,
        "every order reached the sink"
    );
    let metrics = reqwest::get(base.replace("/api/v1", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wharf_claims_rescued_total{kind=\"events\"}"),
        "the take-over is counted: {metrics}"
    );
    stop(&mut second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_killed_mid_run_loses_nothing() {
    killed_mid_run_loses_nothing(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_killed_mid_run_loses_nothing() {
    killed_mid_run_loses_nothing(Db::Postgres).await
}

/// Two nodes on one Postgres share a 10,000-event job: each event is delivered exactly once,
/// and a reader following the event log meanwhile sees every change once, in no gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_deliver_each_event_once() {
    let env = Env::new(Db::Postgres).await;
    let source = paginated_source(10_000, 500).await;
    let sink = Sink::ok().await;
    let (mut a, base_a) = spawn(&env);
    let (mut b, base_b) = spawn(&env);
    let api_a = Api::new(base_a);
    let api_b = Api::new(base_b);
    let stream = api_a
        .stream(&format!("http://{source}/orders"), &sink.url())
        .await;

    // The reader follows the log on node B while both nodes work.
    let reader = tokio::spawn(async move {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor = "0".to_string();
        let mut quiet_since: Option<Instant> = None;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, page) = api_b
                .get(&format!("/event-log?cursor={cursor}&limit=1000"))
                .await;
            assert_eq!(status, StatusCode::OK);
            let items = page["items"].as_array().unwrap();
            if items.is_empty() {
                // Done once the job has finished and nothing new appears for a while.
                let finished = seen.iter().any(|e| e["details"]["to"] == "FINISHED");
                if finished
                    && quiet_since.get_or_insert_with(Instant::now).elapsed()
                        > Duration::from_secs(2)
                {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                quiet_since = None;
                seen.extend(items.iter().cloned());
                cursor = page["next_cursor"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "the log never settled");
        }
    });

    let job = api_a
        .post(&format!("/streams/{stream}/run"), json!({}))
        .await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let j = api_a.wait_for_job(&job, Duration::from_secs(300)).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["counts"]["OK"], 10_000);

    let counts = sink.counts_by_id();
    assert_eq!(counts.len(), 10_000);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "delivered more than once: {:?}",
        &twice[..twice.len().min(5)]
    );

    let followed = reader.await.unwrap();
    let mut positions = HashSet::new();
    let mut per_event: HashMap<String, Vec<String>> = HashMap::new();
    for entry in &followed {
        assert!(
            positions.insert(entry["id"].as_str().unwrap().to_string()),
            "a position repeated"
        );
        if entry["type"] == "EVENT_STATUS_CHANGE" {
            per_event
                .entry(entry["details"]["event_id"].as_str().unwrap().to_string())
                .or_default()
                .push(entry["details"]["to"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(per_event.len(), 10_000, "the follower saw every event");
    let wrong: Vec<_> = per_event
        .values()
        .filter(|v| *v != &["NEW", "TRANSFORMED", "OK"])
        .take(3)
        .collect();
    assert!(
        wrong.is_empty(),
        "each change seen exactly once, in order: {wrong:?}"
    );
    stop(&mut a);
    stop(&mut b);
}
