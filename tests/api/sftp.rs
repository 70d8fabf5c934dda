//! `sftp.upload` and `sftp.files` against OpenSSH's sshd (started by the test on a free
//! loopback port, SFTP only): key and password logins, the pinned host key (public key or
//! fingerprint; another key refused before any login), uploads hidden then renamed (replacing
//! a file of the same name), files read then archived.

use serde_json::json;
use wharf_testkit::sshd::Sshd;

use crate::both_stores;
use crate::common::Db;
use crate::engine::{attempts, upload_and_wait as upload};
use crate::ftp::{eventually, run_once, start, stream_from, stream_to};

fn started() -> Option<Sshd> {
    let sshd = Sshd::start();
    if sshd.is_none() {
        eprintln!("sshd is not installed here; .ci/run installs it and runs this test");
    }
    sshd
}

fn key_login(sshd: &Sshd, host_key: &str) -> serde_json::Value {
    json!({"host": "localhost", "port": sshd.port, "username": sshd.user,
        "private_key": sshd.client_key, "host_key": host_key})
}

async fn files_go_up_and_come_down_over_sftp_with_a_pinned_host_key(db: Db) {
    let Some(sshd) = started() else { return };
    let (_env, s) = start(db, None).await;
    let inbound = sshd.root.join("inbound");
    std::fs::create_dir_all(&inbound).unwrap();

    // Upload, pinned by the public key; the second write of a name replaces the file.
    let stream = stream_to(
        &s,
        "sftp",
        key_login(&sshd, &sshd.host_key),
        json!({"path": inbound.display().to_string(), "filename": "order-{{ event.entity_id }}.csv"}),
        "realtime",
    )
    .await;
    let (job, events) = upload(
        &s,
        &stream,
        json!([{"id": "1001", "name": "Widget"}, {"id": "1002", "name": "Gadget"}]),
    )
    .await;
    assert_eq!(
        job["status"],
        "FINISHED",
        "{job} {events:?}\n{}",
        sshd.log()
    );
    assert_eq!(sshd.files(&inbound), ["order-1001.csv", "order-1002.csv"]);
    let (job, _) = upload(&s, &stream, json!([{"id": "1001", "name": "Widget v2"}])).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    let text = std::fs::read_to_string(inbound.join("order-1001.csv")).unwrap();
    assert!(text.contains("Widget v2"), "replaced: {text}");
    assert_eq!(sshd.files(&inbound), ["order-1001.csv", "order-1002.csv"]);
    let tries = attempts(&s, &events[0]).await;
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("renamed to order-1001.csv"),
        "{}",
        tries[0]
    );

    // Read back, pinned by the fingerprint, and archived once stored.
    let outbound = sshd.root.join("outbound");
    std::fs::create_dir_all(&outbound).unwrap();
    std::fs::write(
        outbound.join("stock.csv"),
        "sku;qty\r\nA-1;3\r\nB-2;\"4\"\r\n",
    )
    .unwrap();
    let stream = stream_from(
        &s,
        "sftp",
        key_login(&sshd, &sshd.host_fingerprint),
        json!({"path": outbound.display().to_string(), "pattern": "*.csv",
            "csv_delimiter": ";", "entity_id_path": "sku"}),
    )
    .await;
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}\n{}", sshd.log());
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A-1", "B-2"]);
    let file = outbound.join("stock.csv").display().to_string();
    assert!(events.iter().all(|e| e["origin"] == file), "{events:?}");
    eventually(|| sshd.files(&outbound) == ["archive"]).await;
    assert_eq!(sshd.files(&outbound), ["archive"]);
    assert_eq!(sshd.files(&outbound.join("archive")), ["stock.csv"]);
    let (_, events) = run_once(&s, &stream).await;
    assert!(events.is_empty());
}

async fn a_host_key_other_than_the_pinned_one_is_refused_before_the_login(db: Db) {
    let Some(sshd) = started() else { return };
    let (_env, s) = start(db, None).await;
    let inbound = sshd.root.join("inbound");
    std::fs::create_dir_all(&inbound).unwrap();
    let (other_key, other_fingerprint) = Sshd::other_host_key();
    for pinned in [other_key, other_fingerprint] {
        let stream = stream_to(
            &s,
            "sftp",
            key_login(&sshd, &pinned),
            json!({"path": inbound.display().to_string()}),
            "realtime",
        )
        .await;
        let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
        let ev = &events[0];
        assert_eq!(ev["status"], "FAILED", "{ev}");
        assert_eq!(ev["error_code"], "UNTRUSTED_SERVER", "{ev}");
        let message = ev["message"].as_str().unwrap();
        assert!(
            message.contains(&sshd.host_fingerprint),
            "the message shows the key the server showed: {message}"
        );
        assert_eq!(attempts(&s, ev).await.len(), 1, "not tried again");
    }
    assert!(sshd.files(&inbound).is_empty());
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "no login was made: {}",
        sshd.log()
    );
}

