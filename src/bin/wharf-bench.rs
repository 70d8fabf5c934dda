//! `wharf-bench`: measures one `wharf serve` (release build) on a fresh SQLite or Postgres
//! store, fed signed Shopify-like order webhooks and delivering to a local sink.
//!
//! Phases: ingest at a fixed rate (open loop: latency from each request's scheduled send time,
//! so a slow server cannot hide its queueing), end-to-end drain, low load (receipt → delivery),
//! and a backlog built while the sink is paused (memory with the backlog in the database).
//! Every run checks that the sink received each accepted order exactly once, and writes
//! `bench-report.json` and a table. `--smoke` runs it all small, in seconds, for CI.

// The bench is Wharf's client, not one of its connectors: its requests need no outbound guard.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

const TOKEN: &str = "wharf_bench_owner_token_0123456789";
const SECRET: &str = "bench_webhook_secret";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "wharf-bench",
    about = "Measure Wharf's ingest, delivery and memory"
)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// A Postgres server the bench may create a fresh database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// The `wharf` binary; by default the one beside this bench.
    #[arg(long)]
    wharf: Option<PathBuf>,
    /// Ingest phase: webhooks a second.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Ingest phase: seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Low-load phase: webhooks a second.
    #[arg(long, default_value_t = 50)]
    lowload_rate: u64,
    /// Low-load phase: seconds.
    #[arg(long, default_value_t = 10)]
    lowload_duration: u64,
    /// Backlog phase: events queued while the sink is paused.
    #[arg(long, default_value_t = 100_000)]
    backlog: u64,
    /// Workers of the server (`workers.count`).
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// Seconds, small numbers: checks that nothing is lost or duplicated, never a speed.
    #[arg(long)]
    smoke: bool,
    /// Where the report goes.
    #[arg(long, default_value = "bench-report.json")]
    out: PathBuf,
    /// Instead of the server bench: one typical Shopify order through the library's
    /// JavaScript transformation and CSV template, in this process (report to --out).
    #[arg(long)]
    transforms: bool,
}

/// What the sink saw: arrivals by order id.
#[derive(Default)]
struct SinkLog {
    arrivals: HashMap<String, Vec<Instant>>,
    total: u64,
}

#[derive(Clone)]
struct Sink {
    log: Arc<Mutex<SinkLog>>,
    paused: watch::Receiver<bool>,
}

async fn receive(State(sink): State<Sink>, body: Bytes) -> StatusCode {
    // A paused destination holds requests; only answered deliveries count as received.
    let mut paused = sink.paused.clone();
    let _ = paused.wait_for(|p| !*p).await;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The library's sales-order transformation carries the Shopify id as `external_id`.
    let id = match v["external_id"].as_str() {
        Some(id) => id.to_string(),
        None => v["id"].as_u64().map(|n| n.to_string()).unwrap_or_default(),
    };
    let mut log = sink.log.lock().unwrap();
    log.arrivals.entry(id).or_default().push(Instant::now());
    log.total += 1;
    StatusCode::OK
}

