//! `ftp.upload` against a real FTP server on loopback (the testkit's, over a folder on disk):
//! plain, explicit and implicit TLS, passive and active data connections, file names from
//! templates, the temporary name and rename, and what each refusal means for the event.

use serde_json::{json, Value};
use wharf_testkit::ftp::{FtpServer, FtpTls};
use wharf_testkit::vsftpd::{Vsftpd, VsftpdTls};

use crate::both_stores;
use crate::common::{Db, Env, Server};
use crate::engine::{attempts, upload_and_wait as upload};

/// Order lines as CSV: a header, then one quoted line per record.
const CSV_LINES: &str = "id,name\n{{ record.id }},{{ record.name }}\n";

async fn start(db: Db, allow: Option<Vec<String>>) -> (Env, Server) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    if let Some(allow) = allow {
        config.outbound.allow = allow;
    }
    let server = Server::start(config).await;
    (env, server)
}

fn ftp_key(ftp: &FtpServer, tls: &str, password: &str) -> Value {
    let mut key = json!({"host": "localhost", "port": ftp.port(), "username": "wharf",
        "password": password, "tls": tls});
    if tls != "none" {
        key["tls_ca"] = json!(ftp.cert_pem);
    }
    key
}

/// A stream that writes uploaded records to the FTP server as the key says; returns its id.
async fn file_stream(s: &Server, credentials: Value, params: Value, mode: &str) -> String {
    let key = s
        .create(
            "/keys",
            json!({"system": "ftp", "title": "Warehouse FTP", "credentials": credentials}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "http", "function": "http.fetch",
                "trigger": "manual", "params": {"url": "http://127.0.0.1:9/unused",
                "entity_id_path": "id"}}),
        )
        .await;
    let transformation = s
        .create(
            "/transformations",
            json!({"title": "Lines", "data_type": "order", "language": "template",
                "format": "csv", "code": CSV_LINES}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Warehouse inbox", "system": "ftp", "function": "ftp.upload",
                "key_id": key["id"], "params": params, "mode": mode,
                "retry": {"schedule_seconds": [0, 1, 1], "timeout_seconds": 10}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Orders to the warehouse", "data_type": "order",
                "source_id": source["id"], "transformation_id": transformation["id"],
                "destination_id": destination["id"]}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

fn read(ftp: &FtpServer, path: &str) -> String {
    std::fs::read_to_string(ftp.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn each_event_is_a_file_written_under_a_temporary_name_then_renamed(db: Db) {
    let (_env, s) = start(db, None).await;
    for (tls, server_tls) in [
        ("explicit", FtpTls::Explicit),
        ("implicit", FtpTls::Implicit),
        ("none", FtpTls::None),
    ] {
        let ftp = FtpServer::start(server_tls, "wharf", "s3cret").await;
        ftp.mkdir("/inbound/orders");
        let stream = file_stream(
            &s,
            ftp_key(&ftp, tls, "s3cret"),
            json!({"path": "/inbound/orders", "filename": "order-{{ event.entity_id }}.{{ extension }}"}),
            "realtime",
        )
        .await;
        let (job, events) = upload(
            &s,
            &stream,
            json!([{"id": "1001", "name": "Widget, large"}, {"id": "1002", "name": "Gadget"}]),
        )
        .await;
        assert_eq!(job["status"], "FINISHED", "{tls}: {job}");
        assert_eq!(
            ftp.files("/inbound/orders"),
            ["order-1001.csv", "order-1002.csv"],
            "{tls}: no temporary file is left"
        );
        let text = read(&ftp, "/inbound/orders/order-1001.csv");
        assert!(text.starts_with("id,name\n"), "{tls}: {text}");
        assert!(text.contains("Widget, large\""), "{tls}: {text}");
        let log = ftp.commands();
        let stor = log
            .iter()
            .position(|c| c.starts_with("STOR .order-1001.csv.part"));
        let rename = log.iter().position(|c| c == "RNTO order-1001.csv");
        assert!(
            matches!((stor, rename), (Some(a), Some(b)) if a < b),
            "{tls}: written hidden, then renamed: {log:?}"
        );
        assert!(log.iter().any(|c| c == "TYPE I"), "{tls}: binary: {log:?}");
        if tls == "explicit" {
            assert_eq!(log[0], "AUTH TLS", "{log:?}");
            assert!(log.iter().any(|c| c == "PROT P"), "data protected: {log:?}");
        }
        let tries = attempts(&s, &events[0]).await;
        assert_eq!(tries[0]["outcome"], "SUCCESS");
        assert!(
            tries[0]["response_excerpt"]
                .as_str()
                .unwrap()
                .contains("/inbound/orders/order-"),
            "{}",
            tries[0]
        );
    }
}

async fn a_job_is_one_file_and_active_mode_works(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    ftp.mkdir("/out");
    let mut key = ftp_key(&ftp, "explicit", "s3cret");
    key["passive"] = json!(false);
    let stream = file_stream(&s, key, json!({"path": "/out/"}), "aggregate").await;
    let (job, events) = upload(
        &s,
        &stream,
        json!([{"id": "1", "name": "a"}, {"id": "2", "name": "b"}, {"id": "3", "name": "c"}]),
    )
    .await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert!(events.iter().all(|e| e["status"] == "OK"));
    let files = ftp.files("/out");
    assert_eq!(files.len(), 1, "one file for the job: {files:?}");
    let job_id = job["id"].as_str().unwrap();
    assert_eq!(
        files[0],
        format!("order-{job_id}.csv"),
        "the default name says what and which job"
    );
    let text = read(&ftp, &format!("/out/{}", files[0]));
    assert_eq!(
        text, "id,name\n1,a\n2,b\n3,c\n",
        "one header, then every line"
    );
    assert!(
        ftp.commands()
            .iter()
            .any(|c| c.starts_with("PORT ") || c.starts_with("EPRT ")),
        "active mode: {:?}",
        ftp.commands()
    );
}

async fn refusals_become_codes_with_the_server_s_words(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    ftp.mkdir("/in");
    ftp.mkdir("/locked");
    ftp.read_only("/locked");

    // A wrong password is final.
    let stream = file_stream(
        &s,
        ftp_key(&ftp, "explicit", "wrong"),
        json!({"path": "/in"}),
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "UNAUTHORIZED", "{ev}");
    assert!(
        ev["message"].as_str().unwrap().contains("Login incorrect"),
        "{ev}"
    );
    assert_eq!(attempts(&s, ev).await.len(), 1);

    // A folder that is not there is final, and named.
    let key = ftp_key(&ftp, "explicit", "s3cret");
    let stream = file_stream(&s, key.clone(), json!({"path": "/nowhere"}), "realtime").await;
    let (_, events) = upload(&s, &stream, json!([{"id": "2"}])).await;
    let ev = &events[0];
    assert_eq!(ev["error_code"], "NOT_FOUND", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("/nowhere"), "{ev}");

    // A folder the user may not write to.
    let stream = file_stream(&s, key.clone(), json!({"path": "/locked"}), "realtime").await;
    let (_, events) = upload(&s, &stream, json!([{"id": "3"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "UNAUTHORIZED", "{ev}");
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .contains("refused to write in /locked"),
        "{ev}"
    );
    assert!(ftp.files("/locked").is_empty());

    // A full disk is temporary: tried again, then written.
    let stream = file_stream(
        &s,
        key.clone(),
        json!({"path": "/in", "filename": "{{ event.entity_id }}.csv"}),
        "realtime",
    )
    .await;
    ftp.script(
        "STOR",
        "552 Requested file action aborted. Exceeded storage allocation",
        1,
    );
    let (_, events) = upload(&s, &stream, json!([{"id": "4"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "OK", "{ev}");
    let tries = attempts(&s, ev).await;
    let outcomes: Vec<_> = tries
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["RETRY", "SUCCESS"]);
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("Exceeded storage allocation"),
        "{}",
        tries[0]
    );
    assert_eq!(ftp.files("/in"), ["4.csv"]);

    // A refused rename leaves no temporary file behind.
    ftp.script("RNTO", "553 Rename not allowed", 1);
    let (_, events) = upload(&s, &stream, json!([{"id": "5"}])).await;
    assert_eq!(events[0]["status"], "FAILED", "{}", events[0]);
    assert_eq!(
        ftp.files("/in"),
        ["4.csv"],
        "the temporary file was removed"
    );

    // A file name template that gives no file name is the destination's fault.
    let stream = file_stream(
        &s,
        key,
        json!({"path": "/in", "filename": "../{{ event.entity_id }}"}),
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "6"}])).await;
    assert_eq!(events[0]["error_code"], "TEMPLATE_ERROR", "{}", events[0]);
}

async fn a_certificate_the_key_does_not_trust_is_refused_before_the_login(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    let other = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    ftp.mkdir("/in");
    let mut key = ftp_key(&ftp, "explicit", "s3cret");
    key["tls_ca"] = json!(other.cert_pem);
    let stream = file_stream(&s, key, json!({"path": "/in"}), "realtime").await;
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "UNTRUSTED_SERVER", "{ev}");
    assert_eq!(attempts(&s, ev).await.len(), 1, "not tried again");
    assert!(
        !ftp.commands()
            .iter()
            .any(|c| c.starts_with("USER") || c.starts_with("PASS")),
        "no login was sent: {:?}",
        ftp.commands()
    );
    assert!(ftp.files("/in").is_empty());
}

async fn the_outbound_guard_refuses_an_internal_ftp_server(db: Db) {
    let (_env, s) = start(db, Some(Vec::new())).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    for host in ["localhost", "127.0.0.1"] {
        let mut key = ftp_key(&ftp, "none", "s3cret");
        key["host"] = json!(host);
        let stream = file_stream(&s, key, json!({"path": "/"}), "realtime").await;
        let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
        let ev = &events[0];
        assert_eq!(ev["status"], "FAILED", "{ev}");
        assert_eq!(ev["error_code"], "BLOCKED_ADDRESS", "{ev}");
    }
    assert_eq!(ftp.sessions(), 0, "no connection was made");
}

/// The same uploads against vsftpd, as merchants run it: plain, explicit TLS with TLS session
/// reuse required on the data connections, and implicit TLS.
async fn vsftpd_takes_the_files(db: Db) {
    let (_env, s) = start(db, None).await;
    for (tls, mode) in [
        ("none", VsftpdTls::None),
        ("explicit", VsftpdTls::Explicit),
        ("implicit", VsftpdTls::Implicit),
    ] {
        let Some(ftp) = Vsftpd::start(mode) else {
            eprintln!("vsftpd is not installed here; .ci/run installs it and runs this test");
            return;
        };
        let mut key = json!({"host": "localhost", "port": ftp.port, "password": "ops@example.com",
            "tls": tls});
        if tls != "none" {
            key["tls_ca"] = json!(ftp.cert_pem);
        }
        let stream = file_stream(
            &s,
            key,
            json!({"path": "/inbound", "filename": "order-{{ event.entity_id }}.csv"}),
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
            "{tls}: {job} {events:?}\n{}",
            ftp.log()
        );
        assert_eq!(
            ftp.files("/inbound"),
            ["order-1001.csv", "order-1002.csv"],
            "{tls}"
        );
        let text = std::fs::read_to_string(ftp.path("/inbound/order-1002.csv")).unwrap();
        assert_eq!(text.trim_end(), "id,name\n1002,Gadget", "{tls}");
    }
}

both_stores!(
    vsftpd_takes_the_files,
    each_event_is_a_file_written_under_a_temporary_name_then_renamed,
    a_job_is_one_file_and_active_mode_works,
    refusals_become_codes_with_the_server_s_words,
    a_certificate_the_key_does_not_trust_is_refused_before_the_login,
    the_outbound_guard_refuses_an_internal_ftp_server,
);
