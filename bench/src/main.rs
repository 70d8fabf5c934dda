//! `wharf-bench`: measures one `wharf serve` (release build) on a fresh SQLite or Postgres
//! store, fed signed Shopify-like order webhooks and delivering to a local sink.
//!
//! Phases: ingest at a fixed rate (open loop: latency from each request's scheduled send time,
//! so a slow server cannot hide its queueing), end-to-end drain, low load (receipt → delivery),
//! and a backlog built while the sink is paused (memory with the backlog in the database); then
//! ingest alone, on a second fresh store with the server's workers off. On Postgres it reports
//! what the database did per order of the ingest phase (row writes, dead rows, WAL bytes), can
//! store history first (`--prefill N`), and runs with autovacuum on, as production does.
//! Every run checks that the sink received each accepted order exactly once, and writes
//! `bench-report.json` and a table. `--smoke` runs it all small, in seconds, for CI.

// The bench is Wharf's client, not one of its connectors: its requests need no outbound guard.
#![allow(clippy::disallowed_methods)]

mod faults;
mod history;
mod load;
mod pgstats;
mod server;
mod transforms;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use tokio::sync::watch;
use wharf_testkit::sink::Sink;

use load::{drain, drive, percentile};
use server::{cpu_ms_per_order, cpu_reading, received_placement, rss_mb, setup, start_wharf};

use pgstats::{counters, per_order, Keep, RunSettings, Waits};

