//! Alerts through the API: channels and rules, alerts opened by failures and conditions, flood
//! control, resolving, acknowledging, retried notifications, and one sender among two nodes.
//! Tests that move the clock run the server with alert evaluation off and evaluate themselves
//! (`Alerting::tick` at a chosen time) on the same database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wharf::alerts::{sign, Alerting, SIGNATURE_HEADER};
use wharf::config::Config;
use wharf::domain::Timestamp;
use wharf_testkit::smtp::{SmtpSink, SmtpTls};

use crate::both_stores;
use crate::common::{error_fields, Db, Env, Server};
use crate::engine::{fetch_stream, run, upload_and_wait, wait_for_job};
use crate::peers::{broken_source, Sink};

/// A server whose workers poll often and whose alert evaluation runs every second (or not at
/// all, when the test keeps the clock).
async fn start(db: Db, evaluate: bool, tweak: impl FnOnce(&mut Config)) -> (Env, Server, Config) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.alerts.enabled = evaluate;
    config.alerts.interval_seconds = 1;
    config.alerts.condition_interval_seconds = 0;
    config.alerts.lease_seconds = 5;
    config.alerts.retry_seconds = vec![1, 1];
    tweak(&mut config);
    let server = Server::start(config.clone()).await;
    (env, server, config)
}

/// An evaluator on the server's database, for a test that keeps the clock.
async fn evaluator(config: &Config) -> Alerting {
    let state = wharf::prepare(config.clone()).await.expect("prepares");
    Alerting::new(&state)
}

fn at(t: chrono::DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(t)
}

/// A stream whose deliveries the sink refuses for good (422): every record ends FAILED.
async fn failing_stream(s: &Server, sink: &Sink) -> String {
    fetch_stream(
        s,
        "http://127.0.0.1:9/orders",
        &sink.url(),
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        false,
    )
    .await
}

fn refusing_sink_script() -> wharf_testkit::sink::Script {
    Arc::new(|_: &Value, _| (StatusCode::UNPROCESSABLE_ENTITY, Vec::new()))
}

/// Uploads `n` records to `stream` and waits for its job to end.
async fn fail_records(s: &Server, stream: &str, from: usize, n: usize) {
    let records: Vec<Value> = (from..from + n)
        .map(|i| json!({"id": format!("{i}"), "name": format!("#{i}")}))
        .collect();
    let (job, _) = upload_and_wait(s, stream, json!(records)).await;
    assert_eq!(job["status"], "FINISHED_WITH_ISSUES", "{job}");
}

/// Waits until the event log shows `n` events FAILED (the log is what alerts follow).
async fn logged_failures(s: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = s.get("/event-log?cursor=0&limit=1000").await;
        let failed = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "EVENT_STATUS_CHANGE" && e["details"]["to"] == "FAILED")
            .count();
        if failed >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{failed} of {n} failures logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn webhook_channel(s: &Server, sink: &Sink) -> (String, String) {
    let channel = s
        .create(
            "/alert-channels",
            json!({"name": "Ops hook", "kind": "webhook", "target": sink.url()}),
        )
        .await;
    let secret = channel["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{channel}");
    (channel["id"].as_str().unwrap().to_string(), secret)
}

/// A server whose clock the test keeps, its evaluator, a stream whose every record ends
/// FAILED (the sink refuses it), and a webhook channel to a sink that records messages.
struct Scene {
    _env: Env,
    s: Server,
    alerting: Alerting,
    hook: Sink,
    _refusing: Sink,
    stream: String,
    channel: String,
    secret: String,
}

async fn scene(db: Db) -> Scene {
    let (env, s, config) = start(db, false, |_| {}).await;
    let alerting = evaluator(&config).await;
    let hook = Sink::ok().await;
    let refusing = Sink::scripted(refusing_sink_script()).await;
    let stream = failing_stream(&s, &refusing).await;
    let (channel, secret) = webhook_channel(&s, &hook).await;
    Scene {
        _env: env,
        s,
        alerting,
        hook,
        _refusing: refusing,
        stream,
        channel,
        secret,
    }
}

