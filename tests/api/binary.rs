//! The real `wharf` binary, as a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::PgDatabase;

pub fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WHARF_") {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

/// Reads the child's output until the listening line; returns (address, all output so far).
pub fn wait_for_listen(child: &mut Child) -> (String, String) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(i) = line.find("address=") {
                let addr = line[i + 8..].split_whitespace().next().unwrap().to_string();
                return (addr, seen);
            }
        }
    }
    panic!("wharf did not start listening:\n{seen}");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wharf did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_with_no_configuration_prints_a_working_token_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = wharf()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (addr, out) = wait_for_listen(&mut child);
    assert!(
        dir.path().join("data/wharf.db").exists(),
        "SQLite under ./data"
    );
    let token = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("wharf_"))
        .unwrap_or_else(|| panic!("printed token in:\n{out}"))
        .to_string();
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/api/v1/systems"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status = terminate(&mut child);
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
}

#[tokio::test]
async fn migrate_applies_to_postgres_and_exits() {
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let status = wharf()
        .args(["migrate", "--database-url", &db.url, "--data-dir"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_name IN ('events','jobs','delivery_attempts','event_log','entities','alert_rules','alerts')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 7, "engine tables exist");
    pool.close().await;
}

#[test]
fn an_invalid_option_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, named) in [
        ("WHARF_HTTP__BODY_LIMIT_BYTES", "lots", "body_limit_bytes"),
        ("WHARF_LISTEN", "not-an-address", "listen"),
        ("WHARF_DATABASE_URL", "mysql://x", "database_url"),
        ("WHARF_COLOUR", "blue", "colour"),
        // A list from the environment is read as one (the second entry is the one named).
        (
            "WHARF_OUTBOUND__ALLOW",
            r#"["127.0.0.0/8", "bad host"]"#,
            "has a bad entry: `bad host`",
        ),
        (
            "WHARF_OUTBOUND__JOB_DEADLINE_SECONDS",
            "0",
            "between 1 and 86400",
        ),
    ] {
        let out = wharf()
            .current_dir(dir.path())
            .arg("serve")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.to_lowercase().contains(named), "{var}: {err}");
    }
    let out = wharf()
        .current_dir(dir.path())
        .args(["serve", "--config", "does-not-exist.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.path().join("data").exists(),
        "nothing created by a refused start"
    );
}
