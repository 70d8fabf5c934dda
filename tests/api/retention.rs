//! Data retention through the API: each organisation's policy, and a sweep (at a time the test
//! chooses, on the server's database) that clears old payloads, then deletes old records and
//! log entries, leaving unfinished work and entities alone.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use wharf::domain::Timestamp;

use crate::both_stores;
use crate::common::{error_fields, Db, Env, Server};
use crate::engine::{fetch_stream, upload_and_wait};
use crate::peers::Sink;

fn days(n: i64) -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now() + chrono::Duration::days(n))
}

async fn an_organisation_sets_its_own_policy_within_bounds(db: Db) {
    let env = Env::new(db).await;
    let s = Server::start(env.config()).await;
    let (_, page) = s.get("/organisations").await;
    let org = page["items"][0].clone();
    assert_eq!(
        org["retention"],
        json!({"payload_days": 30, "records_days": 60, "log_days": 60, "audit_days": 365})
    );
    assert_eq!(org["retention_is_default"], true);
    let id = org["id"].as_str().unwrap();
    let (status, changed) = s
        .patch(
            &format!("/organisations/{id}"),
            json!({"retention": {"payload_days": 7, "records_days": 45}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["retention"],
        json!({"payload_days": 7, "records_days": 45, "log_days": 60, "audit_days": 365})
    );
    assert_eq!(changed["retention_is_default"], false);
    assert_eq!(changed["name"], org["name"], "the name is kept");
    let (status, problem) = s
        .patch(
            &format!("/organisations/{id}"),
            json!({"retention": {"payload_days": 0, "log_days": 5000, "audit_days": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        error_fields(&problem),
        [
            "retention.payload_days",
            "retention.log_days",
            "retention.audit_days"
        ]
    );
    let (status, problem) = s
        .patch(
            &format!("/organisations/{id}"),
            json!({"retention": {"payload_days": 50}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, back) = s
        .patch(&format!("/organisations/{id}"), json!({"retention": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(back["retention_is_default"], true);
    // Only owners change it.
    let admin = s.token_with_role("admin").await;
    let (status, _) = crate::common::send(
        s.req_as(
            &admin,
            reqwest::Method::PATCH,
            &format!("/organisations/{id}"),
        )
        .json(&json!({"retention": {"payload_days": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn old_payloads_are_cleared_then_old_records_deleted_and_waiting_work_kept(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.retention.batch_size = 2;
    let s = Server::start(config.clone()).await;
    let store = wharf::prepare(config.clone()).await.unwrap().store.clone();
    let mut marks = wharf::retention::Marks::new();
    let (_, page) = s.get("/organisations").await;
    let org = page["items"][0]["id"].as_str().unwrap().to_string();
    s.patch(
        &format!("/organisations/{org}"),
        json!({"retention": {"payload_days": 1, "records_days": 3, "log_days": 3}}),
    )
    .await;
    let ok = Sink::ok().await;
    let stalled = Sink::ok().await;
    stalled.pause(true);
    let retry = json!({"schedule_seconds": [0], "timeout_seconds": 30});
    let done = fetch_stream(&s, "http://127.0.0.1:9/o", &ok.url(), retry.clone(), false).await;
    let waiting = fetch_stream(&s, "http://127.0.0.1:9/o", &stalled.url(), retry, false).await;
    let records = json!((1..=5)
        .map(|i| json!({"id": format!("{i}"), "name": format!("#{i}")}))
        .collect::<Vec<_>>());
    let (job, events) = upload_and_wait(&s, &done, records.clone()).await;
    let (status, pending) = crate::common::send(
        s.req(
            reqwest::Method::POST,
            &format!("/streams/{waiting}/uploads"),
        )
        .header("content-type", "application/json")
        .body(json!([{"id": "9", "name": "#9"}]).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let event = |id: &Value| format!("/events/{}", id.as_str().unwrap());

    // A day and a half later: payloads cleared, rows kept; nothing else touched.
    let removed = wharf::retention::sweep(
        &store,
        &config.retention,
        Timestamp::from_datetime(days(1).0 + h12()),
        &mut marks,
    )
    .await
    .unwrap();
    assert_eq!(removed.get("event_payloads"), Some(&5), "{removed:?}");
    assert_eq!(
        removed.get("attempt_excerpts").copied().unwrap_or(0),
        5,
        "{removed:?}"
    );
    assert!(!removed.contains_key("events"), "{removed:?}");
    let (status, e) = s.get(&event(&events[0]["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        e["payload_in"].is_null() && e["payload_out"].is_null(),
        "{e}"
    );
    assert_eq!(e["status"], "OK");
    let (_, attempts) = s
        .get(&format!("{}/attempts", event(&events[0]["id"])))
        .await;
    assert!(attempts["items"][0]["response_excerpt"].is_null());
    // Without its payload an event is replicated only with one given.
    let (status, problem) = s
        .post(&format!("{}/replicate", event(&events[0]["id"])), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("payload_days"));
    let (status, _) = s
        .post(
            &format!("/jobs/{}/replicate", job["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, replica) = s
        .post(
            &format!("{}/replicate", event(&events[0]["id"])),
            json!({"payload": {"id": "1", "name": "#1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replica}");
    // The replica is delivered (and counted with the rest below).
    let made = format!("/events/{}", replica["event_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.get(&made).await.1["status"] != "OK" {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, waiting_events) = s.get(&format!("/events?stream_id={waiting}")).await;
    let held = waiting_events["items"][0].clone();
    assert!(
        !held["payload_in"].is_null(),
        "a waiting event keeps its payload"
    );

    // Past records_days: finished events, their attempts and their job are gone; the entity
    // keeps its last status; the log's old entries are gone; waiting work stays.
    // The log is read once the transactions before it have ended (on Postgres); wait until
    // the job's end is in it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = s.get("/event-log?cursor=0&limit=1000").await;
        let ended = log["items"].as_array().unwrap().iter().any(|e| {
            e["type"] == "JOB_STATUS_CHANGE"
                && e["details"]["job_id"] == job["id"]
                && e["details"]["to"] == "FINISHED"
        });
        if ended {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let removed = wharf::retention::sweep(&store, &config.retention, days(4), &mut marks)
        .await
        .unwrap();
    assert_eq!(
        removed.get("events"),
        Some(&6),
        "five and the replica: {removed:?}"
    );
    assert_eq!(removed.get("jobs"), Some(&2), "{removed:?}");
    assert!(
        removed.get("event_log").is_some_and(|n| *n > 0),
        "{removed:?}"
    );
    let (status, _) = s.get(&event(&events[0]["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .get(&format!("/jobs/{}", job["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .get(&format!("/events/{}", held["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK, "waiting work is never removed");
    let (_, entities) = s.get("/entities?entity_id=%231").await;
    assert_eq!(entities["items"][0]["last_status"], "OK");
    let (_, log) = s.get("/event-log?cursor=0&limit=1000").await;
    // Old entries are gone, every one: a row's place is given at its insert and never
    // depends on what is stored, so nothing needs to stay.
    assert_eq!(log["items"].as_array().unwrap().len(), 0, "{log}");
    // Nothing left to remove: a sweep is idempotent.
    let again = wharf::retention::sweep(&store, &config.retention, days(4), &mut marks)
        .await
        .unwrap();
    assert!(!again.contains_key("events"), "{again:?}");
    stalled.pause(false);
}

async fn audit_entries_are_deleted_after_audit_days_and_no_sooner(db: Db) {
    let env = Env::new(db).await;
    let config = env.config();
    let s = Server::start(config.clone()).await;
    let store = wharf::prepare(config.clone()).await.unwrap().store.clone();
    let (_, page) = s.get("/organisations").await;
    let org = page["items"][0]["id"].as_str().unwrap().to_string();
    let (status, sister) = s
        .post("/organisations", json!({"name": "sister-shop"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sister}");
    let sister_token = sister["owner_token"].as_str().unwrap().to_string();
    let sister_id = sister["id"].as_str().unwrap().to_string();
    let audit_of = |token: &str| {
        crate::common::send(s.req_as(token, reqwest::Method::GET, "/audit-log?limit=100"))
    };
    // Now: this organisation keeps its log two days; the sister keeps the default year.
    let (status, _) = s
        .patch(
            &format!("/organisations/{org}"),
            json!({"retention": {"audit_days": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = crate::common::send(
        s.req_as(
            &sister_token,
            reqwest::Method::PATCH,
            &format!("/organisations/{sister_id}"),
        )
        .json(&json!({"name": "sister-shop-renamed"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Three days later, one more change here.
    s.clock.advance(chrono::Duration::days(3));
    let (status, _) = s
        .patch(&format!("/organisations/{org}"), json!({"name": "later"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = audit_of(&s.token).await;
    let before = before["items"].as_array().unwrap().clone();
    assert_eq!(before.len(), 3, "{before:?}");

    let removed = wharf::retention::sweep(
        &store,
        &config.retention,
        Timestamp::from_datetime(days(3).0 + chrono::Duration::minutes(1)),
        &mut wharf::retention::Marks::new(),
    )
    .await
    .unwrap();
    // The two entries made three days ago here (the sister's creation and the policy
    // change); the one made since, and the sister's, stay.
    assert_eq!(removed.get("audit_log"), Some(&2), "{removed:?}");
    assert_eq!(removed.len(), 1, "nothing else: {removed:?}");
    let (_, after) = audit_of(&s.token).await;
    let after = after["items"].as_array().unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0], before[2]);
    assert_eq!(after[0]["changes"]["name"][1], "later");
    let (_, sister_log) = audit_of(&sister_token).await;
    assert_eq!(
        sister_log["items"].as_array().unwrap().len(),
        1,
        "{sister_log}"
    );
    assert_eq!(sister_log["items"][0]["action"], "organisation.update");
}

fn h12() -> chrono::Duration {
    chrono::Duration::hours(12)
}

both_stores!(
    an_organisation_sets_its_own_policy_within_bounds,
    old_payloads_are_cleared_then_old_records_deleted_and_waiting_work_kept,
    audit_entries_are_deleted_after_audit_days_and_no_sooner,
);