async fn alerts_of(s: &Server) -> Vec<Value> {
    let (status, page) = s.get("/alerts").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn notifications_of(s: &Server) -> Vec<Value> {
    let (status, page) = s.get("/notifications?limit=500").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn a_failed_job_mails_the_channel_once(db: Db) {
    let mail = SmtpSink::start(SmtpTls::None, None).await;
    let port = mail.port();
    let (_env, s, _) = start(db, true, |c| {
        c.smtp.host = Some("localhost".into());
        c.smtp.port = Some(port);
        c.smtp.security = Some("none".into());
        c.smtp.from = Some("Wharf <alerts@example.com>".into());
    })
    .await;
    let source = broken_source().await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        false,
    )
    .await;
    let channel = s
        .create(
            "/alert-channels",
            json!({"name": "Ops", "kind": "email", "target": "Ops <ops@example.com>"}),
        )
        .await;
    assert!(channel.get("secret").is_none(), "{channel}");
    s.create(
        "/alert-rules",
        json!({"name": "Orders import failed", "kind": "job_failed", "stream_ids": [stream],
            "channel_ids": [channel["id"]]}),
    )
    .await;
    let job = run(&s, &stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FAILED");
    let mails = mail.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["ops@example.com"]);
    let subject = mails[0].header("Subject").unwrap();
    assert!(subject.contains("Orders import failed"), "{subject}");
    assert!(mails[0].data.contains("1 jobs FAILED"), "{}", mails[0].data);
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["status"], "open");
    assert_eq!(alerts[0]["count"], 1);
    assert_eq!(alerts[0]["stream_id"], json!(stream));
    assert_eq!(alerts[0]["sample_event_ids"], json!([job]));
    let sent = eventually("the notification recorded as sent", async || {
        let n = notifications_of(&s).await;
        (n.len() == 1 && n[0]["status"] == "sent").then_some(n)
    })
    .await;
    assert_eq!(sent[0]["kind"], "opened");
    assert_eq!(sent[0]["tries"], 1);
    assert_eq!(sent[0]["alert_id"], alerts[0]["id"]);
    // Later evaluations find nothing new to say.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mail.mails().len(), 1);
    assert_eq!(notifications_of(&s).await.len(), 1);
}

async fn a_hundred_failures_are_one_alert_and_flood_control_holds_back_the_rest(db: Db) {
    let Scene {
        s,
        alerting,
        hook,
        stream,
        channel,
        secret,
        _env: _kept,
        _refusing: _refused,
    } = scene(db).await;
    s.create(
        "/alert-rules",
        json!({"name": "Deliveries failing", "kind": "event_failed", "channel_ids": [channel],
            "flood": {"max": 3, "per_minutes": 10}}),
    )
    .await;
    let t0 = Utc::now();
    let minutes = |m: i64| at(t0 + chrono::Duration::minutes(m));
    // Four bursts inside one flood period: three messages go, the fourth burst is held.
    let mut failed = 0;
    for (minute, burst) in [(0, 40), (1, 30), (2, 20), (3, 10)] {
        fail_records(&s, &stream, failed, burst).await;
        failed += burst;
        logged_failures(&s, failed).await;
        let tick = alerting.tick(minutes(minute)).await.unwrap();
        assert!(tick.evaluated, "{tick:?}");
    }
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["count"], 100);
    assert_eq!(alerts[0]["error_code"], "INVALID_SCHEMA");
    assert_eq!(alerts[0]["sample_event_ids"].as_array().unwrap().len(), 10);
    assert_eq!(
        hook.received().len(),
        3,
        "at most flood.max messages a period"
    );
    // The period ends: the next message says how many were held back.
    alerting.tick(minutes(11)).await.unwrap();
    let received = hook.received();
    assert_eq!(received.len(), 4);
    let kinds: Vec<_> = received.iter().map(|r| r.body["type"].clone()).collect();
    assert_eq!(
        kinds,
        [
            "alert.opened",
            "alert.repeated",
            "alert.repeated",
            "alert.repeated"
        ]
    );
    let counts: Vec<_> = received
        .iter()
        .map(|r| r.body["alert"]["count"].clone())
        .collect();
    assert_eq!(counts, [40, 70, 90, 100]);
    let last = &received[3];
    assert_eq!(last.body["held_back"], 10);
    assert!(
        last.body["text"]
            .as_str()
            .unwrap()
            .contains("10 more held back"),
        "{}",
        last.body
    );
    // Every message is signed with the channel's secret.
    for r in &received {
        let signature = r.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert_eq!(signature, sign(&secret, r.raw.as_bytes()));
        assert_eq!(
            r.headers["webhook-id"].to_str().unwrap(),
            r.body["notification_id"].as_str().unwrap()
        );
    }
    let log = notifications_of(&s).await;
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|n| n["status"] == "sent"), "{log:?}");
    // Quiet for the rule's window: it resolves itself, and says so.
    alerting.tick(minutes(3 + 61)).await.unwrap();
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts[0]["status"], "resolved");
    assert_eq!(hook.received()[4].body["type"], "alert.resolved");
    // A failure after that is a new incident.
    fail_records(&s, &stream, failed, 1).await;
    logged_failures(&s, failed + 1).await;
    alerting.tick(minutes(70)).await.unwrap();
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["status"], "open");
    assert_eq!(alerts[0]["count"], 1);
}