async fn logins_the_server_refuses_are_final(db: Db) {
    let Some(sshd) = started() else { return };
    let (_env, s) = start(db, None).await;
    let inbound = sshd.root.join("inbound");
    std::fs::create_dir_all(&inbound).unwrap();
    // A user the server does not know.
    let mut key = key_login(&sshd, &sshd.host_key);
    key["username"] = json!("nobody-here");
    let stream = stream_to(
        &s,
        "sftp",
        key,
        json!({"path": inbound.display().to_string()}),
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    assert_eq!(events[0]["error_code"], "UNAUTHORIZED", "{}", events[0]);
    assert_eq!(attempts(&s, &events[0]).await.len(), 1);

    // A password login, where the machine has a password user for the tests.
    if let Some((user, password)) = Sshd::password_user() {
        let folder = sshd.folder_for(&user, "by-password");
        for (given, status) in [(password.as_str(), "OK"), ("wrong", "FAILED")] {
            let stream = stream_to(
                &s,
                "sftp",
                json!({"host": "localhost", "port": sshd.port, "username": user,
                    "password": given, "host_key": sshd.host_key}),
                json!({"path": folder.display().to_string(), "filename": "{{ event.entity_id }}.json"}),
                "realtime",
            )
            .await;
            let (_, events) = upload(&s, &stream, json!([{"id": "7"}])).await;
            assert_eq!(events[0]["status"], status, "{}\n{}", events[0], sshd.log());
        }
        assert_eq!(sshd.files(&folder), ["7.json"]);

        // A folder the user may only read: the server's refusal is final, and says so.
        let locked = sshd.root.join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        let stream = stream_to(
            &s,
            "sftp",
            json!({"host": "localhost", "port": sshd.port, "username": user,
                "password": password, "host_key": sshd.host_key}),
            json!({"path": locked.display().to_string()}),
            "realtime",
        )
        .await;
        let (_, events) = upload(&s, &stream, json!([{"id": "8"}])).await;
        let ev = &events[0];
        assert_eq!(ev["status"], "FAILED", "{ev}");
        assert_eq!(ev["error_code"], "UNAUTHORIZED", "{ev}");
        assert!(
            ev["message"]
                .as_str()
                .unwrap()
                .contains("Permission denied"),
            "{ev}"
        );
        assert_eq!(attempts(&s, ev).await.len(), 1);
        assert!(sshd.files(&locked).is_empty());
    } else {
        eprintln!("no password user (TESTKIT_SSHD_USER); .ci/run makes one");
    }

    // A folder that is not there.
    let stream = stream_from(
        &s,
        "sftp",
        key_login(&sshd, &sshd.host_key),
        json!({"path": sshd.root.join("nowhere").display().to_string()}),
    )
    .await;
    let (job, _) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    assert!(
        job["message"].as_str().unwrap().starts_with("NOT_FOUND: "),
        "{job}"
    );
}

async fn the_outbound_guard_refuses_an_internal_sftp_server(db: Db) {
    let Some(sshd) = started() else { return };
    let (_env, s) = start(db, Some(Vec::new())).await;
    let stream = stream_to(
        &s,
        "sftp",
        key_login(&sshd, &sshd.host_key),
        json!({"path": sshd.root.display().to_string()}),
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    assert_eq!(events[0]["error_code"], "BLOCKED_ADDRESS", "{}", events[0]);
    // One connection only: the test's own check that sshd listens.
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1,
        "Wharf made no connection: {}",
        sshd.log()
    );
}

both_stores!(
    files_go_up_and_come_down_over_sftp_with_a_pinned_host_key,
    a_host_key_other_than_the_pinned_one_is_refused_before_the_login,
    logins_the_server_refuses_are_final,
    the_outbound_guard_refuses_an_internal_sftp_server,
);
