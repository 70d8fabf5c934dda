//! `email.send` against a real SMTP server on loopback (the testkit's, which records what it
//! accepts): STARTTLS and implicit TLS with a certificate the key trusts, logins, attachments,
//! combined deliveries, and what each SMTP reply means for the event.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wharf_testkit::smtp::{SmtpSink, SmtpTls, Stage};

use crate::both_stores;
use crate::common::{fresh, Db, Server};
use crate::engine::{attempts, upload_and_wait as upload};
use crate::ftp::{start, uploads_to};

/// A server whose workers poll often; `allow` replaces the outbound allow list when given.
fn smtp_key(
    sink: &SmtpSink,
    security: &str,
    login: Option<(&str, &str)>,
    ca: Option<&str>,
) -> Value {
    let mut credentials = json!({"host": "localhost", "port": sink.port(), "security": security,
        "from": "Wharf <wharf@example.com>"});
    if let Some((user, password)) = login {
        credentials["username"] = json!(user);
        credentials["password"] = json!(password);
    }
    if let Some(ca) = ca {
        credentials["tls_ca"] = json!(ca);
    }
    credentials
}

/// A stream that mails uploaded records through `email.send` with `params`, after a CSV (or
/// the passthrough JSON) transformation; returns the stream's id.
async fn mail_stream(
    s: &Server,
    credentials: Value,
    params: Value,
    csv: bool,
    mode: &str,
) -> String {
    uploads_to(s, "email.send", credentials, params, mode, csv).await
}

async fn an_event_is_mailed_with_its_output_attached_over_starttls_with_a_login(db: Db) {
    let (_env, s) = start(db, None).await;
    let sink = SmtpSink::start(SmtpTls::StartTls, Some(("ops", "s3cret"))).await;
    let key = smtp_key(
        &sink,
        "starttls",
        Some(("ops", "s3cret")),
        Some(&sink.cert_pem),
    );
    let params = json!({"to": ["warehouse@example.com", "Ops <ops@example.com>"],
        "cc": ["audit@example.com"], "subject": "Order {{ event.entity_id }} ({{ data_type }})",
        "body": "Order {{ event.entity_id }} is attached as {{ filename }}.",
        "attach_as": "order-{{ event.entity_id }}.csv"});
    let stream = mail_stream(&s, key, params, true, "realtime").await;
    let (job, events) = upload(
        &s,
        &stream,
        json!([{"id": "1001", "name": "Widget, large"}]),
    )
    .await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.tls, "the message went over TLS after STARTTLS");
    assert_eq!(mail.user.as_deref(), Some("ops"));
    assert_eq!(mail.from, "wharf@example.com");
    assert_eq!(
        mail.to,
        [
            "warehouse@example.com",
            "ops@example.com",
            "audit@example.com"
        ]
    );
    assert_eq!(mail.header("Subject").unwrap(), "Order 1001 (order)");
    assert!(mail.header("Cc").unwrap().contains("audit@example.com"));
    let event_id = events[0]["id"].as_str().unwrap().replace('-', "");
    assert_eq!(
        mail.header("Message-ID").unwrap(),
        format!("<{event_id}@example.com>"),
        "one id per event, so a repeat is recognised"
    );
    assert!(mail.data.contains("multipart/mixed"), "{}", mail.data);
    assert!(
        mail.data
            .contains("Order 1001 is attached as order-1001.csv."),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("filename=\"order-1001.csv\""),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/csv"), "{}", mail.data);
    assert!(
        mail.data.contains("\"1001\",\"Widget, large\"")
            || mail.data.contains("1001,\"Widget, large\""),
        "the CSV line is in the attachment: {}",
        mail.data
    );
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0]["outcome"], "SUCCESS");
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "the server's reply is kept: {}",
        tries[0]
    );
}

