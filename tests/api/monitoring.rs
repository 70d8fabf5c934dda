//! Monitoring through the API: the error catalogue and the summary report.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_stores;
use crate::common::{fresh, Db};

async fn the_error_catalogue_says_what_each_code_means_and_what_to_do(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, body) = s.get("/error-codes").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let codes = body.as_array().expect("an array of codes");
    let names: Vec<&str> = codes.iter().map(|c| c["code"].as_str().unwrap()).collect();
    for expected in [
        "TIMEOUT",
        "UNAUTHORIZED",
        "CONNECTION_ERROR",
        "NOT_FOUND",
        "DUPLICATE",
        "RATE_LIMITED",
        "INVALID_SCHEMA",
        "TEMPLATE_ERROR",
        "INVALID_API_RESPONSE",
        "UNKNOWN",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for c in codes {
        for field in ["title", "description", "action"] {
            assert!(
                c[field].as_str().is_some_and(|t| !t.is_empty()),
                "{field} of {c}"
            );
        }
        assert!(
            matches!(c["level"].as_str(), Some("success" | "warning" | "error")),
            "{c}"
        );
    }
    let timeout = codes.iter().find(|c| c["code"] == "TIMEOUT").unwrap();
    assert_eq!(timeout["level"], "warning");
    assert_eq!(timeout["title"], "Timed out");
    // The catalogue is for signed-in readers, like the rest of the API.
    let res = s
        .client
        .get(s.url("/api/v1/error-codes"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let _: Value = res.json().await.unwrap();
}

async fn the_summary_matches_counts_made_by_hand(db: Db) {
    use crate::engine::{fetch_stream, run, upload_and_wait, wait_for_job};
    use crate::peers::{broken_source, Sink};
    use serde_json::json;
    use std::sync::Arc;

    let (_env, s) = crate::engine::start(db).await;
    let ok = Sink::ok().await;
    let refusing = Sink::scripted(Arc::new(|_: &Value, _| {
        (StatusCode::UNPROCESSABLE_ENTITY, Vec::new())
    }))
    .await;
    let broken = broken_source().await;
    let retry = json!({"schedule_seconds": [0], "timeout_seconds": 5});
    let good = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        &ok.url(),
        retry.clone(),
        false,
    )
    .await;
    let bad = fetch_stream(
        &s,
        &format!("http://{broken}/orders"),
        &refusing.url(),
        retry,
        false,
    )
    .await;
    let records = |n: usize| {
        json!((0..n)
            .map(|i| json!({"id": i, "name": format!("#{i}")}))
            .collect::<Vec<_>>())
    };
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    upload_and_wait(&s, &good, records(4)).await;
    upload_and_wait(&s, &good, records(3)).await;
    upload_and_wait(&s, &bad, records(3)).await;
    let job = run(&s, &bad).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FAILED");

    let (status, report) = s.get("/reports/summary").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let totals = &report["totals"];
    assert_eq!(
        totals["events"],
        json!({"OK": 7, "ERROR": 0, "FAILED": 3, "ABORTED": 0, "pending": 0})
    );
    assert_eq!(
        totals["jobs"],
        json!({"FINISHED": 2, "FINISHED_WITH_ISSUES": 1, "FAILED": 1})
    );
    assert_eq!(totals["success_rate"], 0.7);
    let streams = report["streams"].as_array().unwrap();
    let of = |id: &str| streams.iter().find(|r| r["stream_id"] == id).unwrap();
    let g = of(&good);
    assert_eq!(g["events"]["OK"], 7);
    assert_eq!(g["jobs"], json!({"FINISHED": 2}));
    assert_eq!(g["success_rate"], 1.0);
    assert!(g["avg_delivery_ms"].as_f64().unwrap() > 0.0, "{g}");
    let p95 = g["p95_delivery_ms"].as_f64().unwrap();
    assert!(
        p95 >= g["avg_delivery_ms"].as_f64().unwrap() || p95 >= 10.0,
        "{g}"
    );
    assert!(g["last_ok_at"].is_string());
    let b = of(&bad);
    assert_eq!(b["events"]["FAILED"], 3);
    assert_eq!(b["success_rate"], 0.0);
    assert!(b["avg_delivery_ms"].is_null() && b["last_ok_at"].is_null());
    assert_eq!(b["jobs"], json!({"FINISHED_WITH_ISSUES": 1, "FAILED": 1}));
    let types = report["data_types"].as_array().unwrap();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0]["data_type"], "sales_order");
    assert_eq!(types[0]["events"]["OK"], 7);

    // One stream, and ranges.
    let (_, one) = s.get(&format!("/reports/summary?stream_id={bad}")).await;
    assert_eq!(one["streams"].as_array().unwrap().len(), 1);
    assert_eq!(one["totals"]["events"]["OK"], 0);
    let after = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let later = (chrono::Utc::now() + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, empty) = s
        .get(&format!("/reports/summary?from={after}&to={later}"))
        .await;
    assert_eq!(empty["totals"]["events"]["OK"], 0);
    assert_eq!(
        empty["streams"].as_array().unwrap().len(),
        2,
        "streams are listed with zeros"
    );
    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, all) = s.get(&format!("/reports/summary?from={since}")).await;
    assert_eq!(all["totals"]["events"]["OK"], 7);
    let (status, problem) = s
        .get(&format!("/reports/summary?from={later}&to={after}"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = s
        .get(&format!(
            "/reports/summary?stream_id={}",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn metrics_show_waiting_work_recent_outcomes_attempts_and_alerts(db: Db) {
    use crate::engine::{fetch_stream, upload_and_wait};
    use crate::peers::Sink;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    let (_env, s) = crate::engine::start(db).await;
    let refusing = Sink::scripted(Arc::new(|_: &Value, _| {
        (StatusCode::UNPROCESSABLE_ENTITY, Vec::new())
    }))
    .await;
    let stalled = Sink::ok().await;
    stalled.pause(true);
    let retry = json!({"schedule_seconds": [0], "timeout_seconds": 30});
    let bad = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        &refusing.url(),
        retry.clone(),
        false,
    )
    .await;
    let slow = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        &stalled.url(),
        retry,
        false,
    )
    .await;
    // Its events wait unclaimed, due in an hour (the stalled stream's are claimed, in flight):
    // the figures count both.
    let later = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        &stalled.url(),
        json!({"schedule_seconds": [3600], "timeout_seconds": 30}),
        false,
    )
    .await;
    let records =
        json!([{"id": "1", "name": "#1"}, {"id": "2", "name": "#2"}, {"id": "3", "name": "#3"}]);
    let (status, _) = crate::common::send(
        s.req(reqwest::Method::POST, &format!("/streams/{later}/uploads"))
            .header("content-type", "application/json")
            .body(json!([{"id": "4", "name": "#4"}, {"id": "5", "name": "#5"}]).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    upload_and_wait(&s, &bad, records.clone()).await;
    let (status, _) = crate::common::send(
        s.req(reqwest::Method::POST, &format!("/streams/{slow}/uploads"))
            .header("content-type", "application/json")
            .body(records.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = s.metrics().await;
    assert!(
        text.contains(&format!(
            "wharf_events{{stream_id=\"{bad}\",status=\"FAILED\"}} 3"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "wharf_delivery_attempts_total{outcome=\"FAILED\",error_code=\"INVALID_SCHEMA\"} 3"
        ),
        "{text}"
    );
    let waiting: i64 = text
        .lines()
        .filter(|l| l.starts_with(&format!("wharf_events{{stream_id=\"{slow}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(waiting, 3, "{text}");
    assert!(
        text.contains(&format!(
            "wharf_events{{stream_id=\"{later}\",status=\"TRANSFORMED\"}} 2"
        )),
        "{text}"
    );
    let age_line = text
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "wharf_oldest_pending_event_age_seconds{{stream_id=\"{slow}\"}}"
            ))
        })
        .unwrap_or_else(|| panic!("{text}"));
    let age: f64 = age_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age >= 1.0, "{age_line}");
    assert!(text.contains("wharf_alerts{status=\"open\"} 0"), "{text}");
    assert!(text.contains("wharf_notifications_pending 0"), "{text}");
    assert!(text.contains("wharf_store_figures_up 1"), "{text}");
    stalled.pause(false);
}

async fn lists_export_every_matching_row_as_streamed_formula_safe_csv(db: Db) {
    use crate::engine::{fetch_stream, upload_and_wait};
    use serde_json::json;

    let (_env, s) = crate::engine::start(db).await;
    // Test mode: transformed, never posted; every event ends at once.
    let stream = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        "http://127.0.0.1:9/in",
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        true,
    )
    .await;
    let mut records: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("{i}"), "name": format!("#{i}"), "email": format!("buyer{i}@example.com")}))
        .collect();
    records[7] =
        json!({"id": "7", "name": "=HYPERLINK(\"http://x\")", "email": "needle@example.com"});
    let (job, _) = upload_and_wait(&s, &stream, json!(records)).await;
    let job_id = job["id"].as_str().unwrap();

    let res = s
        .req(
            reqwest::Method::GET,
            &format!("/events?job_id={job_id}&limit=5"),
        )
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        res.headers().get("content-length").is_none(),
        "streamed, not built whole"
    );
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..4], ["id", "stream_id", "job_id", "status"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 10_000, "every row, not one page");
    let entity = header.iter().position(|h| h == "entity_id").unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_000, "no row twice");
    let risky = rows
        .iter()
        .find(|r| r[entity].contains("HYPERLINK"))
        .unwrap();
    assert_eq!(&risky[entity], "'=HYPERLINK(\"http://x\")");
    let payload = header.iter().position(|h| h == "payload_in").unwrap();
    assert!(risky[payload].contains("needle@example.com"));

    // Search by text in the payload.
    let (status, found) = s.get("/events?payload=NEEDLE@example").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["entity_id"], "=HYPERLINK(\"http://x\")");

    // The other lists answer CSV too, with a header row even when nothing matches.
    for path in [
        format!("/jobs?stream_id={stream}"),
        "/entities?data_type=sales_order".to_string(),
        format!("/events/{}/attempts", items[0]["id"].as_str().unwrap()),
        "/alerts".to_string(),
    ] {
        let res = s
            .req(reqwest::Method::GET, &path)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let text = res.text().await.unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(first.starts_with("id,"), "{path}: {first}");
        if path.starts_with("/jobs") {
            assert_eq!(text.lines().count(), 2, "{text}");
        }
        if path.starts_with("/entities") {
            assert_eq!(text.lines().count(), 10_001);
        }
    }
    // A bad filter is still a problem, not a CSV.
    let res = s
        .req(reqwest::Method::GET, "/events?status=NOPE")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn lists_sort_by_created_updated_or_finished_and_page_in_that_order(db: Db) {
    use crate::engine::{fetch_stream, upload_and_wait};
    use crate::peers::Sink;
    use serde_json::json;
    use std::sync::Arc;

    let (_env, s) = crate::engine::start(db).await;
    let refusing = Sink::scripted(Arc::new(|_: &Value, _| {
        (StatusCode::UNPROCESSABLE_ENTITY, Vec::new())
    }))
    .await;
    let retry = json!({"schedule_seconds": [0], "timeout_seconds": 5});
    let stream = fetch_stream(
        &s,
        "http://127.0.0.1:9/orders",
        &refusing.url(),
        retry,
        false,
    )
    .await;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"id": "1", "name": "#1"}, {"id": "2", "name": "#2"}, {"id": "3", "name": "#3"}]),
    )
    .await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // The oldest event changes last: first by update time, last by creation.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, _) = s
        .patch(&format!("/events/{}", ids[0]), json!({"ignored": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = Vec::new();
    let mut path = format!("/events?stream_id={stream}&sort=updated&limit=1");
    loop {
        let (status, page) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert!(
                    c.contains('~'),
                    "a sorted list's cursor carries the time: {c}"
                );
                path = format!("/events?stream_id={stream}&sort=updated&limit=1&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "every event once: {seen:?}");
    assert_eq!(seen[0], json!(ids[0]), "the latest change first");
    let (_, by_created) = s.get(&format!("/events?stream_id={stream}&limit=1")).await;
    assert_ne!(by_created["items"][0]["id"], json!(ids[0]));
    let (_, asc) = s
        .get(&format!(
            "/events?stream_id={stream}&sort=updated&order=asc"
        ))
        .await;
    assert_eq!(asc["items"][2]["id"], json!(ids[0]));
    // Jobs by finish time list finished jobs only.
    let (_, finished) = s
        .get(&format!("/jobs?stream_id={stream}&sort=finished"))
        .await;
    assert_eq!(finished["items"].as_array().unwrap().len(), 1);
    assert!(finished["items"][0]["finished_at"].is_string());
    let (status, problem) = s.get("/events?sort=colour").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(crate::common::error_fields(&problem), ["sort"]);
    // A cursor of one order cannot page another.
    let (_, two) = s
        .get(&format!("/events?stream_id={stream}&sort=updated&limit=1"))
        .await;
    let sorted = two["next_cursor"].as_str().unwrap();
    let (status, _) = s
        .get(&format!("/events?stream_id={stream}&cursor={sorted}"))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a sorted cursor in the default order"
    );
    let (status, _) = s
        .get(&format!(
            "/jobs?stream_id={stream}&sort=finished&cursor={sorted}"
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an updated cursor for finished"
    );
    // A cursor from the id order cannot page a sorted list.
    let (_, plain) = s.get(&format!("/events?stream_id={stream}&limit=1")).await;
    let c = plain["next_cursor"].as_str().unwrap();
    let (status, problem) = s
        .get(&format!(
            "/events?stream_id={stream}&sort=updated&cursor={c}"
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // Entities by their last message.
    let (_, entities) = s.get("/entities?message=answered").await;
    assert_eq!(entities["items"].as_array().unwrap().len(), 3, "{entities}");
    let (_, none) = s.get("/entities?message=nothing-like-this").await;
    assert!(none["items"].as_array().unwrap().is_empty());
}

both_stores!(
    the_error_catalogue_says_what_each_code_means_and_what_to_do,
    the_summary_matches_counts_made_by_hand,
    metrics_show_waiting_work_recent_outcomes_attempts_and_alerts,
    lists_export_every_matching_row_as_streamed_formula_safe_csv,
    lists_sort_by_created_updated_or_finished_and_page_in_that_order,
);
