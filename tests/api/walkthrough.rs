//! The README's "Your first integration", run exactly as written: its shell blocks between the
//! walkthrough markers, with `curl`, `jq` and `openssl`, against a test server and the
//! testkit's FTP server. If the README's steps stop working, this fails.

use std::process::Command;

use wharf_testkit::ftp::{FtpServer, FtpTls};

use crate::both_stores;
use crate::common::{Db, Env, Server, OWNER_TOKEN};

const SECRET: &str = "walkthrough_client_secret";

/// The shell blocks between `<!-- walkthrough:begin` and `<!-- walkthrough:end -->`, joined.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- walkthrough:begin")
        .expect("the README marks where the walkthrough begins");
    let end = readme[start..]
        .find("<!-- walkthrough:end -->")
        .map(|i| start + i)
        .expect("the README marks where the walkthrough ends");
    let mut script = String::new();
    let mut inside = false;
    for line in readme[start..end].lines() {
        match (inside, line.trim_end()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, code) => {
                script.push_str(code);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(!inside, "a shell block of the walkthrough is not closed");
    script
}

async fn the_readme_walkthrough_delivers_an_order_as_a_file(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    let s = Server::start(config).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/inbound");

    let script = walkthrough();
    assert!(script.contains("ftp.upload") && script.contains("replicate"));
    let base = s.url("");
    let port = ftp.port().to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BASE", &base)
            .env("API", format!("{base}/api/v1"))
            .env("TOKEN", OWNER_TOKEN)
            .env("FTP_HOST", "localhost")
            .env("FTP_PORT", port)
            .env("FTP_USER", "wharf")
            .env("FTP_PASSWORD", "s3cret")
            .env("FTP_TLS", "none")
            .env("SECRET", SECRET)
            .output()
            .expect("bash runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the walkthrough failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    // What the README says the reader sees.
    let finished: Vec<_> = stdout
        .lines()
        .filter(|l| l.starts_with("job ") && l.ends_with(": FINISHED"))
        .collect();
    assert_eq!(finished.len(), 2, "the job and the replica's job: {stdout}");
    assert!(stdout.contains("\"status\": \"OK\""), "{stdout}");
    assert!(stdout.contains("\"outcome\": \"SUCCESS\""), "{stdout}");
    assert!(
        stdout.contains("/inbound/order-1042.csv"),
        "the attempt names the file: {stdout}"
    );

    // The warehouse's folder: one file (the replica wrote it again), header and line items.
    assert_eq!(ftp.files("/inbound"), ["order-1042.csv"]);
    let csv = std::fs::read_to_string(ftp.path("/inbound/order-1042.csv")).unwrap();
    let lines: Vec<_> = csv.lines().collect();
    assert!(
        lines[0].starts_with("order_number,order_date,email,sku"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "a header and two line items: {csv}");
    assert!(
        lines[1].starts_with("1042,") && lines[1].contains("TEE-BLU-M"),
        "{csv}"
    );
    assert!(lines[2].contains("TOTE-HBR"), "{csv}");
    let stores = ftp
        .commands()
        .iter()
        .filter(|c| c.starts_with("STOR "))
        .count();
    assert_eq!(stores, 2, "written once, and once more for the replica");

    // Through the API: two events about order #1042, the second a replica of the first.
    let (_, events) = s.get("/events?order=asc").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{events}");
    assert!(items
        .iter()
        .all(|e| e["status"] == "OK" && e["entity_id"] == "#1042"));
    assert_eq!(items[1]["original_event_id"], items[0]["id"]);
    assert!(
        items[0]["origin"].is_null(),
        "a pushed record names no file"
    );
}

both_stores!(the_readme_walkthrough_delivers_an_order_as_a_file);
