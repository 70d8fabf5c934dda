//! The transformation bench: one typical order through the library's programs, in process.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::Args;

/// µs per record of one typical Shopify order through the library's JavaScript
/// transformation (JSON in and out) and through its CSV template, on one core; then through
/// the server's transformation pool (thread hand-off included).
pub async fn run(args: &Args) -> anyhow::Result<()> {
    use wharf::transform::{library, Compiled, Limits, Program, RunContext, Transformer};
    let order: Value = serde_json::from_str(include_str!(
        "../../src/transform/library/samples/shopify_order.json"
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
