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

pub async fn start(db: Db, allow: Option<Vec<String>>) -> (Env, Server) {
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

/// A key of `system` (`ftp`, `sftp`, `email`) with these credentials.
async fn key_of(s: &Server, system: &str, credentials: Value) -> Value {
    s.create(
        "/keys",
        json!({"system": system, "title": "Warehouse files", "credentials": credentials}),
    )
    .await
}

/// A stream that writes uploaded records to the FTP server as the key says; returns its id.
async fn file_stream(s: &Server, credentials: Value, params: Value, mode: &str) -> String {
    stream_to(s, "ftp", credentials, params, mode).await
}

/// A stream that writes uploaded records with `<system>.upload`; returns its id.
pub async fn stream_to(
    s: &Server,
    system: &str,
    credentials: Value,
    params: Value,
    mode: &str,
) -> String {
    let function = format!("{system}.upload");
    uploads_to(s, &function, credentials, params, mode, true).await
}

/// A stream that delivers uploaded records with the destination function `function`
/// (`ftp.upload`, `email.send`, …), after the CSV lines transformation or (`csv` false) the
/// passthrough; returns its id.
pub async fn uploads_to(
    s: &Server,
    function: &str,
    credentials: Value,
    params: Value,
    mode: &str,
    csv: bool,
) -> String {
    let system = function.split('.').next().unwrap_or_default();
    let key = key_of(s, system, credentials).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "http", "function": "http.fetch",
                "trigger": "manual", "params": {"url": "http://127.0.0.1:9/unused",
                "entity_id_path": "id"}}),
        )
        .await;
    let transformation = if csv {
        s.create(
            "/transformations",
            json!({"title": "Lines", "data_type": "order", "language": "template",
                "format": "csv", "code": CSV_LINES}),
        )
        .await["id"]
            .clone()
    } else {
        json!(crate::common::PASSTHROUGH)
    };
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Destination", "system": system, "function": function,
                "key_id": key["id"], "params": params, "mode": mode,
                "retry": {"schedule_seconds": [0, 1, 1], "timeout_seconds": 10}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Orders out", "data_type": "order",
                "source_id": source["id"], "transformation_id": transformation,
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

/// A server's PASV answer may name another host (behind NAT, or on purpose): the data
/// connection still goes to the address the guard checked. (The other host is 127.0.0.2, where
/// nothing listens: a client that followed it would fail, and traffic stays on loopback.)
async fn passive_data_goes_to_the_checked_address_whatever_host_pasv_names(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/in");
    ftp.advertise(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let stream = file_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/in", "filename": "{{ event.entity_id }}.csv"}),
        "realtime",
    )
    .await;
    let (job, events) = upload(&s, &stream, json!([{"id": "1", "name": "a"}])).await;
    assert_eq!(job["status"], "FINISHED", "{job} {events:?}");
    assert_eq!(ftp.files("/in"), ["1.csv"]);
    assert!(
        ftp.commands().iter().any(|c| c == "PASV"),
        "{:?}",
        ftp.commands()
    );
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

// ---- ftp.files ----

/// A stream from an `ftp.files` source with `params`, in test mode (transformed, not sent),
/// so each run's records are seen as events; returns the stream's id.
async fn files_stream(s: &Server, credentials: Value, params: Value) -> String {
    stream_from(s, "ftp", credentials, params).await
}

/// A test-mode stream from a `<system>.files` source; returns its id.
pub async fn stream_from(s: &Server, system: &str, credentials: Value, params: Value) -> String {
    let key = key_of(s, system, credentials).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Stock files", "system": system,
                "function": format!("{system}.files"),
                "key_id": key["id"], "trigger": "manual", "params": params}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Unused", "system": "http", "function": "http.send",
                "params": {"url": "http://127.0.0.1:9/unused"}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Stock from the warehouse", "data_type": "stock",
                "source_id": source["id"], "transformation_id": crate::common::PASSTHROUGH,
                "destination_id": destination["id"], "test_mode": true}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

/// Runs the stream once: the ended job and its events.
pub async fn run_once(s: &Server, stream: &str) -> (Value, Vec<Value>) {
    let job = crate::engine::run(s, stream).await;
    let job = crate::engine::wait_for_job(s, &job).await;
    let events = crate::engine::events_of(s, job["id"].as_str().unwrap()).await;
    (job, events)
}

/// Waits (up to 10 s) until `check` holds: what a run does after its events are stored
/// (archive, delete) happens after the job can already show its events' outcome.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check()
}

fn put(ftp: &FtpServer, path: &str, text: &str) {
    std::fs::write(ftp.path(path), text).unwrap();
}