async fn error_rate_fires_once_min_events_is_reached_and_resolves_when_it_falls(db: Db) {
    let Scene {
        s,
        alerting,
        hook,
        stream,
        channel,
        secret: _,
        _env: _kept,
        _refusing: _refused,
    } = scene(db).await;
    let rule = s
        .create(
            "/alert-rules",
            json!({"name": "Error rate", "kind": "error_rate", "threshold_pct": 50,
                "min_events": 10, "window_minutes": 60, "channel_ids": [channel]}),
        )
        .await;
    assert_eq!(rule["flood"], json!({"max": 20, "per_minutes": 15}));
    fail_records(&s, &stream, 0, 6).await;
    let now = Utc::now();
    alerting.tick(at(now)).await.unwrap();
    assert!(
        alerts_of(&s).await.is_empty(),
        "6 events are under min_events"
    );
    fail_records(&s, &stream, 6, 6).await;
    let now = Utc::now();
    alerting.tick(at(now)).await.unwrap();
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["count"], 12);
    assert!(
        alerts[0]["summary"].as_str().unwrap().contains("12 of 12"),
        "{}",
        alerts[0]
    );
    alerting
        .tick(at(now + chrono::Duration::seconds(30)))
        .await
        .unwrap();
    assert_eq!(hook.received().len(), 1, "a condition is told once");
    // An hour later the window holds no events: clear; after another window, resolved.
    alerting
        .tick(at(now + chrono::Duration::minutes(61)))
        .await
        .unwrap();
    assert_eq!(alerts_of(&s).await[0]["status"], "open");
    alerting
        .tick(at(now + chrono::Duration::minutes(122)))
        .await
        .unwrap();
    assert_eq!(alerts_of(&s).await[0]["status"], "resolved");
    let types: Vec<_> = hook
        .received()
        .iter()
        .map(|r| r.body["type"].clone())
        .collect();
    assert_eq!(types, ["alert.opened", "alert.resolved"]);
}

async fn silence_is_judged_inside_the_daily_window_only(db: Db) {
    let (_env, s, config) = start(db, false, |_| {}).await;
    let alerting = evaluator(&config).await;
    let hook = Sink::ok().await;
    let ok = Sink::ok().await;
    let stream = failing_stream(&s, &ok).await;
    let (channel, _) = webhook_channel(&s, &hook).await;
    s.create(
        "/alert-rules",
        json!({"name": "No orders", "kind": "silence", "silence_minutes": 30,
            "stream_ids": [stream], "channel_ids": [channel],
            "check_window": {"days": ["mon","tue","wed","thu","fri","sat","sun"],
                "from": "08:00", "to": "18:00", "timezone": "UTC"}}),
    )
    .await;
    let tomorrow = Utc::now().date_naive() + chrono::Duration::days(1);
    let day_at = |d: chrono::NaiveDate, h: u32| {
        Utc.with_ymd_and_hms(d.year(), d.month(), d.day(), h, 0, 0)
            .unwrap()
    };
    alerting.tick(at(day_at(tomorrow, 20))).await.unwrap();
    assert!(alerts_of(&s).await.is_empty(), "outside the window");
    let next = tomorrow + chrono::Duration::days(1);
    alerting.tick(at(day_at(next, 10))).await.unwrap();
    let alerts = alerts_of(&s).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0]["summary"]
        .as_str()
        .unwrap()
        .contains("no OK event"));
    assert_eq!(hook.received().len(), 1);
}

