//! The engine end to end: real HTTP sources and sinks on loopback, on both stores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{send, Db, Env, Server};
use crate::peers::{broken_source, paginated_source, Sink};

const PASSTHROUGH: &str = "01900000-0000-7000-8000-000000000001";

pub async fn start(db: Db) -> (Env, Server) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    let server = Server::start(config).await;
    (env, server)
}

/// A stream from an `http.fetch` source at `source_url` to an `http.send` destination.
pub async fn fetch_stream(
    s: &Server,
    source_url: &str,
    sink_url: &str,
    retry: Value,
    test_mode: bool,
) -> String {
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders API", "system": "http", "function": "http.fetch",
            "trigger": "manual", "params": {"url": source_url, "records_path": "orders",
            "entity_id_path": "name", "pagination": "link"}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": sink_url, "headers": {"X-Wharf-Test": "1"}}, "retry": retry}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Orders", "data_type": "sales_order",
            "source_id": source["id"], "transformation_id": PASSTHROUGH,
            "destination_id": destination["id"], "test_mode": test_mode}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

pub async fn run(s: &Server, stream: &str) -> String {
    let (status, body) = s.post(&format!("/streams/{stream}/run"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["job_id"].as_str().unwrap().to_string()
}

/// Polls the job until it ends.
pub async fn wait_for_job(s: &Server, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, j) = s.get(&format!("/jobs/{job}")).await;
        assert_eq!(status, StatusCode::OK);
        if matches!(
            j["status"].as_str().unwrap(),
            "FINISHED" | "FINISHED_WITH_ISSUES" | "FAILED"
        ) {
            return j;
        }
        assert!(Instant::now() < deadline, "job did not end: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event of a job, oldest first.
pub async fn events_of(s: &Server, job: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = s
            .get(&format!("/events?job_id={job}&order=asc&limit=500{cursor}"))
            .await;
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Uploads records to a stream and waits for the job to end: the job and its events.
pub async fn upload_and_wait(s: &Server, stream: &str, records: Value) -> (Value, Vec<Value>) {
    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(records.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let job_id = out["job_id"].as_str().unwrap();
    let job = wait_for_job(s, job_id).await;
    let events = events_of(s, job_id).await;
    (job, events)
}

/// An event's delivery attempts, oldest first.
pub async fn attempts(s: &Server, event: &Value) -> Vec<Value> {
    let (status, page) = s
        .get(&format!(
            "/events/{}/attempts?order=asc",
            event["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// An event-log position as (horizon, row, entry): `horizon.id.k`, or for rows without a
/// horizon (SQLite) `id.k`, or `id` for a row's first entry.
fn position(id: &str) -> (i64, i64, i64) {
    let n: Vec<i64> = id.split('.').map(|p| p.parse().unwrap()).collect();
    match n[..] {
        [id] => (0, id, 0),
        [id, k] => (0, id, k),
        [horizon, id, k] => (horizon, id, k),
        _ => panic!("not a position: {id}"),
    }
}

/// Reads the whole event log from the start.
async fn whole_log(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let (status, page) = s
            .get(&format!("/event-log?cursor={cursor}&limit=1000"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return out;
        }
        out.extend(items.iter().cloned());
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
}

async fn paginated_source_is_delivered_once_each(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(1000, 100).await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["counts"]["OK"], 1000, "{j}");
    assert_eq!(j["trigger"], "manual");

    let counts = sink.counts_by_id();
    assert_eq!(counts.len(), 1000);
    assert!(
        counts.values().all(|n| *n == 1),
        "each record delivered once"
    );
    let first = &sink.received()[0];
    assert_eq!(
        first.headers["x-wharf-test"], "1",
        "the destination's headers are sent"
    );

    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1000);
    for e in &events {
        assert_eq!(e["status"], "OK");
        assert_eq!(e["level"], "success");
        assert_eq!(e["is_running"], false);
        assert_eq!(e["attempt_count"], 1);
        assert!(e["entity_id"].as_str().unwrap().starts_with('#'));
    }
    let (_, attempts) = s
        .get(&format!(
            "/events/{}/attempts",
            events[0]["id"].as_str().unwrap()
        ))
        .await;
    let a = &attempts["items"][0];
    assert_eq!(a["outcome"], "SUCCESS");
    assert_eq!(a["http_status"], 200);
    assert_eq!(a["http_status_name"], "OK");
    assert!(a["response_excerpt"].as_str().unwrap().contains("answer 1"));

    // The event log holds every change exactly once: NEW, TRANSFORMED, OK per event, and
    // PENDING, PROCESSING, FINISHED for the job.
    let log = whole_log(&s).await;
    let mut per_event: HashMap<String, Vec<String>> = HashMap::new();
    let mut job_changes = Vec::new();
    let mut last = (0i64, 0i64, 0i64);
    for entry in &log {
        let pos = position(entry["id"].as_str().unwrap());
        assert!(pos > last, "positions only grow");
        last = pos;
        let to = entry["details"]["to"].as_str().unwrap().to_string();
        match entry["type"].as_str().unwrap() {
            "EVENT_STATUS_CHANGE" => per_event
                .entry(entry["details"]["event_id"].as_str().unwrap().to_string())
                .or_default()
                .push(to),
            _ => job_changes.push(to),
        }
    }
    assert_eq!(job_changes, ["PENDING", "PROCESSING", "FINISHED"]);
    assert_eq!(per_event.len(), 1000);
    assert!(
        per_event
            .values()
            .all(|v| v == &["NEW", "TRANSFORMED", "OK"]),
        "{:?}",
        per_event.values().next()
    );
}

async fn failures_are_retried_on_schedule_and_4xx_is_final(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(3, 10).await;
    // #1000 is refused for good; #1001 fails twice (503 with Retry-After: 2) then succeeds;
    // #1002 always fails with 500 until its attempts run out.
    let sink = Sink::scripted(Arc::new(|body: &Value, n: usize| {
        match body["id"].as_str().unwrap() {
            "1000" => (StatusCode::BAD_REQUEST, vec![]),
            "1001" if n <= 2 => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![("retry-after", "2".to_string())],
            ),
            "1001" => (StatusCode::OK, vec![]),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, vec![]),
        }
    }))
    .await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0, 0, 0, 0], "timeout_seconds": 5}),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{j}");
    assert_eq!(j["counts"]["OK"], 1);
    assert_eq!(j["counts"]["FAILED"], 2);

    let events = events_of(&s, &job).await;
    let by_name = |name: &str| {
        events
            .iter()
            .find(|e| e["entity_id"] == name)
            .unwrap()
            .clone()
    };

    let refused = by_name("#1000");
    assert_eq!(refused["status"], "FAILED");
    assert_eq!(refused["error_code"], "INVALID_SCHEMA");
    assert_eq!(refused["attempt_count"], 1, "a 400 is not retried");
    assert_eq!(refused["level"], "error");

    let recovered = by_name("#1001");
    assert_eq!(recovered["status"], "OK");
    assert_eq!(recovered["attempt_count"], 3);
    let (_, attempts) = s
        .get(&format!(
            "/events/{}/attempts?order=asc",
            recovered["id"].as_str().unwrap()
        ))
        .await;
    let items = attempts["items"].as_array().unwrap();
    let outcomes: Vec<_> = items
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["RETRY", "RETRY", "SUCCESS"]);
    assert_eq!(items[0]["http_status"], 503);
    assert_eq!(items[0]["error_code"], "SERVER_ERROR");
    // Retry-After: 2 is honoured over the schedule's 0 s.
    let t = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        t(&items[1]) - t(&items[0]) >= chrono::Duration::milliseconds(1900),
        "{attempts}"
    );

    let exhausted = by_name("#1002");
    assert_eq!(exhausted["status"], "FAILED");
    assert_eq!(
        exhausted["attempt_count"], 4,
        "one attempt per schedule entry"
    );
    assert_eq!(exhausted["retries_remaining"], 0);
    assert_eq!(exhausted["error_code"], "SERVER_ERROR");

    // The destination's attempts can be filtered like the event's.
    let (_, d) = s.get(&format!("/streams/{stream}")).await;
    let dest = d["destination_id"].as_str().unwrap();
    let (status, page) = s
        .get(&format!("/destinations/{dest}/attempts?outcome=FAILED"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, page) = s.get("/events?status=FAILED&error_code=SERVER_ERROR").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

async fn a_failing_source_fails_the_job(db: Db) {
    let (_env, s) = start(db).await;
    let source = broken_source().await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    assert!(j["message"].as_str().unwrap().contains("500"), "{j}");
    assert!(sink.received().is_empty());
    let (_, page) = s.get("/jobs?status=FAILED").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

/// U+0000 read from a source (see `store::nul`): a record holding it is stored and delivered
/// as it is on both stores (payloads are JSON text); an entity id holding it is kept with
/// U+FFFD in its place (ids are text, which Postgres cannot give U+0000). A source's error
/// quoting it fails the job with U+FFFD in its place.
async fn nul_characters_from_a_source_never_stop_its_job(db: Db) {
    let (_env, s) = start(db).await;
    let source = wharf_testkit::serve(
        axum::Router::new()
            .route(
                "/orders",
                axum::routing::get(|| async {
                    (
                        [("content-type", "application/json")],
                        r#"{"orders": [{"name": "1"}, {"name": "2", "note": "a\u0000b"},
                            {"name": "3\u0000"}]}"#,
                    )
                }),
            )
            .route(
                "/broken",
                axum::routing::get(|| async {
                    (StatusCode::INTERNAL_SERVER_ERROR, "database \u{0}on fire")
                }),
            ),
    )
    .await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e["status"] == "OK"), "{events:?}");
    let kept = events.iter().find(|e| e["entity_id"] == "2").unwrap();
    assert_eq!(kept["payload_in"]["note"], "a\u{0}b", "{kept}");
    let named = events
        .iter()
        .find(|e| e["entity_id"] == "3\u{FFFD}")
        .unwrap();
    assert_eq!(named["payload_in"]["name"], "3\u{0}", "{named}");
    let (_, entity) = s.get("/entities?status=OK").await;
    let ids: Vec<&Value> = entity["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["entity_id"])
        .collect();
    assert!(ids.contains(&&json!("3\u{FFFD}")), "{entity}");
    let sent = sink.received();
    assert_eq!(sent.len(), 3, "every record is sent");
    let note = sent.iter().find(|r| r.body["name"] == "2").unwrap();
    assert_eq!(note.body["note"], "a\u{0}b", "sent as it came");

    let broken = fetch_stream(
        &s,
        &format!("http://{source}/broken"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &broken).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED", "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(message.contains("database \u{FFFD}on fire"), "{message}");
}

async fn test_mode_transforms_and_never_posts(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(5, 10).await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        true,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED");
    assert_eq!(j["counts"]["OK"], 5);
    assert!(sink.received().is_empty(), "test mode never posts");
    let events = events_of(&s, &job).await;
    assert!(events.iter().all(|e| e["payload_out"] == e["payload_in"]));
}

async fn runs_need_an_active_stream_and_a_writer(db: Db) {
    let (_env, s) = start(db).await;
    let stream = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        "http://127.0.0.1:9/in",
        json!(null),
        false,
    )
    .await;
    let viewer = s.token_with_role("viewer").await;
    let (status, _) =
        send(s.req_as(&viewer, Method::POST, &format!("/streams/{stream}/run"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .patch(&format!("/streams/{stream}"), json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, p) = s.post(&format!("/streams/{stream}/run"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, _) = s
        .post(
            "/streams/01900000-0000-7000-8000-00000000ffff/run",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, jobs) = s.get("/jobs").await;
    assert_eq!(jobs["items"], json!([]));
    // The event log is for feed readers too, and nothing else is.
    let feed = s.token_with_role("event_viewer").await;
    let (status, page) = send(s.req_as(&feed, Method::GET, "/event-log")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["next_cursor"], "0");
    let (status, _) = send(s.req_as(&feed, Method::GET, "/jobs")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

both_stores!(
    aggregate_destinations_deliver_one_combined_request,
    entities_keep_last_status_and_history,
    deactivating_a_stream_aborts_its_open_events,
    shutdown_releases_work_in_flight,
    shutdown_releases_received_events_still_waiting_for_a_worker,
    received_events_that_wait_for_a_worker_past_their_lease_are_delivered_once,
    spilled_events_that_wait_for_a_worker_past_their_lease_are_delivered_once,
    a_delivery_longer_than_the_lease_is_made_once,
    a_lease_found_run_out_while_its_worker_lives_is_renewed_not_taken_back,
    a_combined_delivery_whose_lease_runs_out_while_it_is_sent_is_sent_once,
    a_destination_that_does_not_answer_leaves_workers_for_the_others,
    a_destination_that_does_not_answer_leaves_workers_for_the_others_claimed_from_the_store,
    a_slow_destination_holds_no_more_workers_than_its_share,
    a_slow_destination_holds_no_more_workers_than_its_share_claimed_from_the_store,
    waiting_received_events_of_an_aborted_job_are_not_delivered,
    spilled_events_of_an_aborted_job_are_not_delivered,
    shutdown_releases_spilled_events,
    received_events_are_counted_by_where_they_wait,
    paginated_source_is_delivered_once_each,
    failures_are_retried_on_schedule_and_4xx_is_final,
    a_failing_source_fails_the_job,
    nul_characters_from_a_source_never_stop_its_job,
    test_mode_transforms_and_never_posts,
    runs_need_an_active_stream_and_a_writer,
);

async fn aggregate_destinations_deliver_one_combined_request(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(5, 2).await;
    // The first combined delivery is refused with 503; the second goes through.
    let sink = Sink::scripted(Arc::new(|_: &Value, n: usize| {
        if n == 1 {
            (StatusCode::SERVICE_UNAVAILABLE, vec![])
        } else {
            (StatusCode::OK, vec![])
        }
    }))
    .await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0, 1], "timeout_seconds": 5}),
        false,
    )
    .await;
    let (_, st) = s.get(&format!("/streams/{stream}")).await;
    let dest = st["destination_id"].as_str().unwrap();
    let (status, _) = s
        .patch(
            &format!("/destinations/{dest}"),
            json!({"mode": "aggregate"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(j["counts"]["OK"], 5);

    let received = sink.received();
    assert_eq!(
        received.len(),
        2,
        "one combined request per try: {:?}",
        received.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
    );
    let body = received[1]
        .body
        .as_array()
        .expect("a JSON array of every output");
    let mut ids: Vec<_> = body
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1000", "1001", "1002", "1003", "1004"]);

    // The delivery's attempts and outcome apply to every member.
    for e in events_of(&s, &job).await {
        assert_eq!(e["status"], "OK");
        assert_eq!(e["attempt_count"], 2);
        let (_, attempts) = s
            .get(&format!(
                "/events/{}/attempts?order=asc",
                e["id"].as_str().unwrap()
            ))
            .await;
        let outcomes: Vec<_> = attempts["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(outcomes, ["RETRY", "SUCCESS"]);
    }
}

async fn entities_keep_last_status_and_history(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(2, 10).await;
    let sink = Sink::scripted(Arc::new(|body: &Value, _| match body["id"].as_str() {
        Some("1000") => (StatusCode::UNPROCESSABLE_ENTITY, vec![]),
        _ => (StatusCode::OK, vec![]),
    }))
    .await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    wait_for_job(&s, &job).await;

    let (status, page) = s.get("/entities?data_type=sales_order&order=asc").await;
    assert_eq!(status, StatusCode::OK);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let failed = items.iter().find(|e| e["entity_id"] == "#1000").unwrap();
    assert_eq!(failed["last_status"], "FAILED");
    assert_eq!(failed["level"], "error");
    assert_eq!(failed["last_error_code"], "INVALID_SCHEMA");
    let (_, only_failed) = s.get("/entities?status=FAILED").await;
    assert_eq!(only_failed["items"].as_array().unwrap().len(), 1);

    // Resent with a corrected payload, the entity's last status follows the newest event.
    let (_, evs) = s.get("/events?status=FAILED").await;
    let failed_event = evs["items"][0]["id"].as_str().unwrap();
    let (status, out) = s
        .post(
            &format!("/events/{failed_event}/replicate"),
            json!({"payload": {"id": "1000-fixed", "name": "#1000"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    let (status, entity) = s
        .get(&format!("/entities/{}", failed["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(entity["last_status"], "OK");
    let history = entity["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{entity}");
    assert_eq!(history[0]["status"], "OK");
    assert_eq!(history[1]["status"], "FAILED");
}

async fn deactivating_a_stream_aborts_its_open_events(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(3, 10).await;
    let sink = Sink::scripted(Arc::new(|_: &Value, _| (StatusCode::BAD_GATEWAY, vec![]))).await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0, 3600], "timeout_seconds": 5}),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_of(&s, &job)
        .await
        .iter()
        .filter(|e| e["attempt_count"] == 1 && e["is_running"] == false)
        .count()
        != 3
    {
        assert!(
            Instant::now() < deadline,
            "events never waited for their retry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = s
        .patch(&format!("/streams/{stream}"), json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, j) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{j}");
    assert_eq!(j["counts"]["ABORTED"], 3);
    for e in events_of(&s, &job).await {
        assert_eq!(e["message"], "the stream was deactivated");
    }
}

async fn shutdown_releases_work_in_flight(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.workers.count = 4;
    config.workers.shutdown_grace_seconds = 1;
    let s = Server::start(config.clone()).await;
    let source = paginated_source(6, 10).await;
    let sink = Sink::slow(Duration::from_secs(5)).await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!(null),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events_of(&s, &job)
        .await
        .iter()
        .any(|e| e["is_running"] == true)
    {
        assert!(Instant::now() < deadline, "no delivery started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deliveries take longer than the grace period: they are cut off and released.
    s.stop().await;

    let mut inspect = config.clone();
    inspect.workers.enabled = false;
    let s = Server::start(inspect).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 6);
    assert!(
        events.iter().all(|e| e["is_running"] == false),
        "nothing left running: {events:?}"
    );
    s.stop().await;
}

async fn shutdown_releases_received_events_still_waiting_for_a_worker(db: Db) {
    shutdown_releases_waiting_events(db, 512).await;
}

async fn shutdown_releases_spilled_events(db: Db) {
    // The push's six events do not fit in memory (one place): they are spilled, and only
    // their ids wait.
    shutdown_releases_waiting_events(db, 1).await;
}

async fn received_events_are_counted_by_where_they_wait(db: Db) {
    // One worker, held by a slow destination, two places in memory and three ids spilled:
    // the first push's two events wait in memory, the second's three are spilled, and the
    // third's five are stored unclaimed, for any worker to claim.
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.count = 1;
    config.workers.handoff = 2;
    config.workers.handoff_spill = 3;
    config.workers.shutdown_grace_seconds = 1;
    let s = Server::start(config).await;
    let sink = Sink::slow(Duration::from_secs(5)).await;
    let hook = s.webhook_stream("Pushes", "id", &sink.url()).await;
    for (first, n) in [(0, 2), (2, 3), (5, 5)] {
        let records: Vec<Value> = (first..first + n)
            .map(|i| json!({"id": format!("r{i}")}))
            .collect();
        push_records(&s, &hook, &records).await;
    }
    let metrics = s.metrics().await;
    for (placed, n) in [("queued", 2), ("spilled", 3), ("stored", 5)] {
        let line = format!("wharf_received_events_total{{placed=\"{placed}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    s.stop().await;
}

async fn shutdown_releases_waiting_events(db: Db, handoff: usize) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.handoff = handoff;
    config.workers.count = 2;
    config.workers.shutdown_grace_seconds = 1;
    let s = Server::start(config.clone()).await;
    let sink = Sink::slow(Duration::from_secs(5)).await;
    let records = (0..6).map(|i| json!({"sku": format!("S-{i}")})).collect();
    let job = push_through(&s, sink.url(), "sku", records).await;
    // The six events were stored claimed for this node's two workers: two are being
    // delivered, four wait in memory.
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_of(&s, &job)
        .await
        .iter()
        .filter(|e| e["is_running"] == true)
        .count()
        < 6
    {
        assert!(
            Instant::now() < deadline,
            "the received events were not held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;

    let mut inspect = config.clone();
    inspect.workers.enabled = false;
    let s = Server::start(inspect).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 6);
    assert!(
        events
            .iter()
            .all(|e| e["is_running"] == false && e["status"] != "OK"),
        "every event released, none lost or finished: {events:?}"
    );
    s.stop().await;
}

/// A webhook stream (entity ids at `entity_id_path`) through the passthrough to `sink_url`,
/// and one accepted push of `records`; the push's job.
async fn push_through(
    s: &Server,
    sink_url: String,
    entity_id_path: &str,
    records: Vec<Value>,
) -> String {
    let hook = s.webhook_stream("Pushes", entity_id_path, &sink_url).await;
    push_records(s, &hook, &records).await
}

/// Pushes `records` to the webhook `hook`, which accepts them; the push's job.
async fn push_records(s: &Server, hook: &str, records: &[Value]) -> String {
    let res = s
        .client
        .post(s.url(hook))
        .json(records)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    res.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A server with one worker and `lease` seconds of lease, a webhook stream to `sink`, and a push
/// of `n` records (`id` r0, r1, …); the server and the push's job.
async fn one_worker_push(db: Db, lease: u64, sink: &Sink, n: usize) -> (Env, Server, String) {
    one_worker_push_kept(db, lease, sink, n, 512).await
}

/// [`one_worker_push`], keeping `handoff` received events in memory (the rest spilled).
async fn one_worker_push_kept(
    db: Db,
    lease: u64,
    sink: &Sink,
    n: usize,
    handoff: usize,
) -> (Env, Server, String) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.handoff = handoff;
    config.workers.count = 1;
    config.workers.poll_interval_ms = 50;
    config.workers.lease_seconds = lease;
    let s = Server::start(config).await;
    let records = (0..n).map(|i| json!({"id": format!("r{i}")})).collect();
    let job = push_through(&s, sink.url(), "id", records).await;
    (env, s, job)
}

async fn received_events_that_wait_for_a_worker_past_their_lease_are_delivered_once(db: Db) {
    events_that_wait_past_their_lease_are_delivered_once(db, 512).await;
}

async fn spilled_events_that_wait_for_a_worker_past_their_lease_are_delivered_once(db: Db) {
    // The push's four events do not fit in memory (one place): they are spilled, each read
    // back by id when its turn comes, their leases renewed while they wait.
    events_that_wait_past_their_lease_are_delivered_once(db, 1).await;
}

async fn events_that_wait_past_their_lease_are_delivered_once(db: Db, handoff: usize) {
    // One worker answering in 1.5 s each gets to the last of four events 4.5 s after their
    // receipt, and delivers it until 6 s: past the 5 s lease taken at receipt, which the
    // heartbeat renews while the events wait and while they are delivered, so no other claim
    // sends them again.
    let sink = Sink::slow(Duration::from_millis(1500)).await;
    let (_env, s, job) = one_worker_push_kept(db, 5, &sink, 4, handoff).await;
    wait_for_job(&s, &job).await;
    let events = events_of(&s, &job).await;
    assert!(events.iter().all(|e| e["status"] == "OK"), "{events:?}");
    // Settle anything a lapsed claim might still send.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = sink.counts_by_id();
    for i in 0..4 {
        assert_eq!(counts.get(&format!("r{i}")), Some(&1), "{counts:?}");
    }
    for e in events {
        assert_eq!(e["attempt_count"], 1, "{e}");
    }
}

async fn a_delivery_longer_than_the_lease_is_made_once(db: Db) {
    // The destination answers in 8 s, past the 5 s lease: the worker's heartbeat renews it,
    // so the maintenance rescue does not free the event for a second delivery meanwhile.
    let sink = Sink::slow(Duration::from_secs(8)).await;
    let (_env, s, job) = one_worker_push(db, 5, &sink, 1).await;
    wait_for_job(&s, &job).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    assert_eq!(events[0]["attempt_count"], 1, "{events:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.counts_by_id().get("r0"), Some(&1));
    let metrics = s.metrics().await;
    assert!(
        !metrics.contains("wharf_claims_rescued_total{kind=\"events\"}"),
        "nothing was taken over: {metrics}"
    );
}

/// A server with two workers claiming every 50 ms under a lease of `lease` seconds, and a
/// sink that answers after `delay` seconds.
async fn two_workers_and_a_slow_sink(db: Db, lease: u64, delay: u64) -> (Env, Server, Sink) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.count = 2;
    config.workers.lease_seconds = lease;
    config.workers.poll_interval_ms = 50;
    let sink = Sink::slow(Duration::from_secs(delay)).await;
    let s = Server::start(config).await;
    (env, s, sink)
}

/// Makes the lease of the claimed row `id` of `table` (`events` or `jobs`) have run out, as
/// if its heartbeat had stalled; how many rows it changed.
async fn run_out_lease(env: &Env, table: &str, id: uuid::Uuid) -> u64 {
    env.try_on_store(
        &format!(
            "UPDATE {table} SET lease_expires_at = created_at \
             WHERE id = $1 AND claim_token IS NOT NULL"
        ),
        id,
    )
    .await
    .unwrap()
}

async fn a_lease_found_run_out_while_its_worker_lives_is_renewed_not_taken_back(db: Db) {
    // A 40 s lease, renewed by the heartbeat every 10 s; a delivery of 6 s. Its lease is made
    // to have run out 1 s in (as if the heartbeat had stalled): the next maintenance round
    // finds it, sees the event in its worker's hands and renews it, rather than freeing it
    // for the idle second worker, which would deliver it again.
    let (env, s, sink) = two_workers_and_a_slow_sink(db, 40, 6).await;
    let job = push_through(&s, sink.url(), "id", vec![json!({"id": "r0"})]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event = &events_of(&s, &job).await[0];
    assert_eq!(event["status"], "NEW", "under way: {event}");
    let id = uuid::Uuid::parse_str(event["id"].as_str().unwrap()).unwrap();
    assert_eq!(run_out_lease(&env, "events", id).await, 1);
    wait_for_job(&s, &job).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    assert_eq!(events[0]["attempt_count"], 1, "{events:?}");
    assert_eq!(sink.counts_by_id().get("r0"), Some(&1), "delivered once");
    assert_eq!(sink.most_at_once(), 1, "never two deliveries at once");
    let metrics = s.metrics().await;
    assert!(
        !metrics.contains("wharf_claims_rescued_total{kind=\"events\"}"),
        "nothing was taken over: {metrics}"
    );
}

async fn a_combined_delivery_whose_lease_runs_out_while_it_is_sent_is_sent_once(db: Db) {
    // An aggregate destination answering in 6 s, a 40 s lease renewed every 10 s. The job's
    // lease is made to have run out 1 s into its combined delivery (as if the heartbeat had
    // stalled): the idle second worker of the same process, claiming every 50 ms, must not
    // take the delivery over and send it again beside the first.
    let (env, s, sink) = two_workers_and_a_slow_sink(db, 40, 6).await;
    let hook = s.webhook_stream("Pushes", "id", &sink.url()).await;
    let (_, destinations) = s.get("/destinations").await;
    let dest = destinations["items"][0]["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .patch(
            &format!("/destinations/{dest}"),
            json!({"mode": "aggregate"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = push_records(&s, &hook, &[json!({"id": "r0"}), json!({"id": "r1"})]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.most_at_once() == 0 {
        assert!(
            Instant::now() < deadline,
            "the combined delivery never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = uuid::Uuid::parse_str(&job).unwrap();
    assert_eq!(
        run_out_lease(&env, "jobs", id).await,
        1,
        "the combined delivery is under way, claimed"
    );
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    assert_eq!(sink.most_at_once(), 1, "never two deliveries at once");
    assert_eq!(sink.received().len(), 1, "one combined request");
    for e in events_of(&s, &job).await {
        assert_eq!(e["status"], "OK", "{e}");
        assert_eq!(e["attempt_count"], 1, "{e}");
    }
}

/// Postgres: a lock lets a test stall one row's writes while the rest of storage answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_runs_out_while_its_renewal_waits_is_renewed_not_taken_back() {
    // A delivery of 12 s under a 5 s lease. Another session locks the event's row for 7.5 s,
    // so the heartbeat's renewal waits behind the lock and, once through, writes a lease end
    // already past; the maintenance rescue then finds the lease run out while the delivery
    // is still under way. The event is in its worker's hands, so the rescue renews it instead
    // of freeing it for the idle second worker, which would deliver it again.
    let (env, s, sink) = two_workers_and_a_slow_sink(Db::Postgres, 5, 12).await;
    let job = push_through(&s, sink.url(), "id", vec![json!({"id": "r0"})]).await;
    let pool = sqlx::PgPool::connect(&env.pg.as_ref().unwrap().url)
        .await
        .unwrap();
    let mut lock = pool.begin().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let locked = sqlx::query("SELECT id FROM events WHERE entity_id = 'r0' FOR UPDATE")
        .fetch_all(&mut *lock)
        .await
        .unwrap();
    assert_eq!(locked.len(), 1);
    tokio::time::sleep(Duration::from_millis(7500)).await;
    lock.commit().await.unwrap();
    wait_for_job(&s, &job).await;
    let events = events_of(&s, &job).await;
    assert_eq!(events[0]["status"], "OK", "{events:?}");
    // A second delivery would have been under way beside the first (the sink counts each
    // when it answers).
    assert_eq!(sink.most_at_once(), 1, "never two deliveries at once");
    assert_eq!(sink.counts_by_id().get("r0"), Some(&1), "delivered once");
    assert_eq!(events[0]["attempt_count"], 1, "{events:?}");
    let metrics = s.metrics().await;
    assert!(
        !metrics.contains("wharf_claims_rescued_total{kind=\"events\"}"),
        "nothing was taken over: {metrics}"
    );
}

async fn a_destination_that_does_not_answer_leaves_workers_for_the_others(db: Db) {
    slow_destination_beside_a_fast_one(db, 512, false).await;
}

async fn a_destination_that_does_not_answer_leaves_workers_for_the_others_claimed_from_the_store(
    db: Db,
) {
    // No handoff: every event is claimed from the store, and the claim leaves out the streams
    // of a destination at its share.
    slow_destination_beside_a_fast_one(db, 0, false).await;
}

async fn a_slow_destination_holds_no_more_workers_than_its_share(db: Db) {
    slow_destination_beside_a_fast_one(db, 512, true).await;
}

async fn a_slow_destination_holds_no_more_workers_than_its_share_claimed_from_the_store(db: Db) {
    slow_destination_beside_a_fast_one(db, 0, true).await;
}

/// Eight workers, two for a slow destination: ten records to a destination that holds every
/// request unanswered, then four to one that answers at once. The four are delivered while
/// the ten still wait (without the shares, the ten would take every worker); once the slow
/// destination answers, each of the ten arrives once. A destination not yet known to be slow
/// holds at most six of the eight workers (three quarters); `known_slow` first lets it answer
/// one delivery in 1.2 s, after which it holds two at most.
async fn slow_destination_beside_a_fast_one(db: Db, handoff: usize, known_slow: bool) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.count = 8;
    config.workers.per_destination = 2;
    config.workers.poll_interval_ms = 50;
    config.workers.handoff = handoff;
    let s = Server::start(config).await;
    let slow = Sink::slow(Duration::from_millis(1200)).await;
    let fast = Sink::ok().await;
    let hook = s.webhook_stream("Slow", "id", &slow.url()).await;
    let push = |records: Value| {
        let req = s.client.post(s.url(&hook)).json(&records);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::ACCEPTED);
            res.json::<Value>().await.unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    if known_slow {
        let job = push(json!([{"id": "warm"}])).await;
        wait_for_job(&s, &job).await;
    }
    slow.pause(true);
    let slow_job = push((0..10).map(|i| json!({"id": format!("s{i}")})).collect()).await;
    let fast_records = (0..4).map(|i| json!({"id": format!("f{i}")})).collect();
    let fast_job = push_through(&s, fast.url(), "id", fast_records).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, j) = s.get(&format!("/jobs/{fast_job}")).await;
        if j["status"] == "FINISHED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fast destination's job waited behind the slow one: {j}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = fast.counts_by_id();
    for i in 0..4 {
        assert_eq!(counts.get(&format!("f{i}")), Some(&1), "{counts:?}");
    }
    let answered = usize::from(known_slow);
    assert_eq!(
        slow.counts_by_id().len(),
        answered,
        "the slow one has answered nothing more yet"
    );
    let (_, j) = s.get(&format!("/jobs/{slow_job}")).await;
    assert_eq!(j["status"], "PROCESSING", "{j}");
    // Let every worker the destination may have reach it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.pause(false);
    let j = wait_for_job(&s, &slow_job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = slow.counts_by_id();
    for i in 0..10 {
        assert_eq!(counts.get(&format!("s{i}")), Some(&1), "{counts:?}");
    }
    for e in events_of(&s, &slow_job).await {
        assert_eq!(e["status"], "OK", "{e}");
        assert_eq!(e["attempt_count"], 1, "{e}");
    }
    assert_eq!(
        slow.most_at_once(),
        if known_slow { 2 } else { 6 },
        "the deliveries the slow destination had at once"
    );
}

async fn waiting_received_events_of_an_aborted_job_are_not_delivered(db: Db) {
    waiting_events_of_an_aborted_job_are_not_delivered(db, 512).await;
}

async fn spilled_events_of_an_aborted_job_are_not_delivered(db: Db) {
    // Spilled: an aborted event is not read back.
    waiting_events_of_an_aborted_job_are_not_delivered(db, 1).await;
}

async fn waiting_events_of_an_aborted_job_are_not_delivered(db: Db, handoff: usize) {
    let sink = Sink::slow(Duration::from_secs(2)).await;
    let (_env, s, job) = one_worker_push_kept(db, 300, &sink, 3, handoff).await;
    // One event is being delivered, two wait for the worker; the job is aborted meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events_of(&s, &job)
        .await
        .iter()
        .any(|e| e["status"] == "NEW" && e["is_running"] == true)
    {
        assert!(Instant::now() < deadline, "nothing held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, out) = s.post(&format!("/jobs/{job}/abort"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // Long enough for the worker to finish the first delivery and reach the others.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        sink.counts_by_id().len() <= 1,
        "only a delivery already under way may reach the destination: {:?}",
        sink.counts_by_id()
    );
    for e in events_of(&s, &job).await {
        assert_eq!(e["status"], "ABORTED", "{e}");
    }
}