async fn files_are_read_into_events_and_archived_once_stored(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    ftp.mkdir("/outbound");
    put(
        &ftp,
        "/outbound/stock_1.csv",
        "\u{feff}sku;name;qty\r\nA-1;\"Widget; large\";3\r\nB-2;\"two\nlines\";4\r\n",
    );
    put(
        &ftp,
        "/outbound/stock_2.csv",
        "sku;name;qty\r\nC-3;Gadget;5\r\n",
    );
    put(&ftp, "/outbound/notes.txt", "not a stock file");
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "explicit", "s3cret"),
        json!({"path": "/outbound", "pattern": "stock_*.csv", "csv_delimiter": ";",
            "entity_id_path": "sku"}),
    )
    .await;

    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["A-1", "B-2", "C-3"],
        "one event per row, files oldest first"
    );
    assert_eq!(
        events[1]["payload_in"],
        json!({"sku": "B-2", "name": "two\nlines", "qty": "4"}),
        "quotes, a line end inside quotes, the BOM and `;` read as CSV means them"
    );
    let origins: Vec<_> = events
        .iter()
        .map(|e| e["origin"].as_str().unwrap())
        .collect();
    assert_eq!(
        origins,
        [
            "/outbound/stock_1.csv",
            "/outbound/stock_1.csv",
            "/outbound/stock_2.csv"
        ],
        "each event says which file it came from"
    );
    let files = &job["settings"]["source"]["files"];
    assert_eq!(files[0]["name"], "stock_1.csv", "{job}");
    assert_eq!(files[0]["records"], 2);
    assert_eq!(files[1]["records"], 1);
    eventually(|| ftp.files("/outbound") == ["archive", "notes.txt"]).await;
    assert_eq!(ftp.files("/outbound"), ["archive", "notes.txt"]);
    assert_eq!(
        ftp.files("/outbound/archive"),
        ["stock_1.csv", "stock_2.csv"]
    );

    // Nothing new: the next run reads nothing.
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert!(events.is_empty(), "{events:?}");
}

async fn kept_files_are_read_once_unless_they_change_and_deleted_ones_are_gone(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/keep");
    ftp.mkdir("/delete");
    put(&ftp, "/keep/a.json", r#"{"data": [{"id": 1}, {"id": 2}]}"#);
    let kept = files_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/keep", "format": "json", "records_path": "data", "after_read": "keep",
            "entity_id_path": "id"}),
    )
    .await;
    let (_, events) = run_once(&s, &kept).await;
    assert_eq!(events.len(), 2);
    let (_, events) = run_once(&s, &kept).await;
    assert!(
        events.is_empty(),
        "a kept file is not read twice: {events:?}"
    );
    assert_eq!(ftp.files("/keep"), ["a.json"]);
    put(
        &ftp,
        "/keep/a.json",
        r#"{"data": [{"id": 1}, {"id": 2}, {"id": 3}]}"#,
    );
    let (_, events) = run_once(&s, &kept).await;
    assert_eq!(events.len(), 3, "a changed file is read again");

    put(&ftp, "/delete/b.xml", "<order><id>9</id></order>");
    let deleted = files_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/delete", "format": "xml", "after_read": "delete"}),
    )
    .await;
    let (_, events) = run_once(&s, &deleted).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["payload_in"], "<order><id>9</id></order>");
    eventually(|| ftp.files("/delete").is_empty()).await;
    assert!(ftp.files("/delete").is_empty(), "deleted once stored");
}

async fn a_run_that_fails_before_storing_leaves_the_files_to_be_read_again(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/in");
    put(&ftp, "/in/1.csv", "id\n1\n2\n");
    // The second file is broken: the run fails after the first was downloaded.
    put(&ftp, "/in/2.csv", "id,name\n3\n");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(ftp.path("/in/2.csv"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/in", "entity_id_path": "id"}),
    )
    .await;
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    assert!(job["message"].as_str().unwrap().contains("2.csv"), "{job}");
    assert!(events.is_empty(), "nothing stored");
    assert_eq!(ftp.files("/in"), ["1.csv", "2.csv"], "nothing archived");

    // Mended: the next run reads both, the first file's records once.
    put(&ftp, "/in/2.csv", "id,name\n3,c\n");
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    eventually(|| ftp.files("/in/archive") == ["1.csv", "2.csv"]).await;
    assert_eq!(ftp.files("/in/archive"), ["1.csv", "2.csv"]);
}

async fn files_stored_but_not_archived_are_archived_by_the_next_run_not_read_again(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/in");
    put(&ftp, "/in/1.csv", "id\n1\n2\n");
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/in", "entity_id_path": "id"}),
    )
    .await;
    // The archiving after the commit fails (as if the process died right after committing).
    ftp.script("RNTO", "550 Permission denied", 1);
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(events.len(), 2);
    // Wait for the refused archiving, then the file is still there.
    eventually(|| ftp.commands().iter().any(|c| c.starts_with("RNTO"))).await;
    assert_eq!(ftp.files("/in"), ["1.csv", "archive"], "still there");

    let (_, events) = run_once(&s, &stream).await;
    assert!(events.is_empty(), "not read twice: {events:?}");
    eventually(|| ftp.files("/in") == ["archive"]).await;
    assert_eq!(ftp.files("/in"), ["archive"]);
    assert_eq!(
        ftp.files("/in/archive"),
        ["1.csv"],
        "archived by the next run"
    );
}

