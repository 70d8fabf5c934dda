//! `wharf-bench --faults`: Wharf under faults. Each scenario starts `wharf serve` (one or two
//! nodes) on a fresh store, drives signed order webhooks at a steady rate to a sink of its
//! own, injects one fault — a `kill -9`, storage taken away, connections terminated, a stalled
//! node, a destination down, SIGTERM, overload, a full connection table — and reconciles every
//! acknowledged push against what the sink received and what the API shows: acknowledged,
//! delivered, lost (must be 0), duplicated (at most the deliveries in flight at the faults),
//! stored though refused (must be 0), slowest answer, time to recover, rows left open. A
//! scenario fails on any loss, on a refused push that was stored, on open rows left behind,
//! and on what it checks besides (each says). `--smoke` runs every scenario in seconds, for CI.
//!
//! Storage is taken away through a loopback proxy in front of Postgres (the testkit's), which
//! to Wharf is what a stopped database is — open connections dropped, new ones refused — and
//! leaves the server, which other databases share, untouched; and, when `--postgres-ctl` says
//! how, by stopping the server itself (`postgres-restart`).

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use wharf_testkit::proxy::Proxy;

use crate::load::{order_id, push_order};
use crate::server::{rss_mb, setup_with_retry, start_wharf_in, Server};
use crate::{drop_store, fresh_store, Args, TOKEN};

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "kill",
    "kill-repeat",
    "storage-cut",
    "postgres-restart",
    "terminate-backends",
    "pool-exhaustion",
    "idle-transaction",
    "stall",
    "destination-down",
    "slow-destination",
    "sigterm",
    "overload",
    "disk-full",
];

/// Whether a scenario applies to a store: two nodes, and what is done to Postgres, need
/// Postgres.
fn applies(scenario: &str, postgres: bool) -> bool {
    match scenario {
        // A full disk under SQLite's data directory (Postgres's disk is the database server's).
        "disk-full" => !postgres,
        _ => {
            postgres
                || matches!(
                    scenario,
                    "kill" | "destination-down" | "slow-destination" | "sigterm" | "overload"
                )
        }
    }
}

/// Retries of the scenarios' destination: soon and often, so that recovery is measured in
/// seconds rather than in the production schedule's minutes; each try gives up after 3 s.
fn fault_retry() -> Value {
    json!({"schedule_seconds": [0, 1, 2, 4, 8, 15, 30, 30, 30, 30, 30, 30, 30, 30], "timeout_seconds": 3})
}

/// The sink's behaviour.
const SINK_OK: u8 = 0;
const SINK_REFUSE: u8 = 1;
const SINK_HOLD: u8 = 2;

/// A destination that records what it accepted (200), and can refuse (503) or hold every
/// delivery unanswered (a black hole) while told to.
#[derive(Default)]
struct SinkState {
    mode: AtomicU8,
    /// Accepted deliveries by order id.
    accepted: Mutex<HashMap<String, u32>>,
    /// How long each delivery takes to answer, in milliseconds.
    delay_ms: AtomicU64,
    /// Woken when the mode changes (held deliveries look again).
    changed: tokio::sync::Notify,
}