async fn without_an_attachment_the_output_is_the_body_and_a_job_is_one_mail(db: Db) {
    let (_env, s) = start(db, None).await;
    let sink = SmtpSink::start(SmtpTls::None, None).await;
    let key = smtp_key(&sink, "none", None, None);
    let realtime = mail_stream(
        &s,
        key.clone(),
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;
    let (job, _) = upload(&s, &realtime, json!([{"id": "7", "sku": "A-1"}])).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    let mails = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails.len(), 1);
    assert!(!mails[0].tls && mails[0].user.is_none());
    assert_eq!(mails[0].header("Subject").unwrap(), "order from Wharf");
    assert!(
        mails[0]
            .header("Content-Type")
            .unwrap()
            .starts_with("application/json"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("\"sku\": \"A-1\""),
        "pretty JSON: {}",
        mails[0].data
    );

    let combined = mail_stream(
        &s,
        key,
        json!({"to": ["ops@example.com"], "subject": "{{ event.entity_id }}Daily orders",
            "attach_as": "orders-{{ now | format_date(\"%Y%m%d\") }}.csv"}),
        true,
        "aggregate",
    )
    .await;
    let (job, events) = upload(
        &s,
        &combined,
        json!([{"id": "1", "name": "a"}, {"id": "2", "name": "b"}, {"id": "3", "name": "c"}]),
    )
    .await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert!(events.iter().all(|e| e["status"] == "OK"));
    let mails = sink.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(mails.len(), 2, "one mail for the whole job");
    let mail = &mails[1];
    assert_eq!(mail.header("Subject").unwrap(), "Daily orders");
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(
        mail.data.contains(&format!("orders-{today}.csv")),
        "{}",
        mail.data
    );
    for line in ["\"1\",\"a\"", "\"2\",\"b\"", "\"3\",\"c\""] {
        assert!(
            mail.data.contains(line) || mail.data.contains(&line.replace('"', "")),
            "{line} in {}",
            mail.data
        );
    }
}

async fn a_certificate_the_key_does_not_trust_is_refused_and_implicit_tls_works(db: Db) {
    let (_env, s) = start(db, None).await;
    let sink = SmtpSink::start(SmtpTls::Implicit, None).await;
    let other = SmtpSink::start(SmtpTls::Implicit, None).await;
    // The key trusts another server's certificate, not this one's.
    let wrong = smtp_key(&sink, "tls", None, Some(&other.cert_pem));
    let stream = mail_stream(
        &s,
        wrong,
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "UNTRUSTED_SERVER", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("tls_ca"), "{ev}");
    assert_eq!(attempts(&s, ev).await.len(), 1, "not tried again");
    assert!(sink.mails().is_empty(), "nothing was sent");

    let right = smtp_key(&sink, "tls", None, Some(&sink.cert_pem));
    let stream = mail_stream(
        &s,
        right,
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "2"}])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);

    // STARTTLS is required: a server that does not offer it is not sent the message in clear.
    let plain = SmtpSink::start(SmtpTls::None, None).await;
    let key = smtp_key(&plain, "starttls", None, None);
    let stream = mail_stream(
        &s,
        key,
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "3"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "CONNECTION_ERROR", "{ev}");
    assert!(ev["message"].as_str().unwrap().contains("STARTTLS"), "{ev}");
    assert_eq!(
        attempts(&s, ev).await.len(),
        1,
        "final: it will not change by itself"
    );
    assert!(plain.mails().is_empty());
}