async fn a_missing_folder_or_a_wrong_login_fails_the_run_with_its_code(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::Explicit, "wharf", "s3cret").await;
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "explicit", "s3cret"),
        json!({"path": "/nowhere"}),
    )
    .await;
    let (job, _) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.starts_with("NOT_FOUND: ") && message.contains("/nowhere"),
        "{job}"
    );

    ftp.mkdir("/in");
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "explicit", "wrong"),
        json!({"path": "/in"}),
    )
    .await;
    let (job, _) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .starts_with("UNAUTHORIZED: "),
        "{job}"
    );
}

async fn a_fifty_megabyte_file_is_streamed_into_events(db: Db) {
    let (_env, s) = start(db, None).await;
    let ftp = FtpServer::start(FtpTls::None, "wharf", "s3cret").await;
    ftp.mkdir("/big");
    // Wide rows: the point is the file's size, not the number of events.
    let filler = "x".repeat(20_000);
    let rows = 2_500;
    let mut text = String::with_capacity(rows * 20_010);
    text.push_str("id,text\n");
    for i in 0..rows {
        text.push_str(&format!("{i},{filler}\n"));
    }
    assert!(text.len() > 50_000_000);
    put(&ftp, "/big/stock.csv", &text);
    drop(text);
    let stream = files_stream(
        &s,
        ftp_key(&ftp, "none", "s3cret"),
        json!({"path": "/big", "entity_id_path": "id", "after_read": "delete"}),
    )
    .await;
    let (job, _) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(job["counts"]["OK"], rows, "{job}");
    assert_eq!(job["settings"]["source"]["files"][0]["records"], rows);
    eventually(|| ftp.files("/big").is_empty()).await;
    assert!(ftp.files("/big").is_empty());
}

/// The same reads against vsftpd, which lists with LIST only (no MLSD): times come from MDTM.
async fn vsftpd_files_are_read_and_deleted(db: Db) {
    let (_env, s) = start(db, None).await;
    let Some(ftp) = Vsftpd::start(VsftpdTls::Explicit) else {
        eprintln!("vsftpd is not installed here; .ci/run installs it and runs this test");
        return;
    };
    let file = ftp.path("/inbound/stock.csv");
    std::fs::write(&file, "sku,qty\nA-1,3\nB-2,4\n").unwrap();
    let key = json!({"host": "localhost", "port": ftp.port, "password": "ops@example.com",
        "tls": "explicit", "tls_ca": ftp.cert_pem});
    let stream = files_stream(
        &s,
        key,
        json!({"path": "/inbound", "pattern": "*.csv", "entity_id_path": "sku",
            "after_read": "delete"}),
    )
    .await;
    let (job, events) = run_once(&s, &stream).await;
    assert_eq!(job["status"], "FINISHED", "{job}\n{}", ftp.log());
    let ids: Vec<_> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A-1", "B-2"]);
    eventually(|| ftp.files("/inbound").is_empty()).await;
    assert!(
        ftp.files("/inbound").is_empty(),
        "deleted: {:?}",
        ftp.files("/inbound")
    );
}

both_stores!(
    vsftpd_takes_the_files,
    each_event_is_a_file_written_under_a_temporary_name_then_renamed,
    a_job_is_one_file_and_active_mode_works,
    passive_data_goes_to_the_checked_address_whatever_host_pasv_names,
    refusals_become_codes_with_the_server_s_words,
    a_certificate_the_key_does_not_trust_is_refused_before_the_login,
    the_outbound_guard_refuses_an_internal_ftp_server,
    files_are_read_into_events_and_archived_once_stored,
    kept_files_are_read_once_unless_they_change_and_deleted_ones_are_gone,
    a_run_that_fails_before_storing_leaves_the_files_to_be_read_again,
    files_stored_but_not_archived_are_archived_by_the_next_run_not_read_again,
    a_missing_folder_or_a_wrong_login_fails_the_run_with_its_code,
    a_fifty_megabyte_file_is_streamed_into_events,
    vsftpd_files_are_read_and_deleted,
);