async fn a_failing_channel_is_retried_and_every_try_shows_in_notifications(db: Db) {
    let (_env, s, _) = start(db, true, |_| {}).await;
    let down = Sink::scripted(Arc::new(|_: &Value, _| {
        (StatusCode::SERVICE_UNAVAILABLE, Vec::new())
    }))
    .await;
    let flaky = Sink::scripted(Arc::new(|_: &Value, n| {
        if n < 2 {
            (StatusCode::INTERNAL_SERVER_ERROR, Vec::new())
        } else {
            (StatusCode::OK, Vec::new())
        }
    }))
    .await;
    let (down_id, _) = webhook_channel(&s, &down).await;
    let (flaky_id, _) = webhook_channel(&s, &flaky).await;
    let source = broken_source().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &down.url(),
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        false,
    )
    .await;
    s.create(
        "/alert-rules",
        json!({"name": "Import failed", "kind": "job_failed", "channel_ids": [down_id, flaky_id]}),
    )
    .await;
    let job = run(&s, &stream).await;
    wait_for_job(&s, &job).await;
    let log = eventually("both notifications settled", async || {
        let n = notifications_of(&s).await;
        (n.len() == 2 && n.iter().all(|n| n["status"] != "pending")).then_some(n)
    })
    .await;
    let of = |id: &str| log.iter().find(|n| n["channel_id"] == id).unwrap().clone();
    let failed = of(&down_id);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["tries"], 3, "the first try and two retries");
    assert!(
        failed["error"].as_str().unwrap().contains("503"),
        "{failed}"
    );
    let sent = of(&flaky_id);
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["tries"], 2);
    assert!(sent["error"].is_null());
    assert_eq!(down.received().len(), 3);
    let text = s.metrics().await;
    assert!(
        text.contains("wharf_notifications_total{outcome=\"failed\"} 4"),
        "{text}"
    );
}

