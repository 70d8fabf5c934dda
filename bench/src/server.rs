//! The server under test: a `wharf serve` child process on a fresh store, its memory, and
//! the stream the bench feeds.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Args, SECRET, TOKEN};

/// Resident memory of a process, in MB (Linux).
pub fn rss_mb(pid: u32) -> f64 {
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

/// CPU seconds (user and system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last `)`.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every architecture it runs on.
    Some((name, ticks / 100.0))
}

/// CPU seconds used so far by the server (`pid`) and by every Postgres process on this machine
/// (the bench's database is local). A process that exits between two readings takes its time
/// with it (an autovacuum worker may); the server's pooled connections stay.
#[derive(Debug, Clone, Default)]
pub struct CpuReading {
    pub server: f64,
    postgres: std::collections::HashMap<String, f64>,
}

pub fn cpu_reading(pid: u32) -> CpuReading {
    let server = cpu_seconds(&pid.to_string()).map_or(0.0, |(_, s)| s);
    let mut postgres = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                if let Some((_, s)) = cpu_seconds(&name).filter(|(c, _)| c == "postgres") {
                    postgres.insert(name, s);
                }
            }
        }
    }
    CpuReading { server, postgres }
}

/// Milliseconds of CPU per order between two readings: the server's, and Postgres's (a
/// process started in between counts from its start).
pub fn cpu_ms_per_order(before: &CpuReading, after: &CpuReading, orders: u64) -> (f64, f64) {
    let n = orders.max(1) as f64;
    let pg: f64 = after
        .postgres
        .iter()
        .map(|(pid, s)| s - before.postgres.get(pid).copied().unwrap_or(0.0))
        .sum();
    let round = |v: f64| (v * 1000.0 / n * 1000.0).round() / 1000.0;
    (round(after.server - before.server), round(pg))
}

/// A running `wharf serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `wharf serve` on loopback with a fresh data dir (and `database_url` if given).
pub fn start_wharf(
    args: &Args,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut server = start_wharf_in(args, dir.path(), database_url, env)?;
    server._dir = Some(dir);
    Ok(server)
}

/// Starts `wharf serve` on loopback with the data dir `dir`, which outlives it (a process
/// restarted on the same SQLite store).
pub fn start_wharf_in(
    args: &Args,
    dir: &std::path::Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let exe = match &args.wharf {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("wharf"),
    };
    let mut cmd = Command::new(&exe);
    // The benchmark decides every option itself: whatever WHARF_* variables the caller's shell
    // carries (CI exports WHARF_TEST_DATABASE_URL for the test suite) must not reach the server.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WHARF_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("WHARF_BOOTSTRAP_TOKEN", TOKEN)
        .env("WHARF_LOG__LEVEL", "warn,wharf=info")
        .env("WHARF_WORKERS__COUNT", args.workers.to_string())
        // The bench's sink listens on loopback, which the outbound guard refuses by default.
        .env("WHARF_OUTBOUND__ALLOW", r#"["127.0.0.0/8", "::1/128"]"#)
        .envs(
            args.per_destination
                .map(|n| ("WHARF_WORKERS__PER_DESTINATION", n.to_string())),
        )
        .envs(args.server_env.iter().filter_map(|kv| kv.split_once('=')))
        .envs(env.iter().copied())
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
                // Keep draining the server's output so it never blocks on a full pipe; its
                // errors are shown (they explain a failed run).
                std::thread::spawn(move || {
                    let mut shown = 0;
                    while let Ok(line) = rx.recv() {
                        if line.contains("ERROR") && !line.contains("on_failure") && shown < 20 {
                            shown += 1;
                            eprintln!("wharf: {line}");
                        }
                    }
                });
                return Ok(Server {
                    child,
                    base: format!("http://{addr}"),
                    _dir: None,
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

/// The bench's stream and where its webhooks go.
pub struct Setup {
    pub webhook_url: String,
    pub stream: uuid::Uuid,
}

/// Creates the Shopify webhook stream.
pub async fn setup(
    client: &reqwest::Client,
    base: &str,
    sink: SocketAddr,
) -> anyhow::Result<Setup> {
    setup_with_retry(client, base, sink, None).await
}

/// Creates the Shopify webhook stream, its destination with `retry` (its schedule and
/// timeout) when given.
pub async fn setup_with_retry(
    client: &reqwest::Client,
    base: &str,
    sink: SocketAddr,
    retry: Option<Value>,
) -> anyhow::Result<Setup> {
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
    let dest = api(client, base, "/destinations", {
        let mut d = json!({"title": "Sink", "system": "http",
                "function": "http.send", "params": {"url": format!("http://{sink}/in")}});
        if let Some(retry) = retry {
            d["retry"] = retry;
        }
        d
    })
    .await?;
    let stream = api(
        client,
        base,
        "/streams",
        json!({"title": "Bench", "data_type": "sales_order",
        "source_id": source["id"], "transformation_id": wharf::transform::library::SHOPIFY_SALES_ORDER_ID,
        "destination_id": dest["id"]}),
    )
    .await?;
    Ok(Setup {
        webhook_url: format!(
            "{base}{}",
            source["webhook_url"].as_str().unwrap_or_default()
        ),
        stream: stream["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the stream has no id: {stream}"))?,
    })
}

/// Where the server placed the events it received so far, from its `/metrics`: held for its
/// own workers (`queued`, `spilled`: stored claimed) or `stored` unclaimed, each of which a
/// worker must claim with a second write of its row.
pub async fn received_placement(client: &reqwest::Client, base: &str) -> serde_json::Value {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
        _ => return serde_json::Value::Null,
    };
    let mut placed = serde_json::Map::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("wharf_received_events_total{placed=\"") else {
            continue;
        };
        if let Some((name, n)) = rest.split_once("\"} ") {
            if let Ok(n) = n.trim().parse::<u64>() {
                placed.insert(name.to_string(), n.into());
            }
        }
    }
    // No such metric: the server kept nothing for its workers (`workers.handoff` 0).
    match placed.is_empty() {
        true => serde_json::Value::Null,
        false => serde_json::Value::Object(placed),
    }
}