async fn smtp_replies_decide_whether_an_event_is_tried_again(db: Db) {
    let (_env, s) = start(db, None).await;
    let sink = SmtpSink::start(SmtpTls::StartTls, Some(("ops", "s3cret"))).await;
    let key = smtp_key(
        &sink,
        "starttls",
        Some(("ops", "s3cret")),
        Some(&sink.cert_pem),
    );
    let stream = mail_stream(
        &s,
        key,
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;

    // A 4xx is temporary: tried again on the schedule, then delivered.
    sink.script(Stage::Rcpt, "451 4.3.0 mailbox busy, try later", 1);
    let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    let outcomes: Vec<_> = tries
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["RETRY", "SUCCESS"]);
    assert_eq!(tries[0]["error_code"], "SERVER_ERROR");
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("4.3.0 mailbox busy"),
        "{}",
        tries[0]
    );

    // A 5xx is final, with the server's words.
    sink.script(Stage::Rcpt, "550 5.1.1 no such user here", 1);
    let (_, events) = upload(&s, &stream, json!([{"id": "2"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "NOT_FOUND", "{ev}");
    assert!(
        ev["message"].as_str().unwrap().contains("no such user"),
        "{ev}"
    );
    assert_eq!(attempts(&s, ev).await.len(), 1);

    // A refused login is final: trying again would only lock the account.
    let wrong = smtp_key(
        &sink,
        "starttls",
        Some(("ops", "wrong")),
        Some(&sink.cert_pem),
    );
    let stream = mail_stream(
        &s,
        wrong,
        json!({"to": ["ops@example.com"]}),
        false,
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "3"}])).await;
    let ev = &events[0];
    assert_eq!(ev["status"], "FAILED", "{ev}");
    assert_eq!(ev["error_code"], "UNAUTHORIZED", "{ev}");
    assert_eq!(attempts(&s, ev).await.len(), 1);

    // A template that cannot render is the destination's fault, said as such.
    let key = smtp_key(
        &sink,
        "starttls",
        Some(("ops", "s3cret")),
        Some(&sink.cert_pem),
    );
    let stream = mail_stream(
        &s,
        key,
        json!({"to": ["ops@example.com"], "subject": "{{ no_such.thing }}"}),
        false,
        "realtime",
    )
    .await;
    let (_, events) = upload(&s, &stream, json!([{"id": "4"}])).await;
    assert_eq!(events[0]["error_code"], "TEMPLATE_ERROR", "{}", events[0]);
    assert!(events[0]["message"].as_str().unwrap().contains("`subject`"));
    assert_eq!(sink.mails().len(), 1, "only the first event was accepted");
}

async fn the_outbound_guard_refuses_an_internal_mail_server(db: Db) {
    // No allow list: loopback is internal, so nothing connects to it.
    let (_env, s) = start(db, Some(Vec::new())).await;
    let sink = SmtpSink::start(SmtpTls::None, None).await;
    for host in ["localhost", "127.0.0.1"] {
        let mut key = smtp_key(&sink, "none", None, None);
        key["host"] = json!(host);
        let stream = mail_stream(
            &s,
            key,
            json!({"to": ["ops@example.com"]}),
            false,
            "realtime",
        )
        .await;
        let (_, events) = upload(&s, &stream, json!([{"id": "1"}])).await;
        let ev = &events[0];
        assert_eq!(ev["status"], "FAILED", "{ev}");
        assert_eq!(ev["error_code"], "BLOCKED_ADDRESS", "{ev}");
        assert!(
            ev["message"].as_str().unwrap().contains("outbound.allow"),
            "{ev}"
        );
    }
    assert_eq!(sink.sessions(), 0, "no connection was made");
}

async fn the_catalogue_lists_email_with_its_one_function(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, system) = s.get("/systems/email").await;
    assert_eq!(status, StatusCode::OK, "{system}");
    let destinations: Vec<_> = system["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(destinations, ["email.send"]);
    assert!(system["sources"].as_array().unwrap().is_empty());
    // The password is sealed and never shown again.
    let key = s
        .create(
            "/keys",
            json!({"system": "email", "title": "Mail", "credentials": {"host": "smtp.example.com",
                "from": "wharf@example.com", "username": "u", "password": "p"}}),
        )
        .await;
    assert_eq!(key["credentials"]["password"], "********", "{key}");
    let (status, problem) = s
        .post(
            "/keys",
            json!({"system": "email", "title": "Mail", "credentials": {"host": "smtp.example.com",
                "security": "ssl"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let fields = crate::common::error_fields(&problem);
    assert!(
        fields.contains(&"credentials.security".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"credentials.from".to_string()),
        "{fields:?}"
    );
}

both_stores!(
    an_event_is_mailed_with_its_output_attached_over_starttls_with_a_login,
    without_an_attachment_the_output_is_the_body_and_a_job_is_one_mail,
    a_certificate_the_key_does_not_trust_is_refused_and_implicit_tls_works,
    smtp_replies_decide_whether_an_event_is_tried_again,
    the_outbound_guard_refuses_an_internal_mail_server,
    the_catalogue_lists_email_with_its_one_function,
);