async fn sink_in(State(s): State<Arc<SinkState>>, body: axum::body::Bytes) -> StatusCode {
    let delay = s.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    loop {
        let changed = s.changed.notified();
        match s.mode.load(Ordering::SeqCst) {
            SINK_HOLD => changed.await,
            SINK_REFUSE => return StatusCode::SERVICE_UNAVAILABLE,
            _ => break,
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *s.accepted
        .lock()
        .unwrap()
        .entry(order_id(&body))
        .or_default() += 1;
    StatusCode::OK
}

struct FaultSink {
    addr: std::net::SocketAddr,
    state: Arc<SinkState>,
}

impl FaultSink {
    async fn start() -> FaultSink {
        let state = Arc::new(SinkState::default());
        let app = Router::new()
            .route("/in", post(sink_in))
            .with_state(state.clone());
        FaultSink {
            addr: wharf_testkit::serve(app).await,
            state,
        }
    }

    fn set(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    fn accepted(&self) -> HashMap<String, u32> {
        self.state.accepted.lock().unwrap().clone()
    }
}

/// What the load saw of each push.
#[derive(Default)]
struct Seen {
    /// Acknowledged (202) orders, with when the answer came.
    acked: HashMap<u64, Instant>,
    /// Orders answered with an error (they must not be stored).
    refused: HashSet<u64>,
    /// 503s without `Retry-After`, and answers other than 202 and 503.
    refused_no_retry_after: u64,
    other_status: u64,
    /// The first answers other than 202 and 503: status and body.
    other_examples: Vec<String>,
    /// No answer (connection refused or dropped, or the client's 10 s timeout): the sender
    /// cannot know, so such an order may or may not be stored.
    unanswered: u64,
    /// Each answer: when sent (since the start), its status (0 for none), how long it took.
    answers: Vec<(f64, u16, f64)>,
}

/// Signed order webhooks at a steady rate, spread over the nodes' webhook URLs, until stopped.
struct Load {
    seen: Arc<Mutex<Seen>>,
    urls: Arc<Mutex<Vec<String>>>,
    rate: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    start: Instant,
}

impl Load {
    /// Pushes orders numbered from `first`.
    fn start(urls: Vec<String>, rate: u64, first: u64) -> Load {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let urls = Arc::new(Mutex::new(urls));
        let rate = Arc::new(AtomicU64::new(rate));
        let (stop, mut stopped) = watch::channel(false);
        let start = Instant::now();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client");
        let (s, u, r) = (seen.clone(), urls.clone(), rate.clone());
        let task = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(512));
            let mut next = Instant::now();
            let mut id = first;
            loop {
                if *stopped.borrow() {
                    break;
                }
                let rate = r.load(Ordering::Relaxed).max(1);
                next += Duration::from_secs_f64(1.0 / rate as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stopped.changed() => break,
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // More than 512 in flight: the sender gives up on this one.
                    s.lock().unwrap().unanswered += 1;
                    continue;
                };
                let url = {
                    let urls = u.lock().unwrap();
                    urls[(id as usize) % urls.len()].clone()
                };
                let (client, seen) = (client.clone(), s.clone());
                let n = id;
                id += 1;
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let res = push_order(&client, &url, n, &format!("fault-{n}")).await;
                    let took = sent.elapsed().as_secs_f64() * 1000.0;
                    let at = sent.duration_since(start).as_secs_f64();
                    let mut seen = seen.lock().unwrap();
                    match res {
                        Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                            seen.acked.insert(n, Instant::now());
                            seen.answers.push((at, 202, took));
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            if status == 503 && r.headers().get("retry-after").is_none() {
                                seen.refused_no_retry_after += 1;
                            } else if status != 503 {
                                seen.other_status += 1;
                                if seen.other_examples.len() < 3 {
                                    seen.other_examples.push(status.to_string());
                                }
                            }
                            seen.refused.insert(n);
                            seen.answers.push((at, status, took));
                        }
                        Err(_) => {
                            seen.unanswered += 1;
                            seen.answers.push((at, 0, took));
                        }
                    }
                    drop(permit);
                });
            }
        });
        Load {
            seen,
            urls,
            rate,
            stop,
            task,
            start,
        }
    }

    fn set_urls(&self, urls: Vec<String>) {
        *self.urls.lock().unwrap() = urls;
    }

    fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    fn since_start(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn acked(&self) -> usize {
        self.seen.lock().unwrap().acked.len()
    }

    async fn stop(self) -> Seen {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // Requests still in flight finish within the client's timeout.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let deadline = Instant::now() + Duration::from_secs(11);
        loop {
            if Arc::strong_count(&self.seen) == 1 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The nodes of a scenario on one store.
struct Nodes {
    args: Args,
    db_url: Option<String>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    servers: Vec<Option<Server>>,
    hook_path: String,
}

impl Nodes {
    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = start_wharf_in(&self.args, self.dir.path(), self.db_url.as_deref(), &env)?;
        if self.servers.len() <= i {
            self.servers.resize_with(i + 1, || None);
        }
        self.servers[i] = Some(server);
        Ok(())
    }

    fn base(&self, i: usize) -> Option<String> {
        self.servers.get(i)?.as_ref().map(|s| s.base.clone())
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.servers.get(i)?.as_ref().map(|s| s.child.id())
    }

    fn hook_urls(&self) -> Vec<String> {
        (0..self.servers.len())
            .filter_map(|i| self.base(i))
            .map(|b| format!("{b}{}", self.hook_path))
            .collect()
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
        }
    }

    /// Whether node `i` is still running.
    fn alive(&mut self, i: usize) -> bool {
        match self.servers.get_mut(i).and_then(|s| s.as_mut()) {
            Some(s) => matches!(s.child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

/// One scenario's result on one store.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub store: String,
    pub acknowledged: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub duplicate_bound: usize,
    pub refused: usize,
    pub refused_but_stored: usize,
    pub unanswered: u64,
    pub slowest_answer_ms: f64,
    pub recovery_seconds: f64,
    pub open_rows_left: usize,
    pub rescued: f64,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Outcome {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failures.push(what.into());
        }
    }
}

/// Durations of a scenario: short (`--smoke`) or full.
struct Timing {
    rate: u64,
    warm: Duration,
    fault: Duration,
    after: Duration,
    drain: Duration,
}

fn timing(args: &Args) -> Timing {
    if args.smoke {
        Timing {
            rate: 50,
            warm: Duration::from_secs(3),
            fault: Duration::from_secs(5),
            after: Duration::from_secs(3),
            drain: Duration::from_secs(90),
        }
    } else {
        Timing {
            rate: 150,
            warm: Duration::from_secs(10),
            fault: Duration::from_secs(30),
            after: Duration::from_secs(10),
            drain: Duration::from_secs(180),
        }
    }
}

/// Runs the scenarios named by `--scenarios` (all by default) on `--store` (`both` for
/// Postgres then SQLite), prints a table and writes the results to `--out`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let chosen: Vec<&str> = match &args.scenarios {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => SCENARIOS.to_vec(),
    };
    for s in &chosen {
        anyhow::ensure!(
            SCENARIOS.contains(s),
            "unknown scenario {s}; the scenarios are {}",
            SCENARIOS.join(", ")
        );
    }
    let stores: Vec<bool> = match args.store.as_str() {
        "postgres" => vec![true],
        "sqlite" => vec![false],
        "both" => vec![true, false],
        other => anyhow::bail!("--store must be sqlite, postgres or both, not {other}"),
    };
    let mut outcomes = Vec::new();
    for postgres in stores {
        for scenario in &chosen {
            if !applies(scenario, postgres) {
                continue;
            }
            if *scenario == "postgres-restart" && args.postgres_ctl.is_none() {
                eprintln!("faults: postgres-restart skipped: it needs --postgres-ctl (it restarts the whole Postgres server)");
                continue;
            }
            let store = if postgres { "postgres" } else { "sqlite" };
            eprintln!("faults: {scenario} on {store}");
            let mut args = args.clone();
            args.store = store.into();
            let outcome = match scenario_run(&args, scenario).await {
                Ok(o) => o,
                Err(e) => Outcome {
                    scenario: scenario.to_string(),
                    store: store.into(),
                    failures: vec![format!("the scenario could not run: {e:#}")],
                    ..Default::default()
                },
            };
            eprintln!(
                "faults: {scenario} on {store}: {} acknowledged, {} lost, {} duplicated, {}",
                outcome.acknowledged,
                outcome.lost,
                outcome.duplicated,
                if outcome.failures.is_empty() {
                    "passed".to_string()
                } else {
                    format!("FAILED: {}", outcome.failures.join("; "))
                }
            );
            outcomes.push(outcome);
        }
    }
    print_table(&outcomes);
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&json!({"smoke": args.smoke, "scenarios": outcomes}))?,
    )?;
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.failures.is_empty())
        .map(|o| format!("{} on {}", o.scenario, o.store))
        .collect();
    anyhow::ensure!(failed.is_empty(), "faults failed: {}", failed.join(", "));
    Ok(())
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "| store | scenario | acknowledged | lost | duplicated (bound) | refused (stored) | slowest answer | recovery | open rows | rescued | result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} ({}) | {} ({}) | {:.0} ms | {:.1} s | {} | {} | {} |",
            o.store,
            o.scenario,
            o.acknowledged,
            o.lost,
            o.duplicated,
            o.duplicate_bound,
            o.refused,
            o.refused_but_stored,
            o.slowest_answer_ms,
            o.recovery_seconds,
            o.open_rows_left,
            o.rescued,
            if o.failures.is_empty() {
                "pass".to_string()
            } else {
                format!("FAIL: {}", o.failures.join("; "))
            }
        );
    }
}

