//! Replication, abort, uploads and events created by hand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{send, Db};
use crate::engine::{events_of, fetch_stream, run, start, wait_for_job};
use crate::peers::{paginated_source, Sink};

/// A sink that answers 500 until `recovered` is set.
async fn flaky_sink() -> (Sink, Arc<AtomicBool>) {
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = recovered.clone();
    let sink = Sink::scripted(Arc::new(move |_: &Value, _| {
        if flag.load(Ordering::SeqCst) {
            (StatusCode::OK, vec![])
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, vec![])
        }
    }))
    .await;
    (sink, recovered)
}

async fn failed_events_are_replicated_to_ok(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(4, 10).await;
    let (sink, recovered) = flaky_sink().await;
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        false,
    )
    .await;
    let job = run(&s, &stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES");
    assert_eq!(j["counts"]["FAILED"], 4);

    // Editors and viewers cannot replicate.
    let editor = s.token_with_role("editor").await;
    let (status, _) = send(
        s.req_as(&editor, Method::POST, "/events/replicate")
            .json(&json!({"filter": {"status": "FAILED"}})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, p) = s.post("/events/replicate", json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "replicating everything is refused: {p}"
    );

    recovered.store(true, Ordering::SeqCst);
    let (status, out) = s
        .post(
            "/events/replicate",
            json!({"filter": {"status": "FAILED", "stream_id": stream}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["replicated"], 4);
    let replica_job = out["job_ids"][0].as_str().unwrap().to_string();
    let r = wait_for_job(&s, &replica_job).await;
    assert_eq!(r["status"], "FINISHED", "{r}");
    assert_eq!(r["trigger"], "replicate");
    assert_eq!(r["original_job_id"], job.as_str());

    let originals = events_of(&s, &job).await;
    let replicas = events_of(&s, &replica_job).await;
    assert!(
        originals.iter().all(|e| e["status"] == "FAILED"),
        "originals never change"
    );
    for rep in &replicas {
        assert_eq!(rep["status"], "OK");
        let orig = originals
            .iter()
            .find(|o| o["id"] == rep["original_event_id"])
            .expect("points at its original");
        assert_eq!(orig["payload_in"], rep["payload_in"]);
        assert_eq!(orig["entity_id"], rep["entity_id"]);
    }
    // Each order was delivered once successfully (after 4 refused tries).
    assert_eq!(sink.received().len(), 8);
}

async fn jobs_and_events_replicate_with_edits(db: Db) {
    let (_env, s) = start(db).await;
    let source = paginated_source(2, 10).await;
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
    wait_for_job(&s, &job).await;

    let (status, out) = s.post(&format!("/jobs/{job}/replicate"), json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let again = wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    assert_eq!(again["counts"]["OK"], 2);

    let (status, out) = s
        .post(
            &format!("/jobs/{job}/replicate"),
            json!({"payload": [{"id": "edited", "name": "#E1"}], "settings": {"x": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let edited = wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    assert_eq!(edited["counts"]["OK"], 1);
    assert_eq!(edited["settings"], json!({"x": 1}));

    let events = events_of(&s, &job).await;
    let first = events[0]["id"].as_str().unwrap();
    let (status, out) = s
        .post(
            &format!("/events/{first}/replicate"),
            json!({"payload": {"id": "fixed", "name": "#F1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let event_id = out["event_id"].as_str().unwrap();
    wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    let (_, replica) = s.get(&format!("/events/{event_id}")).await;
    assert_eq!(replica["status"], "OK");
    assert_eq!(replica["original_event_id"], first);
    assert_eq!(replica["entity_id"], "#F1");

    let counts = sink.counts_by_id();
    assert_eq!(counts["edited"], 1);
    assert_eq!(counts["fixed"], 1);
    assert_eq!(counts["1000"], 2, "the original run and the plain replica");
}

async fn uploads_and_hand_made_events_are_delivered(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let stream = fetch_stream(
        &s,
        "http://127.0.0.1:9/unused",
        &sink.url(),
        json!(null),
        false,
    )
    .await;

    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "text/csv")
            .body("id,name,sku\n1,#C1,A\n2,#C2,\"B,2\"\n3,#C3,C\n"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["event_ids"].as_array().unwrap().len(), 3);
    let j = wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    assert_eq!(j["trigger"], "upload");
    assert_eq!(j["counts"]["OK"], 3);
    let bodies: Vec<Value> = sink.received().into_iter().map(|r| r.body).collect();
    assert!(
        bodies.contains(&json!({"id": "2", "name": "#C2", "sku": "B,2"})),
        "{bodies:?}"
    );

    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(json!([{"id": "j1", "name": "#J1"}, {"id": "j2", "name": "#J2"}]).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    wait_for_job(&s, out["job_id"].as_str().unwrap()).await;

    for (ct, body, expected) in [
        (
            "application/xml",
            "<orders/>",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("application/json", "[]", StatusCode::UNPROCESSABLE_ENTITY),
        // A bare scalar or null is no record, nor is an array element that is not an object.
        ("application/json", "null", StatusCode::UNPROCESSABLE_ENTITY),
        ("application/json", "42", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "application/json",
            "\"order\"",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            "[{\"id\": 1}, null]",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("application/json", "[{", StatusCode::BAD_REQUEST),
        ("text/csv", "id,name\n1\n", StatusCode::BAD_REQUEST),
    ] {
        let (status, p) = send(
            s.req(Method::POST, &format!("/streams/{stream}/uploads"))
                .header("content-type", ct)
                .body(body),
        )
        .await;
        assert_eq!(status, expected, "{ct} {body}: {p}");
    }

    let (status, out) = s
        .post(
            "/events",
            json!({"stream_id": stream, "payloads": [{"id": "h1", "name": "#H1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    wait_for_job(&s, out["job_id"].as_str().unwrap()).await;
    assert_eq!(sink.counts_by_id()["h1"], 1);
    let (status, p) = s
        .post(
            "/events",
            json!({"stream_id": stream, "payloads": [{"id": "h2"}, 7]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "payloads[1]", "{p}");
    let (status, _) = s
        .post("/events", json!({"stream_id": stream, "payloads": []}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .post(
            "/events",
            json!({"stream_id": "01900000-0000-7000-8000-00000000ffff", "payloads": [{}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Ignoring hides an event from issue reports without changing it.
    let id = out["event_ids"][0].as_str().unwrap();
    let (status, e) = s
        .patch(&format!("/events/{id}"), json!({"ignored": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e["ignored"], true);
    assert_eq!(e["status"], "OK");
    let (_, page) = s.get("/events?ignored=true").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

/// A job of `n` records whose first delivery failed; the second attempt is an hour away, so
/// every event waits, TRANSFORMED. Returns the sink (keep it alive), the job and its events.
async fn job_waiting_for_retry(s: &crate::common::Server, n: usize) -> (Sink, String, Vec<Value>) {
    let source = paginated_source(n, n).await;
    let (sink, _) = flaky_sink().await;
    let stream = fetch_stream(
        s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0, 3600], "timeout_seconds": 5}),
        false,
    )
    .await;
    let job = run(s, &stream).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let evs = events_of(s, &job).await;
        if evs.len() == n
            && evs
                .iter()
                .all(|e| e["attempt_count"] == 1 && e["is_running"] == false)
        {
            return (sink, job, evs);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events never waited for a retry: {evs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn aborting_stops_events_and_jobs(db: Db) {
    let (_env, s) = start(db).await;
    let (_sink, job, events) = job_waiting_for_retry(&s, 3).await;
    let waiting = &events[0];
    assert_eq!(waiting["status"], "TRANSFORMED");
    assert_eq!(waiting["retries_remaining"], 1);
    assert!(waiting["next_attempt_at"].is_string());

    let id = waiting["id"].as_str().unwrap();
    let (status, e) = s.post(&format!("/events/{id}/abort"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "ABORTED");
    assert_eq!(e["error_code"], "ABORTED");
    let (status, _) = s.post(&format!("/events/{id}/abort"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, out) = s.post(&format!("/jobs/{job}/abort"), json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["aborted_events"], 2);
    let (_, j) = s.get(&format!("/jobs/{job}")).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES");
    assert_eq!(j["counts"]["ABORTED"], 3);
    let (status, _) = s.post(&format!("/jobs/{job}/abort"), json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// Many people (or scripts) aborting events at once: each abort reads then writes, and none
/// may be refused as "storage unavailable" because another one committed in between.
async fn concurrent_aborts_all_succeed(db: Db) {
    let (_env, s) = start(db).await;
    let (_sink, job, events) = job_waiting_for_retry(&s, 24).await;
    let mut aborts = tokio::task::JoinSet::new();
    for e in &events {
        let req = s.req(
            Method::POST,
            &format!("/events/{}/abort", e["id"].as_str().unwrap()),
        );
        aborts.spawn(send(req));
    }
    for (status, e) in aborts.join_all().await {
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "ABORTED");
    }
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["counts"]["ABORTED"], 24, "{j}");
}

/// A bulk replication is one action: when one of its streams cannot take work, no stream's
/// replicas are queued (the active stream comes first, so a replica per commit would show).
async fn a_bulk_replication_queues_all_or_nothing(db: Db) {
    let (_env, s) = start(db).await;
    let (_sink_a, job_a, _) = job_waiting_for_retry(&s, 2).await;
    let (_sink_b, job_b, _) = job_waiting_for_retry(&s, 2).await;
    for job in [&job_a, &job_b] {
        let (status, out) = s.post(&format!("/jobs/{job}/abort"), json!(null)).await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    let (_, b) = s.get(&format!("/jobs/{job_b}")).await;
    let stream_b = b["stream_id"].as_str().unwrap();
    let (status, out) = s
        .patch(&format!("/streams/{stream_b}"), json!({"active": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");

    let (status, out) = s
        .post(
            "/events/replicate",
            json!({"filter": {"status": "ABORTED"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("inactive"),
        "{out}"
    );
    let (_, page) = s.get("/jobs?trigger=replicate").await;
    assert_eq!(page["items"], json!([]), "nothing was queued: {page}");
}

both_stores!(
    a_bulk_replication_queues_all_or_nothing,
    failed_events_are_replicated_to_ok,
    jobs_and_events_replicate_with_edits,
    uploads_and_hand_made_events_are_delivered,
    aborting_stops_events_and_jobs,
    concurrent_aborts_all_succeed,
);