/// The owner token the bench's server bootstraps with.
const TOKEN: &str = "wharf_bench_owner_token_0123456789";
/// The Shopify webhook secret of the bench's key.
const SECRET: &str = "bench_webhook_secret";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "wharf-bench",
    about = "Measure Wharf's ingest, delivery and memory"
)]
pub struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// A Postgres server the bench may create a fresh database on.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_url: String,
    /// The `wharf` binary; by default the one beside this bench.
    #[arg(long)]
    pub wharf: Option<PathBuf>,
    /// Ingest phase: webhooks a second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Ingest phase: seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Low-load phase: webhooks a second.
    #[arg(long, default_value_t = 50)]
    pub lowload_rate: u64,
    /// Low-load phase: seconds.
    #[arg(long, default_value_t = 10)]
    pub lowload_duration: u64,
    /// Backlog phase: events queued while the sink is paused.
    #[arg(long, default_value_t = 100_000)]
    pub backlog: u64,
    /// Workers of the server (`workers.count`).
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// Each destination's share of the workers (`workers.per_destination`); Wharf's default
    /// when not given.
    #[arg(long)]
    pub per_destination: Option<usize>,
    /// A setting for the server, as `WHARF_…=value` (repeatable): the server sees no other
    /// `WHARF_` variable of the bench's environment, so that a run's settings are its own.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// Seconds, small numbers: checks that nothing is lost or duplicated, never a speed.
    #[arg(long)]
    pub smoke: bool,
    /// Orders of history stored before the measured phases (Postgres), to show what a database
    /// in use costs against a fresh one.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// Ingest-only phase (a server with its workers off, on a fresh store): webhooks a second.
    #[arg(long, default_value_t = 6000)]
    pub ingest_only_rate: u64,
    /// Ingest-only phase: seconds (0 skips the phase).
    #[arg(long, default_value_t = 10)]
    pub ingest_only_duration: u64,
    /// Ingest-only phase: seconds at the same rate before the measured ones, reported apart
    /// (`ingest_only_warmup_*`): a server just started opens its database connections and reads
    /// its configuration with the first webhooks, which wait for that. The measured seconds
    /// follow without a pause (0: measure from the first webhook).
    #[arg(long, default_value_t = 1)]
    pub ingest_only_warmup: u64,
    /// Ingest-only phase: write each accepted request's scheduled send time (seconds from the
    /// phase's start, the warm-up's included) and latency (ms) to this file, one `seconds,ms`
    /// line each, in send order: the shape of a tail (one stall, or many slow requests) that
    /// percentiles hide.
    #[arg(long)]
    pub latencies: Option<PathBuf>,
    /// `on`: turn Postgres's autovacuum on for the run if it is off, as production runs it, and
    /// restore the setting afterwards (not in a smoke run). `leave`: run with the server's
    /// setting. The report says which it was.
    #[arg(long, default_value = "on")]
    pub autovacuum: String,
    /// Postgres's `min_wal_size` for the run (not in a smoke run), raised to this if lower and
    /// restored afterwards, or `leave`. Below it, WAL files are kept at a checkpoint for reuse;
    /// without enough of them a burst creates new ones, and each creation (16 MB written and
    /// flushed) holds every commit: 20–60 ms each second at 5,000 webhooks a second. Production
    /// sets it for its bursts, as Postgres's documentation advises, and a server that has run
    /// at it has the files: the bench makes them ready before the measured phases and before
    /// ingest alone (see `pgstats::prepare_wal`; not with `leave`, nor in a smoke run). The
    /// report says what it was, and the WAL files there were and were made ready.
    #[arg(long, default_value = "1GB")]
    pub min_wal_size: String,
    /// Where the report goes.
    #[arg(long, default_value = "bench-report.json")]
    pub out: PathBuf,
    /// Instead of the server bench: the fault suite (`--scenarios` to choose, `--store both`
    /// for Postgres then SQLite, `--smoke` for the short version CI runs).
    #[arg(long)]
    pub faults: bool,
    /// The fault scenarios to run, comma-separated (default: all).
    #[arg(long)]
    pub scenarios: Option<String>,
    /// How to stop and start the Postgres server for the `postgres-restart` fault, as a
    /// command the suite ends with `stop -m fast`, `stop -m immediate` or `start` (e.g.
    /// `pg_ctlcluster 15 main`). It restarts the whole server, every database on it: without
    /// it that scenario is skipped.
    #[arg(long)]
    pub postgres_ctl: Option<String>,
    /// Instead of the server bench: one typical Shopify order through the library's
    /// JavaScript transformation and CSV template, in this process (report to --out).
    #[arg(long)]
    pub transforms: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(bad) = args
        .server_env
        .iter()
        .find(|kv| !kv.starts_with("WHARF_") || !kv.contains('=') || kv.starts_with("WHARF_="))
    {
        anyhow::bail!("--server-env {bad:?}: give a setting as WHARF_NAME=value");
    }
    // What the bench sets itself has its own option, or must stay as the bench sets it.
    if let Some(own) = args.server_env.iter().find(|kv| {
        [
            "WHARF_BOOTSTRAP_TOKEN=",
            "WHARF_WORKERS__COUNT=",
            "WHARF_WORKERS__PER_DESTINATION=",
            "WHARF_WORKERS__ENABLED=",
            "WHARF_OUTBOUND__ALLOW=",
        ]
        .iter()
        .any(|k| kv.starts_with(k))
    }) {
        anyhow::bail!(
            "--server-env {own:?}: the bench sets this itself (see --workers and \
             --per-destination)"
        );
    }
    if args.transforms {
        return transforms::run(&args).await;
    }
    if args.faults {
        return faults::run(&args).await;
    }
    if args.smoke {
        args.rate = args.rate.min(200);
        args.duration = args.duration.min(3);
        args.lowload_duration = args.lowload_duration.min(2);
        args.backlog = args.backlog.min(1000);
        args.prefill = args.prefill.min(1000);
        args.ingest_only_rate = args.ingest_only_rate.min(500);
        args.ingest_only_duration = args.ingest_only_duration.min(2);
        args.ingest_only_warmup = args.ingest_only_warmup.min(1);
    }
    let postgres = match args.store.as_str() {
        "sqlite" => false,
        "postgres" => true,
        other => anyhow::bail!("--store must be sqlite or postgres, not {other}"),
    };
    anyhow::ensure!(
        args.prefill == 0 || postgres,
        "--prefill needs --store postgres"
    );
    anyhow::ensure!(
        matches!(args.autovacuum.as_str(), "on" | "leave"),
        "--autovacuum must be on or leave, not {}",
        args.autovacuum
    );
    // A smoke run changes nothing on the server: it measures no speed.
    let mut settings = RunSettings::new(&args.postgres_url);
    let set = async {
        if postgres && !args.smoke {
            if args.autovacuum == "on" {
                settings.set("autovacuum", "on", Keep::Same).await?;
            }
            if args.min_wal_size != "leave" {
                settings
                    .set("min_wal_size", &args.min_wal_size, Keep::AtLeast)
                    .await
                    .map_err(|e| anyhow::anyhow!("--min-wal-size {:?}: {e}", args.min_wal_size))?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    // What was changed before a setting failed is put back too.
    let outcome = match set {
        Ok(()) => run(&args).await,
        Err(e) => Err(e),
    };
    settings.restore().await?;
    outcome
}

/// The WAL files `--min-wal-size` keeps made ready (Postgres, not in a smoke run, not with
/// `leave`): what [`pgstats::prepare_wal`] found and made (or why it could not), or null.
async fn wal_files_ready(args: &Args) -> anyhow::Result<serde_json::Value> {
    if args.store != "postgres" || args.smoke || args.min_wal_size == "leave" {
        return Ok(json!(null));
    }
    pgstats::prepare_wal(&args.postgres_url)
        .await
        .map_err(|e| anyhow::anyhow!("making WAL files ready: {e}"))
}

/// A fresh store: SQLite in the server's temp dir (`None`), or a new Postgres database (its URL
/// and name).
async fn fresh_store(args: &Args) -> anyhow::Result<Option<(String, String)>> {
    if args.store != "postgres" {
        return Ok(None);
    }
    use sqlx::Connection;
    let name = format!("wharf_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&args.postgres_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    // The URL's options (e.g. `?sslmode=disable`) stay; only the database's name changes.
    let (url, options) = match args.postgres_url.split_once('?') {
        Some((url, options)) => (url, format!("?{options}")),
        None => (args.postgres_url.as_str(), String::new()),
    };
    let (base, _) = url
        .rsplit_once('/')
        .ok_or_else(|| anyhow::anyhow!("--postgres-url must name a database: postgres://…/test"))?;
    Ok(Some((format!("{base}/{name}{options}"), name)))
}

async fn drop_store(args: &Args, store: Option<(String, String)>) {
    if let Some((_, name)) = store {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&args.postgres_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Ingest alone: a server with its workers off takes webhooks at `--ingest-only-rate`; its
/// throughput and latency (requests per second, p99 ms).
/// What ingest alone measured: requests a second, p99 ms, errors, and CPU milliseconds per
/// request of the server and of Postgres.
struct IngestOnly {
    rps: f64,
    p99_ms: f64,
    /// Each second's p99, ms.
    p99_by_second: Vec<f64>,
    /// The warm-up's p99 and each of its seconds' (ms), when there was one.
    warmup_p99_ms: Option<f64>,
    warmup_p99_by_second: Vec<f64>,
    errors: u64,
    server_cpu_ms: f64,
    postgres_cpu_ms: f64,
    /// What the database's connections waited on (Postgres; see [`Waits`]).
    postgres_waits: serde_json::Value,
    /// The WAL files made ready before the phase (see [`wal_files_ready`]).
    wal_files: serde_json::Value,
}

async fn ingest_only(args: &Args, client: &reqwest::Client) -> anyhow::Result<IngestOnly> {
    // The phases before used WAL files that a checkpoint may not have renamed for reuse yet.
    let wal_files = wal_files_ready(args).await?;
    let store = fresh_store(args).await?;
    let sink = Sink::builder().keep_bodies(false).start().await;
    let server = start_wharf(
        args,
        store.as_ref().map(|(url, _)| url.as_str()),
        &[("WHARF_WORKERS__ENABLED", "false")],
    )?;
    let url = setup(client, &server.base, sink.addr).await?.webhook_url;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warmup = args.ingest_only_warmup;
    let n = args.ingest_only_rate * args.ingest_only_duration;
    eprintln!(
        "ingest only: {n} webhooks at {}/s after {warmup} s of warm-up, workers off",
        args.ingest_only_rate
    );
    let pid = server.child.id();
    // CPU and waits are read over the measured seconds only: from the warm-up's end.
    let waits = match &store {
        Some((url, _)) => Some(Waits::start(url, Duration::from_secs(warmup)).await),
        None => None,
    };
    let cpu_at_warm_end = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        cpu_reading(pid)
    });
    let sent = drive(
        client,
        &url,
        30_000_000,
        args.ingest_only_rate * (warmup + args.ingest_only_duration),
        args.ingest_only_rate,
        args.concurrency,
    )
    .await;
    let after = cpu_reading(pid);
    let cpu_before = cpu_at_warm_end.await;
    let postgres_waits = match waits {
        Some(Ok(w)) => w.finish().await,
        Some(Err(e)) => Err(e),
        None => Ok(json!(null)),
    };
    // The store goes whatever failed above; then the failure is told.
    drop(server);
    drop_store(args, store).await;
    let (cpu_before, postgres_waits) = (cpu_before?, postgres_waits?);
    if let Some(path) = &args.latencies {
        load::write_latencies(&sent, path)?;
    }
    let (warm, sent) = sent.split_at(warmup as f64);
    let (server_cpu_ms, postgres_cpu_ms) =
        cpu_ms_per_order(&cpu_before, &after, sent.latencies.len() as u64);
    let sorted = |mut lat: Vec<f64>| {
        lat.sort_by(|a, b| a.total_cmp(b));
        lat
    };
    let lat = sorted(sent.latencies.clone());
    let warm_lat = sorted(warm.latencies.clone());
    Ok(IngestOnly {
        rps: sent.latencies.len() as f64 / sent.elapsed.as_secs_f64(),
        p99_ms: percentile(&lat, 99.0),
        p99_by_second: load::percentile_by_second(&sent, 99.0),
        warmup_p99_ms: (!warm_lat.is_empty()).then(|| percentile(&warm_lat, 99.0)),
        warmup_p99_by_second: load::percentile_by_second(&warm, 99.0),
        // The warm-up's errors as well (`split_at` leaves them all with the measured part).
        errors: sent.errors,
        server_cpu_ms,
        postgres_cpu_ms,
        postgres_waits,
        wal_files,
    })
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let store = fresh_store(args).await?;
    let db_url = store.as_ref().map(|(url, _)| url.clone());

    // Only arrival times are kept: the bench sends hundreds of thousands of orders.
    let sink = Sink::builder()
        .key(load::order_id)
        .keep_bodies(false)
        .start()
        .await;

    let server = start_wharf(args, db_url.as_deref(), &[])?;
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let bench = setup(&client, &server.base, sink.addr).await?;
    let url = bench.webhook_url;
    if args.prefill > 0 {
        if let Some(db) = &db_url {
            eprintln!("prefill: {} orders of history", args.prefill);
            history::prefill_postgres(db, bench.stream, args.prefill, &load::order(0)).await?;
        }
    }
    // After the prefill, which writes much WAL; before the counters, so that none of this is
    // counted as the orders'.
    let wal_files = wal_files_ready(args).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mb(pid);
    let before = match &db_url {
        Some(db) => Some(counters(db).await?),
        None => None,
    };

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
    let cpu_before = cpu_reading(pid);
    let ingest = drive(&client, &url, 1, n, args.rate, args.concurrency).await;
    let (last, backlog_series) =
        drain(&sink, &ingest.sent_at, started, Duration::from_secs(600)).await;
    let (server_cpu, postgres_cpu) =
        cpu_ms_per_order(&cpu_before, &cpu_reading(pid), ingest.sent_at.len() as u64);
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    let rss_load = *sampling.lock().unwrap();
    // What the database did for the orders of the ingest phase, once the server's connections
    // have published their statistics.
    let db_cost = match (&db_url, before) {
        (Some(db), Some(before)) => {
            tokio::time::sleep(Duration::from_secs(11)).await;
            per_order(&before, &counters(db).await?, ingest.sent_at.len() as u64)
        }
        _ => json!(null),
    };
    let placement = received_placement(&client, &server.base).await;
    let (autovacuum, min_wal_size) = match &db_url {
        Some(db) => (
            json!(pgstats::setting(db, "autovacuum").await?),
            json!(pgstats::setting(db, "min_wal_size").await?),
        ),
        None => (json!(null), json!(null)),
    };
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
    let _ = drain(
        &sink,
        &low.sent_at,
        Instant::now(),
        Duration::from_secs(120),
    )
    .await;
    let mut delivery: Vec<f64> = sink.with_arrivals(|arrivals| {
        low.sent_at
            .iter()
            .filter_map(|(id, sent)| {
                arrivals
                    .get(id)
                    .and_then(|a| a.first())
                    .map(|t| (*t - *sent).as_secs_f64() * 1000.0)
            })
            .collect()
    });
    delivery.sort_by(|a, b| a.total_cmp(b));

    // Backlog: the destination stops answering; the queue lives in the database.
    eprintln!("backlog: {} webhooks with the sink paused", args.backlog);
    sink.pause(true);
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
    sink.pause(false);
    let (backlog_done, _) = drain(
        &sink,
        &backlog.sent_at,
        Instant::now(),
        Duration::from_secs(1800),
    )
    .await;

    // Exactly once, across every phase.
    let (lost, duplicated) = sink.with_arrivals(|arrivals| {
        let mut lost = 0u64;
        let mut dup = 0u64;
        for sent in [&ingest.sent_at, &low.sent_at, &backlog.sent_at] {
            for id in sent.keys() {
                match arrivals.get(id).map(Vec::len) {
                    None => lost += 1,
                    Some(k) => dup += k as u64 - 1,
                }
            }
        }
        (lost, dup)
    });
    let errors = ingest.errors + low.errors + backlog.errors;
    drop(server);
    drop_store(args, store).await;
    let alone = if args.ingest_only_duration > 0 {
        Some(ingest_only(args, &client).await?)
    } else {
        None
    };
    let postgres = args.store == "postgres";

    let mut report = json!({
        "store": args.store,
        "smoke": args.smoke,
        "ingest_rps": (ingest_rps * 10.0).round() / 10.0,
        "ingest_p50_ms": percentile(&lat, 50.0),
        "ingest_p99_ms": percentile(&lat, 99.0),
        "ingest_p999_ms": percentile(&lat, 99.9),
        "ingest_p99_ms_by_second": load::percentile_by_second(&ingest, 99.0),
        "ingest_errors": errors,
        "e2e_events_per_s": (e2e * 10.0).round() / 10.0,
        "ingest_only_rps": alone.as_ref().map(|a| (a.rps * 10.0).round() / 10.0),
        "ingest_only_p99_ms": alone.as_ref().map(|a| a.p99_ms),
        "ingest_only_p99_ms_by_second": alone.as_ref().map(|a| a.p99_by_second.clone()),
        "ingest_only_errors": alone.as_ref().map(|a| a.errors),
        // CPU time per order, from /proc: far steadier than throughput on a shared machine.
        // (SQLite works inside the server, so its share is in the server's figure.)
        "server_cpu_ms_per_order": server_cpu,
        "postgres_cpu_ms_per_order": postgres.then_some(postgres_cpu),
        "ingest_only_server_cpu_ms": alone.as_ref().map(|a| a.server_cpu_ms),
        "ingest_only_postgres_cpu_ms": alone.as_ref().filter(|_| postgres).map(|a| a.postgres_cpu_ms),
        "prefill_orders": args.prefill,
        "autovacuum": autovacuum,
        "database_per_order": db_cost,
        // Where the ingest phase's events went: those `stored` unclaimed cost a claim each.
        "received_placement": placement,
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
                     "workers": args.workers, "per_destination": args.per_destination, "lowload_rate": args.lowload_rate,
                     "ingest_only_rate": args.ingest_only_rate, "server_env": args.server_env},
    });
    // (Added apart: one `json!` this long reaches the macro recursion limit.)
    report["min_wal_size"] = min_wal_size;
    // The WAL files made ready before the run (see `pgstats::prepare_wal`).
    report["wal_files"] = wal_files;
    // What Postgres's connections did during ingest alone (average connections in each state).
    report["ingest_only_postgres_waits"] = json!(alone.as_ref().map(|a| a.postgres_waits.clone()));
    report["ingest_only_wal_files"] = json!(alone.as_ref().map(|a| a.wal_files.clone()));
    report["settings"]["ingest_only_warmup_s"] = json!(args.ingest_only_warmup);
    // The warm-up before ingest alone's measured seconds.
    report["ingest_only_warmup_p99_ms"] = json!(alone.as_ref().and_then(|a| a.warmup_p99_ms));
    report["ingest_only_warmup_p99_ms_by_second"] =
        json!(alone.as_ref().map(|a| a.warmup_p99_by_second.clone()));
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("{:<24} {:>12}", "store", args.store);
    for k in [
        "ingest_rps",
        "ingest_p50_ms",
        "ingest_p99_ms",
        "ingest_p999_ms",
        "ingest_errors",
        "e2e_events_per_s",
        "ingest_only_rps",
        "ingest_only_p99_ms",
        "ingest_only_warmup_p99_ms",
        "server_cpu_ms_per_order",
        "postgres_cpu_ms_per_order",
        "ingest_only_server_cpu_ms",
        "ingest_only_postgres_cpu_ms",
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
            .map(|f| match k.contains("cpu") {
                true => format!("{f:.3}"),
                false => format!("{f:.1}"),
            })
            .unwrap_or_else(|| v.to_string());
        println!("{k:<24} {text:>12}");
    }
    println!(
        "{:<24} {:>12}",
        "received_placement", report["received_placement"]
    );
    if let Some(costs) = report["database_per_order"].as_object() {
        for (k, v) in costs {
            println!("{k:<24} {:>12}", v.to_string());
        }
    }
    println!("report written to {}", args.out.display());

    // Refused pushes (e.g. 503 under overload) were never accepted, so the sender would retry
    // them: they are reported, not failures. Failure is an accepted order lost or doubled.
    if lost > 0 || duplicated > 0 || backlog_done.is_none() {
        anyhow::bail!(
            "{lost} lost, {duplicated} duplicated: every accepted order must arrive exactly once"
        );
    }
    Ok(())
}