/// One scenario on `args.store`.
async fn scenario_run(args: &Args, scenario: &str) -> anyhow::Result<Outcome> {
    let postgres = args.store == "postgres";
    let store = fresh_store(args).await?;
    let result = scenario_on(args, scenario, store.as_ref().map(|(u, _)| u.clone())).await;
    drop_store(args, store).await;
    let mut outcome = result?;
    outcome.scenario = scenario.into();
    outcome.store = if postgres { "postgres" } else { "sqlite" }.into();
    Ok(outcome)
}

fn upstream_of(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let auth = rest.split('/').next().unwrap_or_default();
    let hostport = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
    hostport
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address for {hostport}"))
}

fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = auth
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// The name of a Postgres URL's database.
fn db_name(url: &str) -> String {
    let path = url.rsplit_once('/').map(|(_, p)| p).unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_string()
}

async fn scenario_on(
    args: &Args,
    scenario: &str,
    db_url: Option<String>,
) -> anyhow::Result<Outcome> {
    let t = timing(args);
    let sink = FaultSink::start().await;
    let proxy = match (&db_url, scenario) {
        (Some(url), "storage-cut") => Some(Proxy::start(upstream_of(url)?).await),
        _ => None,
    };
    let wharf_db = match (&db_url, &proxy) {
        (Some(url), Some(p)) => Some(through(url, p.addr())),
        (url, _) => url.clone(),
    };
    let mut env = vec![(
        "WHARF_WORKERS__POLL_INTERVAL_MS".to_string(),
        "200".to_string(),
    )];
    if scenario == "stall" {
        env.push(("WHARF_WORKERS__LEASE_SECONDS".into(), "5".into()));
    }
    let two = matches!(scenario, "kill-repeat" | "stall");
    let dir = tempfile::tempdir()?;
    // The data directory on a small disk of its own, to fill.
    let _small_disk = if scenario == "disk-full" {
        Some(SmallDisk::mount(dir.path(), 256)?)
    } else {
        None
    };
    let mut nodes = Nodes {
        args: args.clone(),
        db_url: wharf_db,
        dir,
        env,
        servers: Vec::new(),
        hook_path: String::new(),
    };
    nodes.start(0)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()?;
    let base = nodes.base(0).unwrap_or_default();
    let setup = setup_with_retry(&client, &base, sink.addr, Some(fault_retry())).await?;
    nodes.hook_path = setup
        .webhook_url
        .strip_prefix(&base)
        .unwrap_or_default()
        .to_string();
    if two {
        nodes.start(1)?;
    }
    // Deliveries that take a while, so that the workers have work in hand when the fault
    // strikes (a fast sink leaves nothing claimed at the instant of a kill).
    if matches!(
        scenario,
        "kill"
            | "kill-repeat"
            | "stall"
            | "sigterm"
            | "terminate-backends"
            | "storage-cut"
            | "postgres-restart"
    ) {
        sink.state.delay_ms.store(300, Ordering::Relaxed);
    }
    let workers = args.workers;
    let mut out = Outcome::default();
    let load = Load::start(nodes.hook_urls(), t.rate, 1);
    tokio::time::sleep(t.warm).await;
    let warm_acked = load.acked();
    let fault_start = load.since_start();
    let mut faults = 1usize;
    let mut peak_rss = 0f64;
    // When the fault ended, if before the scenario's fault phase did (a kill is an instant),
    // and when everything acknowledged had been delivered since.
    let mut fault_ended: Option<Instant> = None;
    let mut recovered: Option<Instant> = None;
    // When storage was away (storage-cut, postgres-restart): judged once every push has been
    // answered.
    let mut away: Vec<(f64, f64)> = Vec::new();
    // The slow destination's pushes and sink (slow-destination), reconciled once drained.
    let mut slow: Option<(Seen, FaultSink)> = None;
    match scenario {
        "kill" => {
            nodes.kill(0);
            nodes.start(0)?;
            load.set_urls(nodes.hook_urls());
            // The fault is the kill: recovery counts from the restart.
            fault_ended = Some(Instant::now());
            watch_recovery(&load, &sink, t.fault, &mut recovered).await;
        }
        "kill-repeat" => {
            let every = if args.smoke {
                Duration::from_secs(4)
            } else {
                Duration::from_secs(30)
            };
            let total = if args.smoke {
                Duration::from_secs(12)
            } else {
                Duration::from_secs(300)
            };
            let until = Instant::now() + total;
            faults = 0;
            let mut which = 0;
            while Instant::now() < until {
                let other = 1 - which;
                load.set_urls(vec![format!(
                    "{}{}",
                    nodes.base(other).unwrap_or_default(),
                    nodes.hook_path
                )]);
                nodes.kill(which);
                faults += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                nodes.start(which)?;
                load.set_urls(nodes.hook_urls());
                tokio::time::sleep(every).await;
                which = other;
            }
        }
        "storage-cut" => {
            let proxy = proxy.as_ref().expect("a proxy for this scenario");
            proxy.cut();
            let cut_at = load.since_start();
            tokio::time::sleep(t.fault).await;
            let restored_at = load.since_start();
            proxy.restore().await;
            out.check(nodes.alive(0), "the node exited while storage was away");
            away.push((cut_at, restored_at));
        }
        "postgres-restart" => {
            // The server itself stopped, fast then immediate (a crash to Postgres: recovery on
            // start), each for half the fault phase, with a while of load between.
            let ctl = args.postgres_ctl.clone().unwrap_or_default();
            faults = 0;
            for mode in ["fast", "immediate"] {
                let stopped_at = load.since_start();
                postgres_ctl(&ctl, &format!("stop -m {mode}"))?;
                faults += 1;
                tokio::time::sleep(t.fault / 2).await;
                let started_at = load.since_start();
                postgres_ctl(&ctl, "start")?;
                away.push((stopped_at, started_at));
                let up = Instant::now();
                while !postgres_answers(&args.postgres_url).await {
                    anyhow::ensure!(
                        up.elapsed() < Duration::from_secs(60),
                        "Postgres did not come back within 60 s of `{ctl} start`"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                out.notes.push(format!(
                    "stopped ({mode}) for {:.1} s, answering again {:.1} s after the start",
                    started_at - stopped_at,
                    up.elapsed().as_secs_f64()
                ));
                out.check(
                    nodes.alive(0),
                    format!("the node exited when Postgres stopped ({mode})"),
                );
                if mode == "fast" {
                    tokio::time::sleep(t.after).await;
                } else {
                    // Recovery counts from Postgres answering again.
                    fault_ended = Some(Instant::now());
                }
            }
        }
        "terminate-backends" => {
            let url = db_url.clone().unwrap_or_default();
            let name = db_name(&url);
            let until = Instant::now() + t.fault;
            faults = 0;
            let mut terminated = 0i64;
            while Instant::now() < until {
                terminated += terminate_wharf(&args.postgres_url, &name)
                    .await
                    .unwrap_or(0);
                faults += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            out.notes.push(format!(
                "{terminated} connections terminated in {faults} rounds"
            ));
            out.check(nodes.alive(0), "the node exited");
        }
        "pool-exhaustion" => {
            let held = fill_connections(&args.postgres_url, 120).await;
            out.notes
                .push(format!("{} connections held by others", held.len()));
            tokio::time::sleep(t.fault).await;
            drop(held);
            out.check(nodes.alive(0), "the node exited");
        }
        "idle-transaction" => {
            use sqlx::Connection;
            let url = db_url.clone().unwrap_or_default();
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut conn)
                .await?;
            sqlx::query("SELECT count(*) FROM events")
                .execute(&mut conn)
                .await?;
            sqlx::query("SELECT id FROM streams FOR SHARE")
                .execute(&mut conn)
                .await?;
            let before = load.acked();
            tokio::time::sleep(t.fault).await;
            let during = load.acked() - before;
            let expected = (t.rate as f64 * t.fault.as_secs_f64()) as usize;
            out.notes.push(format!(
                "{during} pushes acknowledged in {} s of a transaction holding locks and xmin (offered {expected})",
                t.fault.as_secs()
            ));
            out.check(
                during as f64 >= expected as f64 * 0.8,
                "throughput fell while a transaction was left open",
            );
            sqlx::query("ROLLBACK").execute(&mut conn).await?;
        }
        "stall" => {
            // Node 1 stops past its 5 s lease with work in hand; node 0 takes it over.
            load.set_urls(vec![format!(
                "{}{}",
                nodes.base(0).unwrap_or_default(),
                nodes.hook_path
            )]);
            nodes.signal(1, "STOP");
            tokio::time::sleep(Duration::from_secs(16)).await;
            nodes.signal(1, "CONT");
            load.set_urls(nodes.hook_urls());
            tokio::time::sleep(t.after).await;
        }
        "destination-down" => {
            sink.set(SINK_REFUSE);
            tokio::time::sleep(t.fault).await;
            sink.set(SINK_HOLD);
            tokio::time::sleep(t.fault).await;
            sink.set(SINK_OK);
            let seen = load.seen.lock().unwrap();
            let slowest = seen
                .answers
                .iter()
                .filter(|(at, _, _)| *at > fault_start)
                .map(|(_, _, ms)| *ms)
                .fold(0.0, f64::max);
            let refused = seen.refused.len();
            out.notes.push(format!(
                "ingest while the destination was down: slowest answer {slowest:.0} ms, {refused} refused"
            ));
            out.check(
                refused == 0,
                "pushes were refused while only the destination was down",
            );
        }
        "slow-destination" => {
            // A second stream whose destination answers every delivery in 10 s, pushed to
            // faster than all the workers together could deliver it: the first stream's
            // deliveries must keep pace meanwhile.
            let slow_sink = FaultSink::start().await;
            slow_sink.state.delay_ms.store(10_000, Ordering::Relaxed);
            let retry =
                json!({"schedule_seconds": [0, 1, 2, 4, 8, 15, 30, 30, 30], "timeout_seconds": 30});
            let slow_setup = setup_with_retry(&client, &base, slow_sink.addr, Some(retry)).await?;
            // Deliveries wanted in flight: a quarter more than there are workers.
            let slow_rate = (workers as u64 * 5).div_ceil(40);
            let slow_load = Load::start(vec![slow_setup.webhook_url], slow_rate, 1_000_000);
            let started = Instant::now();
            let before = sink.accepted().len();
            let mut worst = 0;
            while started.elapsed() < t.fault {
                worst = worst.max(backlog(&load, &sink));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let delivered = sink.accepted().len().saturating_sub(before);
            let secs = started.elapsed().as_secs_f64();
            let seen = slow_load.stop().await;
            out.notes.push(format!(
                "beside a destination answering in 10 s ({} pushes to it at {slow_rate}/s, {} deliveries wanted in flight, {workers} workers): the other delivered {delivered} in {secs:.0} s ({:.0}/s, {}/s offered), at worst {worst} pushes over a second behind",
                seen.acked.len(),
                slow_rate * 10,
                delivered as f64 / secs,
                t.rate
            ));
            out.check(
                worst <= t.rate as usize,
                format!("the other destination fell {worst} pushes behind beside a slow one"),
            );
            slow = Some((seen, slow_sink));
        }
        "sigterm" => {
            let stopped = Instant::now();
            nodes.signal(0, "TERM");
            let mut code = None;
            while stopped.elapsed() < Duration::from_secs(40) {
                if let Some(s) = nodes.servers[0].as_mut() {
                    if let Ok(Some(status)) = s.child.try_wait() {
                        code = Some(status);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            out.notes.push(format!(
                "stopped in {:.1} s with {code:?}",
                stopped.elapsed().as_secs_f64()
            ));
            out.check(
                code.is_some_and(|c| c.success()),
                "SIGTERM did not end the process with 0 within 40 s",
            );
            nodes.servers[0] = None;
            nodes.start(0)?;
            load.set_urls(nodes.hook_urls());
            fault_ended = Some(Instant::now());
            watch_recovery(&load, &sink, t.fault, &mut recovered).await;
        }
        "overload" => {
            let high = if args.smoke { 1500 } else { 6000 };
            load.set_rate(high);
            let until = Instant::now() + t.fault;
            let pid = nodes.pid(0).unwrap_or_default();
            while Instant::now() < until {
                peak_rss = peak_rss.max(rss_mb(pid));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            load.set_rate(t.rate);
            out.notes.push(format!(
                "offered {high}/s for {} s; peak RSS {peak_rss:.0} MB",
                t.fault.as_secs()
            ));
            out.check(
                peak_rss < 400.0,
                format!("memory grew to {peak_rss:.0} MB under overload"),
            );
        }
        "disk-full" => {
            let filler = nodes.dir.path().join("filler");
            let filled_at = load.since_start();
            let filled = fill_disk(&filler);
            out.notes.push(format!(
                "{} MB written to fill the disk",
                filled / (1 << 20)
            ));
            tokio::time::sleep(t.fault).await;
            let freed_at = load.since_start();
            let _ = std::fs::remove_file(&filler);
            out.check(nodes.alive(0), "the node exited when the disk was full");
            let seen = load.seen.lock().unwrap();
            let during: Vec<&(f64, u16, f64)> = seen
                .answers
                .iter()
                .filter(|(at, _, _)| *at > filled_at + 0.5 && *at < freed_at)
                .collect();
            let accepted = during.iter().filter(|(_, s, _)| *s == 202).count();
            let slowest = during.iter().map(|(_, _, ms)| *ms).fold(0.0, f64::max);
            // SQLite may still commit into space its write-ahead log already holds: a 202 then
            // means the data is stored, and the reconciliation below holds it to that.
            out.notes.push(format!(
                "while full: {} pushes answered, {accepted} with 202, slowest {slowest:.0} ms",
                during.len()
            ));
            out.check(
                slowest <= 2500.0,
                format!("a push waited {slowest:.0} ms while the disk was full"),
            );
        }
        other => anyhow::bail!("no such scenario: {other}"),
    }
    // Recovered: every push acknowledged more than a second ago has been delivered (the load
    // goes on meanwhile, for `t.after`, then stops and what is left drains).
    let fault_end = fault_ended.unwrap_or_else(Instant::now);
    watch_recovery(&load, &sink, t.after, &mut recovered).await;
    let seen = load.stop().await;
    for (cut_at, restored_at) in away {
        // Pushes sent a moment after the cut and before the restore, however long their
        // answer took (one that hung until the restore counts as slow).
        let during: Vec<&(f64, u16, f64)> = seen
            .answers
            .iter()
            .filter(|(at, _, _)| *at > cut_at + 0.5 && *at < restored_at)
            .collect();
        let accepted = during
            .iter()
            .filter(|(at, s, took)| *s == 202 && at + took / 1000.0 < restored_at)
            .count();
        let slowest = during.iter().map(|(_, _, ms)| *ms).fold(0.0, f64::max);
        out.notes.push(format!(
            "while cut: {} pushes sent, {accepted} answered 202 before the restore, slowest answer {slowest:.0} ms",
            during.len()
        ));
        out.check(
            !during.is_empty(),
            "no push was sent while storage was away",
        );
        out.check(
            accepted == 0,
            format!("{accepted} pushes answered 202 while storage was away"),
        );
        out.check(
            slowest <= 2500.0,
            format!("a push waited {slowest:.0} ms while storage was away (target 2 s)"),
        );
    }

    // Everything acknowledged reaches the sink (or the drain times out: lost).
    let acked: HashSet<String> = seen.acked.keys().map(|n| n.to_string()).collect();
    let drain_until = Instant::now() + t.drain;
    loop {
        let accepted = sink.accepted();
        let missing = acked
            .iter()
            .filter(|id| !accepted.contains_key(*id))
            .count();
        if missing == 0 {
            recovered = recovered.or(Some(Instant::now()));
            break;
        }
        if Instant::now() > drain_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let accepted = sink.accepted();
    out.acknowledged = acked.len();
    out.delivered = acked.iter().filter(|id| accepted.contains_key(*id)).count();
    out.lost = out.acknowledged - out.delivered;
    out.duplicated = accepted
        .values()
        .map(|n| (*n as usize).saturating_sub(1))
        .sum();
    out.duplicate_bound = workers * faults * if two { 2 } else { 1 };
    out.refused = seen.refused.len();
    out.refused_but_stored = seen
        .refused
        .iter()
        .filter(|n| accepted.contains_key(&n.to_string()))
        .count();
    out.unanswered = seen.unanswered;
    out.slowest_answer_ms = seen
        .answers
        .iter()
        .map(|(_, _, ms)| *ms)
        .fold(0.0, f64::max);
    out.recovery_seconds = recovered
        .map(|r| r.saturating_duration_since(fault_end).as_secs_f64())
        .unwrap_or(f64::NAN);
    out.check(
        out.lost == 0,
        format!("{} acknowledged orders never arrived", out.lost),
    );
    out.check(
        out.refused_but_stored == 0,
        format!(
            "{} refused pushes were stored and delivered",
            out.refused_but_stored
        ),
    );
    out.check(
        seen.refused_no_retry_after == 0,
        format!("{} 503s without Retry-After", seen.refused_no_retry_after),
    );
    out.check(
        seen.other_status == 0,
        format!(
            "{} answers other than 202 and 503 (e.g. {})",
            seen.other_status,
            seen.other_examples.join(", ")
        ),
    );
    out.check(
        out.duplicated <= out.duplicate_bound,
        format!("{} duplicates, more than the bound", out.duplicated),
    );
    out.check(warm_acked > 0, "nothing was acknowledged before the fault");

    if let Some((seen, slow_sink)) = &slow {
        let acked: HashSet<String> = seen.acked.keys().map(|n| n.to_string()).collect();
        // Its share of the workers (16) delivers 1.6 a second.
        let since = Instant::now();
        let until = since + t.drain.max(Duration::from_secs(seen.acked.len() as u64));
        while Instant::now() < until {
            let accepted = slow_sink.accepted();
            if acked.iter().all(|id| accepted.contains_key(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let accepted = slow_sink.accepted();
        let lost = acked
            .iter()
            .filter(|id| !accepted.contains_key(*id))
            .count();
        let duplicated: usize = accepted
            .values()
            .map(|n| (*n as usize).saturating_sub(1))
            .sum();
        let stored = seen
            .refused
            .iter()
            .filter(|n| accepted.contains_key(&n.to_string()))
            .count();
        out.notes.push(format!(
            "the slow destination: {} acknowledged, {lost} lost, {duplicated} duplicated, {} refused, the last delivered {:.0} s after the other's drain",
            acked.len(),
            seen.refused.len(),
            since.elapsed().as_secs_f64()
        ));
        out.check(
            lost == 0,
            format!("{lost} pushes to the slow destination never arrived"),
        );
        out.check(
            duplicated == 0,
            format!("{duplicated} deliveries to the slow destination were made twice"),
        );
        out.check(
            stored == 0,
            format!("{stored} refused pushes to the slow destination were stored"),
        );
    }

    // Nothing left open, claimed or running (jobs a worker left are finished by the 30 s
    // sweep).
    let base = nodes
        .base(0)
        .ok_or_else(|| anyhow::anyhow!("no node left to ask"))?;
    let open_until = Instant::now() + Duration::from_secs(45);
    loop {
        out.open_rows_left = open_rows(&client, &base).await?;
        if out.open_rows_left == 0 || Instant::now() > open_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out.check(
        out.open_rows_left == 0,
        format!("{} events or jobs left open", out.open_rows_left),
    );

    // Every duplicate is on record: its event has an attempt for each delivery the destination
    // accepted (a worker whose claim was taken over records its attempt too, though it changes
    // nothing else). The outcome is what the worker saw: a worker stalled past its delivery's
    // timeout records a timeout, though the destination had answered.
    let duplicated: Vec<(&String, &u32)> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    let mut unrecorded = 0;
    for (id, n) in duplicated.iter().take(50) {
        let (_, page) = get(
            &client,
            &base,
            &format!("/events?entity_id=%23{id}&limit=10"),
        )
        .await?;
        let mut recorded = 0u64;
        for event in page["items"].as_array().into_iter().flatten() {
            let event_id = event["id"].as_str().unwrap_or_default();
            let (_, attempts) = get(
                &client,
                &base,
                &format!("/events/{event_id}/attempts?limit=100"),
            )
            .await?;
            recorded += attempts["items"].as_array().map_or(0, Vec::len) as u64;
        }
        if recorded < u64::from(**n) {
            unrecorded += 1;
        }
    }
    if !duplicated.is_empty() {
        out.notes.push(format!(
            "{unrecorded} of {} duplicated orders checked have fewer attempts on record than deliveries",
            duplicated.len().min(50)
        ));
    }
    // A process killed with -9 between a delivery and its commit takes the outcome with it:
    // those duplicates are reported (and bounded above), not failed. Every process that
    // lives on must have recorded what it delivered.
    let killed = matches!(scenario, "kill" | "kill-repeat");
    out.check(
        unrecorded == 0 || killed,
        format!("{unrecorded} duplicate deliveries are not on record"),
    );
    for i in 0..nodes.servers.len() {
        if let Some(b) = nodes.base(i) {
            out.rescued += rescued(&client, &b).await;
        }
    }
    Ok(out)
}

/// A tmpfs of `megabytes` mounted on a directory for the scenario's life (needs root, as CI
/// runs).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, megabytes: u64) -> anyhow::Result<SmallDisk> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "mounting a {megabytes} MB tmpfs on {} failed: the disk-full scenario needs root",
            dir.display()
        );
        Ok(SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the disk is full; how many bytes were written.
fn fill_disk(path: &std::path::Path) -> u64 {
    use std::io::Write;
    let Ok(mut file) = std::fs::File::create(path) else {
        return 0;
    };
    let mut written = 0u64;
    for size in [1 << 20, 4096, 1] {
        let block = vec![0u8; size];
        while let Ok(n) = file.write(&block) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
    }
    let _ = file.flush();
    written
}

/// Waits `time`, noting in `recovered` (if not yet noted) the first moment every push
/// acknowledged over a second ago had been delivered.
async fn watch_recovery(
    load: &Load,
    sink: &FaultSink,
    time: Duration,
    recovered: &mut Option<Instant>,
) {
    let until = Instant::now() + time;
    while Instant::now() < until {
        if recovered.is_none() && backlog(load, sink) == 0 {
            *recovered = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pushes acknowledged over a second ago that the sink has not accepted yet.
fn backlog(load: &Load, sink: &FaultSink) -> usize {
    let settled = Instant::now() - Duration::from_secs(1);
    let accepted = sink.state.accepted.lock().unwrap();
    let seen = load.seen.lock().unwrap();
    seen.acked
        .iter()
        .filter(|(n, at)| **at < settled && !accepted.contains_key(&n.to_string()))
        .count()
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let res = client
        .get(format!("{base}/api/v1{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

/// Events not finished and jobs still running (at most a page of each is counted).
async fn open_rows(client: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for path in [
        "/events?status=NEW&limit=100",
        "/events?status=TRANSFORMED&limit=100",
        "/jobs?status=PROCESSING&limit=100",
    ] {
        let (status, page) = get(client, base, path).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {page}");
        n += page["items"].as_array().map_or(0, Vec::len);
    }
    Ok(n)
}

/// The node's count of claims taken over after their lease ran out.
async fn rescued(client: &reqwest::Client, base: &str) -> f64 {
    let Ok(res) = client.get(format!("{base}/metrics")).send().await else {
        return 0.0;
    };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("wharf_claims_rescued_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the Postgres control command `ctl` with `action` (`stop -m fast`, `start`).
fn postgres_ctl(ctl: &str, action: &str) -> anyhow::Result<()> {
    let line = format!("{ctl} {action}");
    let status = Command::new("sh").args(["-c", &line]).status()?;
    anyhow::ensure!(status.success(), "`{line}` failed ({status})");
    Ok(())
}

/// Whether the Postgres server answers a query.
async fn postgres_answers(url: &str) -> bool {
    use sqlx::Connection;
    let attempt = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        Ok::<_, sqlx::Error>(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(()))
    )
}

/// Terminates every connection Wharf holds to the database `name`; how many.
async fn terminate_wharf(admin_url: &str, name: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = 'wharf'",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await?;
    Ok(n)
}

/// Opens connections until the server refuses more (or `most`), and holds them.
async fn fill_connections(admin_url: &str, most: usize) -> Vec<sqlx::PgConnection> {
    use sqlx::Connection;
    let mut held = Vec::new();
    while held.len() < most {
        match sqlx::PgConnection::connect(admin_url).await {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_taken_apart() {
        let url = "postgres://postgres@127.0.0.1:5432/wharf_x?sslmode=disable";
        assert_eq!(db_name(url), "wharf_x");
        assert_eq!(upstream_of(url).unwrap().port(), 5432);
        assert_eq!(
            through(url, "127.0.0.1:4000".parse().unwrap()),
            "postgres://postgres@127.0.0.1:4000/wharf_x?sslmode=disable"
        );
    }

    #[test]
    fn two_node_and_database_scenarios_are_for_postgres() {
        assert!(applies("kill", false));
        assert!(applies("overload", false));
        assert!(!applies("stall", false));
        assert!(!applies("storage-cut", false));
        assert!(applies("disk-full", false));
        assert!(!applies("disk-full", true));
        assert!(SCENARIOS
            .iter()
            .all(|s| applies(s, true) || *s == "disk-full"));
    }
}
