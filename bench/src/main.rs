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

mod load;
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
use server::{rss_mb, setup, start_wharf};

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
    /// Seconds, small numbers: checks that nothing is lost or duplicated, never a speed.
    #[arg(long)]
    pub smoke: bool,
    /// Where the report goes.
    #[arg(long, default_value = "bench-report.json")]
    pub out: PathBuf,
    /// Instead of the server bench: one typical Shopify order through the library's
    /// JavaScript transformation and CSV template, in this process (report to --out).
    #[arg(long)]
    pub transforms: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.transforms {
        return transforms::run(&args).await;
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

    // Only arrival times are kept: the bench sends hundreds of thousands of orders.
    let sink = Sink::builder()
        .key(load::order_id)
        .keep_bodies(false)
        .start()
        .await;

    let server = start_wharf(&args, db_url.as_deref())?;
    let pid = server.child.id();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = setup(&client, &server.base, sink.addr).await?;
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
        drain(&sink, &ingest.sent_at, started, Duration::from_secs(600)).await;
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