fn order(n: u64) -> Value {
    json!({
        "id": n, "name": format!("#{n}"), "email": "customer@example.com", "currency": "GBP",
        "created_at": "2026-11-22T10:00:00+00:00", "financial_status": "paid", "total_price": "249.90",
        "subtotal_price": "239.90", "total_tax": "41.65", "total_discounts": "10.00",
        "shipping_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Analytical Row",
            "city": "London", "zip": "EC1A 1BB", "country_code": "GB", "phone": "+44 20 7946 0000"},
        "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "address1": "12 Analytical Row",
            "city": "London", "zip": "EC1A 1BB", "country_code": "GB"},
        "line_items": [
            {"id": n * 10 + 1, "sku": "WH-TEE-BLK-M", "title": "Wharf tee", "variant_title": "Black / M",
             "quantity": 2, "price": "39.95", "grams": 180, "requires_shipping": true, "taxable": true},
            {"id": n * 10 + 2, "sku": "WH-HOOD-GRY-L", "title": "Wharf hoodie", "variant_title": "Grey / L",
             "quantity": 1, "price": "89.95", "grams": 620, "requires_shipping": true, "taxable": true},
            {"id": n * 10 + 3, "sku": "WH-CAP-NVY", "title": "Wharf cap", "variant_title": "Navy",
             "quantity": 1, "price": "70.05", "grams": 90, "requires_shipping": true, "taxable": true}
        ],
        "shipping_lines": [{"code": "NEXT_DAY", "title": "Next day", "price": "10.00"}],
        "note_attributes": [{"name": "gift", "value": "no"}],
        "tags": "bench, wholesale"
    })
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Resident memory of a process, in MB (Linux).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_wharf(args: &Args, database_url: Option<&str>) -> anyhow::Result<Server> {
    let exe = match &args.wharf {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("wharf"),
    };
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(&exe);
    // The benchmark decides every option itself: whatever WHARF_* variables the caller's shell
    // carries (CI exports WHARF_TEST_DATABASE_URL for the test suite) must not reach the server.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("WHARF_BOOTSTRAP_TOKEN", TOKEN)
        .env("WHARF_LOG__LEVEL", "warn,wharf=info")
        .env("WHARF_WORKERS__COUNT", args.workers.to_string())
        // The bench's sink listens on loopback, which the outbound guard refuses by default.
        .env("WHARF_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1/128"]"#)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd.spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot start {}: {e} (build it with `cargo build --release`)",
            exe.display()
        )
    })?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{} exited before listening ({status})", exe.display());
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(i) = line.find("address=") {
                let addr = line[i + 8..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                // Keep draining the server's output so it never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Ok(Server {
                    child,
                    base: format!("http://{addr}"),
                    _dir: dir,
                });
            }
        }
    }
    anyhow::bail!("wharf did not start listening")
}

async fn api(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let res = client
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    let v: Value = res.json().await?;
    anyhow::ensure!(status.is_success(), "POST {path}: {status} {v}");
    Ok(v)
}

/// Creates the Shopify webhook stream; returns the webhook URL.
async fn setup(client: &reqwest::Client, base: &str, sink: SocketAddr) -> anyhow::Result<String> {
    let key = api(client, base, "/keys", json!({"system": "shopify", "title": "Bench shop", "credentials": {
        "shop_domain": "bench.myshopify.com", "access_token": "shpat_bench", "webhook_secret": SECRET}})).await?;
    let source = api(
        client,
        base,
        "/sources",
        json!({"title": "Orders", "system": "shopify",
        "function": "shopify.webhook", "key_id": key["id"], "trigger": "webhook",
        "params": {"topics": ["orders/create"]}}),
    )
    .await?;
    let dest = api(
        client,
        base,
        "/destinations",
        json!({"title": "Sink", "system": "http",
        "function": "http.send", "params": {"url": format!("http://{sink}/in")}}),
    )
    .await?;
    api(
        client,
        base,
        "/streams",
        json!({"title": "Bench", "data_type": "sales_order",
        "source_id": source["id"], "transformation_id": wharf::transform::library::SHOPIFY_SALES_ORDER_ID,
        "destination_id": dest["id"]}),
    )
    .await?;
    Ok(format!(
        "{base}{}",
        source["webhook_url"].as_str().unwrap_or_default()
    ))
}

/// Results of sending a batch of webhooks.
struct Sent {
    /// Latency of each accepted request from its scheduled send time, ms.
    latencies: Vec<f64>,
    /// When each accepted order was sent, by id.
    sent_at: HashMap<String, Instant>,
    errors: u64,
    elapsed: Duration,
}