async fn channels_rules_and_alert_actions_are_validated_and_guarded(db: Db) {
    let (_env, s, config) = start(db, false, |_| {}).await;
    let alerting = evaluator(&config).await;
    let (status, problem) = s
        .post(
            "/alert-channels",
            json!({"name": "", "kind": "pager", "target": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(error_fields(&problem), ["name", "kind"]);
    let (status, problem) = s
        .post(
            "/alert-channels",
            json!({"name": "Mail", "kind": "email", "target": "not an address"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(error_fields(&problem), ["target"]);
    let hook = Sink::ok().await;
    let (channel, _) = webhook_channel(&s, &hook).await;
    let (_, shown) = s.get(&format!("/alert-channels/{channel}")).await;
    assert_eq!(shown["secret"], "********");
    let (status, problem) = s
        .post(
            "/alert-rules",
            json!({"name": "R", "kind": "job_failed", "channel_ids": [uuid::Uuid::now_v7()],
                "stream_ids": [uuid::Uuid::now_v7()], "threshold_pct": 0,
                "flood": {"max": 0, "per_minutes": 5},
                "check_window": {"from": "8", "to": "22:00", "timezone": "UTC"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let fields = error_fields(&problem);
    for f in [
        "threshold_pct",
        "flood.max",
        "check_window.from",
        "check_window",
        "stream_ids[0]",
        "channel_ids[0]",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
    }
    let (status, problem) = s
        .post("/alert-rules", json!({"name": "R", "kind": "job_failed"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(error_fields(&problem), ["channel_ids"]);
    let rule = s
        .create(
            "/alert-rules",
            json!({"name": "Failures", "kind": "event_failed", "channel_ids": [channel]}),
        )
        .await;
    let rule_id = rule["id"].as_str().unwrap();
    let (status, patched) = s
        .patch(
            &format!("/alert-rules/{rule_id}"),
            json!({"enabled": false, "window_minutes": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["window_minutes"], 30);
    assert_eq!(patched["name"], "Failures");
    let (status, problem) = s
        .patch(&format!("/alert-rules/{rule_id}"), json!({"kind": "nope"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    s.patch(&format!("/alert-rules/{rule_id}"), json!({"enabled": true}))
        .await;

    // Roles: an editor handles alerts but cannot change rules; a viewer only reads.
    let editor = s.token_with_role("editor").await;
    let viewer = s.token_with_role("viewer").await;
    let (status, _) = crate::common::send(
        s.req_as(&editor, reqwest::Method::POST, "/alert-rules")
            .json(&json!({"name": "x", "kind": "job_failed", "channel_ids": [channel]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An alert to act on.
    let refusing = Sink::scripted(refusing_sink_script()).await;
    let stream = failing_stream(&s, &refusing).await;
    fail_records(&s, &stream, 0, 2).await;
    logged_failures(&s, 2).await;
    alerting.tick(Timestamp::now()).await.unwrap();
    let alert = alerts_of(&s).await[0].clone();
    let id = alert["id"].as_str().unwrap();
    let (status, _) = crate::common::send(s.req_as(
        &viewer,
        reqwest::Method::POST,
        &format!("/alerts/{id}/acknowledge"),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, acked) = crate::common::send(s.req_as(
        &editor,
        reqwest::Method::POST,
        &format!("/alerts/{id}/acknowledge"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    // Acknowledged alerts keep counting, silently.
    let before = hook.received().len();
    fail_records(&s, &stream, 2, 3).await;
    logged_failures(&s, 5).await;
    // (Another node could not evaluate now: this one holds the lease.)
    let other = evaluator(&config)
        .await
        .tick(Timestamp::now())
        .await
        .unwrap();
    assert!(!other.evaluated);
    alerting.tick(Timestamp::now()).await.unwrap();
    let (_, now) = s.get(&format!("/alerts/{id}")).await;
    assert_eq!(now["count"], 5);
    assert_eq!(now["status"], "acknowledged");
    assert_eq!(hook.received().len(), before);
    let (status, resolved) = s.post(&format!("/alerts/{id}/resolve"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    let (status, problem) = s.post(&format!("/alerts/{id}/ignore"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _) = s.get(&format!("/alerts/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get("/alerts?status=resolved").await;
    assert_eq!(status, StatusCode::OK);
}

async fn two_nodes_on_one_database_send_each_notification_once(db: Db) {
    let (env, a, _) = start(db, true, |_| {}).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.alerts.interval_seconds = 1;
    config.alerts.lease_seconds = 5;
    let b = Server::start(config).await;
    let hook = Sink::ok().await;
    let (channel, _) = webhook_channel(&a, &hook).await;
    let refusing = Sink::scripted(refusing_sink_script()).await;
    let stream = failing_stream(&a, &refusing).await;
    a.create(
        "/alert-rules",
        json!({"name": "Failures", "kind": "event_failed", "channel_ids": [channel]}),
    )
    .await;
    for i in 0..5 {
        fail_records(&a, &stream, i * 4, 4).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let alert = eventually("all 20 failures counted", async || {
        let alerts = alerts_of(&b).await;
        (alerts.len() == 1 && alerts[0]["count"] == 20).then(|| alerts[0].clone())
    })
    .await;
    let sent = eventually("every notification sent", async || {
        let n = notifications_of(&a).await;
        (!n.is_empty() && n.iter().all(|n| n["status"] == "sent")).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = hook.received();
    let mut ids: Vec<_> = received
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a notification arrived twice");
    assert_eq!(total, sent.len());
    let last = received.last().unwrap();
    assert!(last.body["alert"]["count"].as_i64().unwrap() <= 20);
    assert_eq!(alert["status"], "open");
    b.stop().await;
}

async fn a_daily_digest_summarises_each_watched_stream_once_a_day(db: Db) {
    let (_env, s, config) = start(db, false, |_| {}).await;
    let alerting = evaluator(&config).await;
    let hook = Sink::ok().await;
    let ok = Sink::ok().await;
    let refusing = Sink::scripted(refusing_sink_script()).await;
    let good = failing_stream(&s, &ok).await;
    let bad = failing_stream(&s, &refusing).await;
    let (channel, _) = webhook_channel(&s, &hook).await;
    s.create(
        "/alert-rules",
        json!({"name": "Morning report", "kind": "event_failed", "digest": "daily",
            "stream_ids": [good, bad], "channel_ids": [channel]}),
    )
    .await;
    let records = json!([{"id": "1", "name": "#1"}, {"id": "2", "name": "#2"}]);
    upload_and_wait(&s, &good, records.clone()).await;
    upload_and_wait(&s, &bad, records).await;
    let now = Utc::now();
    alerting.tick(at(now)).await.unwrap();
    let kinds = |hook: &Sink| -> Vec<Value> {
        hook.received()
            .iter()
            .map(|r| r.body["type"].clone())
            .collect()
    };
    assert!(!kinds(&hook).contains(&json!("digest")), "not a day yet");
    alerting
        .tick(at(now + chrono::Duration::hours(25)))
        .await
        .unwrap();
    let digests: Vec<_> = hook
        .received()
        .into_iter()
        .filter(|r| r.body["type"] == "digest")
        .collect();
    assert_eq!(digests.len(), 1);
    let body = &digests[0].body;
    let streams = body["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    let of = |id: &str| streams.iter().find(|x| x["stream_id"] == id).unwrap();
    assert_eq!(of(&good)["events"]["OK"], 2);
    assert_eq!(of(&bad)["events"]["FAILED"], 2);
    // The failures' alert was quiet for its window by then, and resolved itself.
    assert_eq!(body["unresolved_alerts"], 0);
    assert!(
        body["text"].as_str().unwrap().contains("FAILED 2"),
        "{body}"
    );
    alerting
        .tick(at(now + chrono::Duration::hours(26)))
        .await
        .unwrap();
    let again = hook
        .received()
        .iter()
        .filter(|r| r.body["type"] == "digest")
        .count();
    assert_eq!(again, 1, "one digest a day");
    let (_, rule) = s.get("/alert-rules").await;
    assert!(rule["items"][0]["digest_sent_at"].is_string(), "{rule}");
}

async fn a_disabled_rule_lets_its_alerts_go_and_a_used_channel_stays(db: Db) {
    let Scene {
        s,
        alerting,
        hook,
        stream,
        channel,
        secret: _,
        _env: _kept,
        _refusing: _refused,
    } = scene(db).await;
    let rule = s
        .create(
            "/alert-rules",
            json!({"name": "Failures", "kind": "event_failed", "channel_ids": [channel]}),
        )
        .await;
    let (status, problem) = s.delete(&format!("/alert-channels/{channel}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("Failures"),
        "{problem}"
    );
    fail_records(&s, &stream, 0, 2).await;
    logged_failures(&s, 2).await;
    alerting.tick(Timestamp::now()).await.unwrap();
    assert_eq!(alerts_of(&s).await[0]["status"], "open");
    let rule_id = rule["id"].as_str().unwrap();
    s.patch(
        &format!("/alert-rules/{rule_id}"),
        json!({"enabled": false}),
    )
    .await;
    alerting.tick(Timestamp::now()).await.unwrap();
    assert_eq!(alerts_of(&s).await[0]["status"], "resolved");
    let types: Vec<_> = hook
        .received()
        .iter()
        .map(|r| r.body["type"].clone())
        .collect();
    assert_eq!(types, ["alert.opened"], "resolved without a message");
    // Once no rule names it, the channel can go.
    s.delete(&format!("/alert-rules/{rule_id}")).await;
    let (status, _) = s.delete(&format!("/alert-channels/{channel}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

both_stores!(
    a_failed_job_mails_the_channel_once,
    a_hundred_failures_are_one_alert_and_flood_control_holds_back_the_rest,
    error_rate_fires_once_min_events_is_reached_and_resolves_when_it_falls,
    silence_is_judged_inside_the_daily_window_only,
    a_failing_channel_is_retried_and_every_try_shows_in_notifications,
    channels_rules_and_alert_actions_are_validated_and_guarded,
    a_daily_digest_summarises_each_watched_stream_once_a_day,
    a_disabled_rule_lets_its_alerts_go_and_a_used_channel_stays,
);

/// Several nodes share a database only on Postgres.
mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_on_one_database_send_each_notification_once() {
        super::two_nodes_on_one_database_send_each_notification_once(crate::common::Db::Postgres)
            .await
    }
}