/// Sends orders `first..first+n` at `rate` a second (0: as fast as `concurrency` allows).
async fn drive(
    client: &reqwest::Client,
    url: &str,
    first: u64,
    n: u64,
    rate: u64,
    concurrency: usize,
) -> Sent {
    let slots = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let results = Arc::new(Mutex::new((
        Vec::with_capacity(n as usize),
        HashMap::new(),
        0u64,
    )));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let scheduled = if rate == 0 {
            Instant::now()
        } else {
            start + Duration::from_secs_f64(i as f64 / rate as f64)
        };
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("open");
        let (client, url, results) = (client.clone(), url.to_string(), results.clone());
        let id = first + i;
        tasks.spawn(async move {
            let body = serde_json::to_vec(&order(id)).expect("plain JSON");
            let sent = Instant::now();
            let res = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-shopify-hmac-sha256", sign(&body))
                .header("x-shopify-topic", "orders/create")
                .header("x-shopify-shop-domain", "bench.myshopify.com")
                .header("x-shopify-webhook-id", format!("bench-{id}"))
                .body(body)
                .send()
                .await;
            let ok = matches!(&res, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED);
            let mut r = results.lock().unwrap();
            if ok {
                r.0.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                r.1.insert(id.to_string(), sent);
            } else {
                r.2 += 1;
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    // Every task has finished: take what they recorded.
    let (latencies, sent_at, errors) = std::mem::take(&mut *results.lock().unwrap());
    Sent {
        latencies,
        sent_at,
        errors,
        elapsed,
    }
}

/// Waits until the sink has every id in `ids` (or `timeout` passes); returns when the last
/// arrived, and samples of (seconds, backlog) along the way.
async fn drain(
    log: &Arc<Mutex<SinkLog>>,
    ids: &HashMap<String, Instant>,
    since: Instant,
    timeout: Duration,
) -> (Option<Instant>, Vec<(f64, u64)>) {
    let mut series = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let (missing, last) = {
            let log = log.lock().unwrap();
            let mut missing = 0u64;
            let mut last: Option<Instant> = None;
            for id in ids.keys() {
                match log.arrivals.get(id).and_then(|a| a.first()) {
                    Some(t) => last = Some(last.map_or(*t, |l| l.max(*t))),
                    None => missing += 1,
                }
            }
            (missing, last)
        };
        series.push((since.elapsed().as_secs_f64(), missing));
        if series.len() % 10 == 1 {
            eprintln!(
                "  {:>6.1}s: {missing} of {} not delivered yet",
                since.elapsed().as_secs_f64(),
                ids.len()
            );
        }
        if missing == 0 {
            return (last, series);
        }
        if Instant::now() > deadline {
            return (None, series);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.transforms {
        return transforms_bench(&args).await;
    }
    if args.smoke {
        args.rate = args.rate.min(200);
        args.duration = args.duration.min(3);
        args.lowload_duration = args.lowload_duration.min(2);
        args.backlog = args.backlog.min(1000);
    }
    // A fresh store: SQLite in the server's temp dir, or a new Postgres database.
    let (db_url, pg_name) = match args.store.as_str() {
        "sqlite" => (None, None),
        "postgres" => {
            use sqlx::Connection;
            let name = format!("wharf_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&args.postgres_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            let (base, _) = args
                .postgres_url
                .rsplit_once('/')
                .expect("URL with a database");
            (Some(format!("{base}/{name}")), Some(name))
        }
        other => anyhow::bail!("--store must be sqlite or postgres, not {other}"),
    };

    let (pause_tx, pause_rx) = watch::channel(false);
    let log = Arc::new(Mutex::new(SinkLog::default()));
    let app = Router::new().route("/in", post(receive)).with_state(Sink {
        log: log.clone(),
        paused: pause_rx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = start_wharf(&args, db_url.as_deref())?;
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = setup(&client, &server.base, sink_addr).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mb(pid);

    // Ingest at a fixed rate, sampling memory meanwhile.
    let n = args.rate * args.duration;
    eprintln!("ingest: {n} webhooks at {}/s on {}", args.rate, args.store);
    let sampling = Arc::new(Mutex::new(0f64));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let peak = sampling.clone();
    let sampler = tokio::spawn(async move {
        loop {
            let v = rss_mb(pid);
            {
                let mut p = peak.lock().unwrap();
                *p = p.max(v);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop_rx.changed() => return,
            }
        }
    });
    let started = Instant::now();
    let ingest = drive(&client, &url, 1, n, args.rate, args.concurrency).await;
    let (last, backlog_series) =
        drain(&log, &ingest.sent_at, started, Duration::from_secs(600)).await;
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    let rss_load = *sampling.lock().unwrap();
    let mut lat = ingest.latencies.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let ingest_rps = ingest.latencies.len() as f64 / ingest.elapsed.as_secs_f64();
    let e2e = last
        .map(|l| ingest.sent_at.len() as f64 / (l - started).as_secs_f64())
        .unwrap_or(0.0);

    // Low load: receipt → delivery.
    let low_n = args.lowload_rate * args.lowload_duration;
    eprintln!("low load: {low_n} webhooks at {}/s", args.lowload_rate);
    let low = drive(
        &client,
        &url,
        10_000_000,
        low_n,
        args.lowload_rate,
        args.concurrency,
    )
    .await;
    let _ = drain(&log, &low.sent_at, Instant::now(), Duration::from_secs(120)).await;
    let mut delivery: Vec<f64> = {
        let log = log.lock().unwrap();
        low.sent_at
            .iter()
            .filter_map(|(id, sent)| {
                log.arrivals
                    .get(id)
                    .and_then(|a| a.first())
                    .map(|t| (*t - *sent).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    delivery.sort_by(|a, b| a.total_cmp(b));

    // Backlog: the destination stops answering; the queue lives in the database.
    eprintln!("backlog: {} webhooks with the sink paused", args.backlog);
    let _ = pause_tx.send(true);
    let backlog = drive(
        &client,
        &url,
        20_000_000,
        args.backlog,
        0,
        args.concurrency.min(64),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_backlog = rss_mb(pid);
    let _ = pause_tx.send(false);
    let (backlog_done, _) = drain(
        &log,
        &backlog.sent_at,
        Instant::now(),
        Duration::from_secs(1800),
    )
    .await;

    // Exactly once, across every phase.
    let (lost, duplicated) = {
        let log = log.lock().unwrap();
        let mut lost = 0u64;
        let mut dup = 0u64;
        for sent in [&ingest.sent_at, &low.sent_at, &backlog.sent_at] {
            for id in sent.keys() {
                match log.arrivals.get(id).map(Vec::len) {
                    None => lost += 1,
                    Some(k) => dup += k as u64 - 1,
                }
            }
        }
        (lost, dup)
    };
    let errors = ingest.errors + low.errors + backlog.errors;

    let report = json!({
        "store": args.store,
        "smoke": args.smoke,
        "ingest_rps": (ingest_rps * 10.0).round() / 10.0,
        "ingest_p50_ms": percentile(&lat, 50.0),
        "ingest_p99_ms": percentile(&lat, 99.0),
        "ingest_p999_ms": percentile(&lat, 99.9),
        "ingest_errors": errors,
        "e2e_events_per_s": (e2e * 10.0).round() / 10.0,
        "lowload_p50_ms": percentile(&delivery, 50.0),
        "lowload_p99_ms": percentile(&delivery, 99.0),
        "lowload_max_ms": delivery.last().copied().unwrap_or(0.0),
        "rss_idle_mb": rss_idle,
        "rss_load_mb": rss_load,
        "rss_backlog_100k_mb": rss_backlog,
        "backlog_events": args.backlog,
        "backlog_drained": backlog_done.is_some(),
        "lost": lost,
        "duplicated": duplicated,
        "backlog_series": backlog_series.iter().map(|(t, b)| json!([(t * 10.0).round() / 10.0, b])).collect::<Vec<_>>(),
        "settings": {"rate": args.rate, "duration_s": args.duration, "concurrency": args.concurrency,
                     "workers": args.workers, "lowload_rate": args.lowload_rate},
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("{:<24} {:>12}", "store", args.store);
    for k in [
        "ingest_rps",
        "ingest_p50_ms",
        "ingest_p99_ms",
        "ingest_p999_ms",
        "ingest_errors",
        "e2e_events_per_s",
        "lowload_p50_ms",
        "lowload_p99_ms",
        "lowload_max_ms",
        "rss_idle_mb",
        "rss_load_mb",
        "rss_backlog_100k_mb",
        "lost",
        "duplicated",
    ] {
        let v = &report[k];
        let text = v
            .as_f64()
            .map(|f| format!("{f:.1}"))
            .unwrap_or_else(|| v.to_string());
        println!("{k:<24} {text:>12}");
    }
    println!("report written to {}", args.out.display());

    drop(server);
    if let Some(name) = pg_name {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&args.postgres_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
    // Refused pushes (e.g. 503 under overload) were never accepted, so the sender would retry
    // them: they are reported, not failures. Failure is an accepted order lost or doubled.
    if lost > 0 || duplicated > 0 || backlog_done.is_none() {
        anyhow::bail!(
            "{lost} lost, {duplicated} duplicated: every accepted order must arrive exactly once"
        );
    }
    Ok(())
}

/// µs per record of one typical Shopify order through the library's JavaScript
/// transformation (JSON in and out) and through its CSV template, on one core; then through
/// the server's transformation pool (thread hand-off included).
async fn transforms_bench(args: &Args) -> anyhow::Result<()> {
    use wharf::transform::{library, Compiled, Limits, Program, RunContext, Transformer};
    let order: Value = serde_json::from_str(include_str!(
        "../transform/library/samples/shopify_order.json"
    ))?;
    let size = serde_json::to_vec(&order)?.len();
    let limits = Limits::from_config(&Default::default());
    let ctx = RunContext {
        settings: json!({"warehouse": "LON1", "timezone": "Europe/London"}),
        job: json!({"id": "bench", "trigger": "webhook"}),
        lookups: Arc::default(),
    };
    let library = library::public_transformations();
    let find = |id| library.iter().find(|t| t.id == id).expect("in the library");
    let n: u32 = if args.smoke { 200 } else { 20_000 };
    let mut report = serde_json::Map::new();
    println!("one {size}-byte Shopify order, {n} records each");
    for (key, id) in [
        ("javascript", library::SHOPIFY_SALES_ORDER_ID),
        ("template_csv", library::SHOPIFY_ORDER_LINES_CSV_ID),
    ] {
        let program = Program::of(find(id)).map_err(|e| anyhow::anyhow!(e.message))?;
        let mut unit = Compiled::new(&program, &limits).map_err(|e| anyhow::anyhow!(e.message))?;
        for _ in 0..n / 10 {
            unit.run(&order, &ctx, &limits)
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
        let mut samples = Vec::with_capacity(n as usize);
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            unit.run(&order, &ctx, &limits)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mean = started.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        samples.sort_by(f64::total_cmp);
        let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
        let median = samples[samples.len() / 2];
        println!(
            "{key:<14} mean {mean:>7.1} µs  median {median:>7.1} µs  p99 {p99:>7.1} µs  {:>8.0} records/s per core",
            1e6 / mean
        );
        report.insert(
            format!("{key}_us_per_record"),
            json!((mean * 10.0).round() / 10.0),
        );
        report.insert(
            format!("{key}_median_us"),
            json!((median * 10.0).round() / 10.0),
        );
        report.insert(format!("{key}_p99_us"), json!((p99 * 10.0).round() / 10.0));
        report.insert(
            format!("{key}_records_per_s_per_core"),
            json!((1e6 / mean).round()),
        );
    }
    // Through the pool, as the engine calls it: one thread per core, 64 records in flight.
    let pool = Transformer::start(&Default::default());
    let program = Program::of(find(library::SHOPIFY_SALES_ORDER_ID))
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let rate = {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            let (pool, program, order, ctx) =
                (pool.clone(), program.clone(), order.clone(), ctx.clone());
            tasks.spawn(async move {
                let mut k = i;
                while k < n {
                    let out = pool
                        .run(
                            uuid::Uuid::nil(),
                            program.clone(),
                            order.clone(),
                            ctx.clone(),
                        )
                        .await;
                    out.result.expect("the library transformation runs");
                    k += 64;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        f64::from(n) / started.elapsed().as_secs_f64()
    };
    pool.stop();
    println!(
        "javascript through the pool ({} threads): {rate:.0} records/s",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    report.insert("javascript_pool_records_per_s".into(), json!(rate.round()));
    report.insert("order_bytes".into(), json!(size));
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&Value::Object(report))?,
    )?;
    println!("report written to {}", args.out.display());
    Ok(())
}
