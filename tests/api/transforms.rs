//! Transformations through the API: validation on save, dry runs, the public library, and
//! the sandbox failing only the offending event while the others are delivered.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{send, Db, Server};
use crate::engine::{events_of, start, wait_for_job};
use crate::peers::Sink;

const SALES_ORDER: &str = "01900000-0000-7000-8000-000000000002";
const ORDER_LINES_CSV: &str = "01900000-0000-7000-8000-000000000003";
const PEOPLEVOX_XML: &str = "01900000-0000-7000-8000-000000000004";
const DEAR_FULFILLMENT: &str = "01900000-0000-7000-8000-000000000005";
const STOCK_CSV: &str = "01900000-0000-7000-8000-000000000006";

const ORDER: &str = include_str!("../../src/transform/library/samples/shopify_order.json");
const PRODUCT: &str = include_str!("../../src/transform/library/samples/shopify_product.json");
const SALE: &str = include_str!("../../src/transform/library/samples/dear_sale.json");

fn sample(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

async fn private(s: &Server, language: &str, format: &str, code: &str) -> String {
    let t = s
        .create(
            "/transformations",
            json!({"title": "Custom", "data_type": "sales_order", "language": language,
                "format": format, "code": code}),
        )
        .await;
    t["id"].as_str().unwrap().to_string()
}

async fn dry_run(s: &Server, id: &str, payload: Value, settings: Value) -> (StatusCode, Value) {
    s.post(
        &format!("/transformations/{id}/test"),
        json!({"payload": payload, "settings": settings}),
    )
    .await
}

async fn syntax_errors_are_refused_on_save(db: Db) {
    let (_env, s) = start(db).await;
    let (status, p) = s
        .post(
            "/transformations",
            json!({"title": "Broken", "data_type": "sales_order", "language": "javascript",
                "format": "json", "code": "function transform(r) {\n  return {a: };\n}"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "code");
    assert_eq!(p["errors"][0]["line"], 2, "{p}");
    assert!(p["errors"][0]["column"].as_u64().is_some(), "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("SyntaxError"),
        "{p}"
    );

    let (status, p) = s
        .post(
            "/transformations",
            json!({"title": "No function", "data_type": "sales_order", "language": "javascript",
                "format": "json", "code": "const transform = 5;"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("function transform"));

    let (status, p) = s
        .post(
            "/transformations",
            json!({"title": "Loops at load", "data_type": "sales_order", "language": "javascript",
                "format": "json", "code": "while (true) {}\nfunction transform(r) { return r; }"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("TRANSFORM_TIMEOUT"),
        "{p}"
    );

    let (status, p) = s
        .post(
            "/transformations",
            json!({"title": "Bad template", "data_type": "sales_order", "language": "template",
                "format": "csv", "code": "a,b\n{% for x in record.items %}\n{{ x.a }},{{ x.b }\n{% endfor %}"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["line"], 3, "{p}");
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("TEMPLATE_ERROR"),
        "{p}"
    );

    // An update to broken code is refused and the saved code stays as it was.
    let id = private(
        &s,
        "javascript",
        "json",
        "function transform(r) { return r; }",
    )
    .await;
    let (status, p) = s
        .patch(
            &format!("/transformations/{id}"),
            json!({"code": "function transform(r) { return r;"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (_, t) = s.get(&format!("/transformations/{id}")).await;
    assert_eq!(t["code"], "function transform(r) { return r; }");
}

async fn dry_runs_return_output_logs_or_the_error(db: Db) {
    let (_env, s) = start(db).await;
    // The org's lookup table is seen by the dry run.
    s.create(
        "/lookup-tables",
        json!({"name": "shipping_methods", "description": "Shopify title to carrier service",
            "entries": {"Royal Mail Tracked 24": "RM24"}}),
    )
    .await;

    let (status, out) = dry_run(&s, SALES_ORDER, sample(ORDER), json!({"warehouse": "LON1"})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"]["order_number"], "1042");
    assert_eq!(out["output"]["warehouse"], "LON1");
    assert_eq!(out["output"]["shipping"]["service"], "RM24");
    assert_eq!(out["output"]["lines"][0]["unit_price"], "20.00");
    assert_eq!(out["outputs"], 1);
    assert_eq!(out["content_type"], "application/json");
    assert_eq!(out["logs"], json!(["order #1042 with 2 lines"]));
    assert!(out["duration_ms"].as_f64().unwrap() >= 0.0);

    let (status, out) = dry_run(&s, ORDER_LINES_CSV, sample(ORDER), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["content_type"], "text/csv");
    let csv = out["output"].as_str().unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains(",\"Canvas Tote \"\"Harbour\"\"\","), "{csv}");

    let (status, out) = dry_run(&s, PEOPLEVOX_XML, sample(ORDER), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["content_type"], "application/xml");
    assert!(out["output"]
        .as_str()
        .unwrap()
        .contains("<ServiceType>RM24</ServiceType>"));

    let (status, out) = dry_run(&s, DEAR_FULFILLMENT, sample(SALE), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outputs"], 2);
    assert_eq!(
        out["output"][1]["fulfillment"]["tracking_info"]["company"],
        "DPD"
    );

    let (status, out) = dry_run(&s, STOCK_CSV, sample(PRODUCT), json!({"location": "LON1"})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(out["output"]
        .as_str()
        .unwrap()
        .contains("TEE-BLU-S,5012345678900,"));

    // Skips say why; failures are 422 with the code, the position and the logs so far.
    let mut cancelled = sample(ORDER);
    cancelled["cancelled_at"] = json!("2024-07-02T08:00:00Z");
    let (status, out) = dry_run(&s, SALES_ORDER, cancelled, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], Value::Null);
    assert_eq!(out["skipped"], "order #1042 is cancelled");
    assert_eq!(out["outputs"], 0);

    let id = private(
        &s,
        "javascript",
        "json",
        "function transform(r, ctx) {\n  ctx.log('checking', r.id);\n  if (!r.sku) throw new Error('no sku on ' + r.id);\n  return r;\n}",
    )
    .await;
    let (status, p) = dry_run(&s, &id, json!({"id": 7}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["error_code"], "TRANSFORM_ERROR");
    assert_eq!(p["line"], 3);
    assert_eq!(p["logs"], json!(["checking 7"]));
    assert!(p["detail"].as_str().unwrap().contains("no sku on 7"), "{p}");

    let id = private(
        &s,
        "javascript",
        "json",
        "function transform(r) { for (;;) {} }",
    )
    .await;
    let (status, p) = dry_run(&s, &id, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["error_code"], "TRANSFORM_TIMEOUT");

    let id = private(
        &s,
        "javascript",
        "json",
        "function transform(r, ctx) { return {c: ctx.lookup('carriers', r.c)}; }",
    )
    .await;
    let (status, p) = dry_run(&s, &id, json!({"c": "UPS"}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["error_code"], "LOOKUP_NOT_FOUND");

    // Bad requests: no payload, settings not an object, unknown transformation.
    let (status, _) = s
        .post(&format!("/transformations/{id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = dry_run(&s, &id, json!({}), json!([1])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = dry_run(
        &s,
        "01900000-0000-7000-8000-0000000000ff",
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing was stored by any of it.
    let (_, jobs) = s.get("/jobs").await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 0);
    let (_, events) = s.get("/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 0);
}

/// One upload job whose records each hit a different sandbox case.
const SANDBOXED: &str = r#"
function depth(n) { return depth(n + 1) + 1; }
function transform(r, ctx) {
  ctx.log("record", r.id);
  switch (r.kind) {
    case "loop": for (;;) {}
    case "bomb": { const a = []; for (;;) a.push("x".repeat(4096) + a.length); }
    case "deep": return depth(0);
    case "throw": throw new TypeError("cannot read the order's lines");
    case "huge": return { id: r.id, blob: "y".repeat(300000) };
    case "skip": return ctx.skip("a test order");
    case "split": return [{ id: r.id + "-a", warehouse: ctx.settings.warehouse }, { id: r.id + "-b", warehouse: ctx.settings.warehouse }];
    case "lookup": return { id: r.id, carrier: ctx.lookup("carriers", r.carrier) };
    default: return { id: r.id, warehouse: ctx.settings.warehouse, job: ctx.job.trigger };
  }
}
"#;

async fn upload_stream(s: &Server, transformation: &str, sink: &Sink, settings: Value) -> String {
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "http", "function": "http.fetch",
            "trigger": "manual", "params": {"url": "http://127.0.0.1:9/unused"}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
            "params": {"url": sink.url()}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Transformed", "data_type": "sales_order",
            "source_id": source["id"], "transformation_id": transformation,
            "destination_id": destination["id"], "settings": settings}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

async fn upload(s: &Server, stream: &str, records: Value) -> String {
    let (status, out) = send(
        s.req(Method::POST, &format!("/streams/{stream}/uploads"))
            .header("content-type", "application/json")
            .body(records.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    out["job_id"].as_str().unwrap().to_string()
}

async fn the_sandbox_fails_only_the_offending_event(db: Db) {
    let (env, s) = {
        let env = crate::common::Env::new(db).await;
        let mut config = env.config();
        config.workers.poll_interval_ms = 50;
        config.transform.max_output_kib = 256;
        config.transform.memory_mib = 16;
        // The limit is wall-clock time: generous enough that on a loaded machine the memory
        // bomb reaches its memory limit first, while the infinite loop still runs out of time.
        config.transform.timeout_ms = 1500;
        let server = Server::start(config).await;
        (env, server)
    };
    let _ = &env;
    let sink = Sink::ok().await;
    let id = private(&s, "javascript", "json", SANDBOXED).await;
    let stream = upload_stream(&s, &id, &sink, json!({"warehouse": "LON1"})).await;
    s.create(
        "/lookup-tables",
        json!({"name": "carriers", "description": "carrier names", "entries": {"Royal Mail": "RM"}}),
    )
    .await;
    let records = json!([
        {"id": "ok1"}, {"id": "loop", "kind": "loop"}, {"id": "bomb", "kind": "bomb"},
        {"id": "deep", "kind": "deep"}, {"id": "throw", "kind": "throw"}, {"id": "huge", "kind": "huge"},
        {"id": "skip", "kind": "skip"}, {"id": "split", "kind": "split"},
        {"id": "known", "kind": "lookup", "carrier": "Royal Mail"},
        {"id": "unknown", "kind": "lookup", "carrier": "Pigeon"}, {"id": "ok2"}
    ]);
    let job = upload(&s, &stream, records).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{j}");

    let events = events_of(&s, &job).await;
    let by_input = |id: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["payload_in"]["id"] == id)
            .cloned()
            .collect()
    };
    let one = |id: &str| by_input(id).pop().unwrap();
    for (id, code) in [
        ("loop", "TRANSFORM_TIMEOUT"),
        ("bomb", "TRANSFORM_MEMORY"),
        ("deep", "TRANSFORM_MEMORY"),
        ("throw", "TRANSFORM_ERROR"),
        ("huge", "OUTPUT_TOO_LARGE"),
        ("unknown", "LOOKUP_NOT_FOUND"),
    ] {
        let e = one(id);
        assert_eq!(e["status"], "ERROR", "{id}: {e}");
        assert_eq!(e["error_code"], code, "{id}: {e}");
        assert_eq!(e["level"], "error");
        assert_eq!(e["logs"], json!([format!("record {id}")]), "{id}: {e}");
    }
    assert!(
        one("throw")["message"]
            .as_str()
            .unwrap()
            .contains("TypeError: cannot read the order's lines (line 9"),
        "{}",
        one("throw")
    );
    assert!(one("unknown")["message"]
        .as_str()
        .unwrap()
        .contains("`Pigeon`"));

    let skipped = one("skip");
    assert_eq!(skipped["status"], "OK");
    assert_eq!(skipped["message"], "skipped: a test order");
    assert_eq!(skipped["attempt_count"], 0);

    let split = by_input("split");
    assert_eq!(split.len(), 2, "{split:?}");
    assert!(split.iter().all(|e| e["status"] == "OK"));
    assert_eq!(j["counts"]["ERROR"], 6);

    // Everything that was not failed or skipped reached the sink, exactly once.
    let counts = sink.counts_by_id();
    let mut got: Vec<_> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("known", 1),
            ("ok1", 1),
            ("ok2", 1),
            ("split-a", 1),
            ("split-b", 1)
        ]
    );
    let ok1 = sink
        .received()
        .into_iter()
        .find(|r| r.body["id"] == "ok1")
        .unwrap();
    assert_eq!(
        ok1.body,
        json!({"id": "ok1", "warehouse": "LON1", "job": "upload"})
    );
    let known = sink
        .received()
        .into_iter()
        .find(|r| r.body["id"] == "known")
        .unwrap();
    assert_eq!(known.body["carrier"], "RM");

    // The transformation counters in /metrics: 5 records transformed here (ok1, ok2, known,
    // split, skip), 6 failed.
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wharf_transform_records_total{outcome=\"ok\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wharf_transform_records_total{outcome=\"error\"} 6"),
        "{metrics}"
    );

    // A fixed record replicated with the corrected payload goes through.
    let failed = one("unknown");
    let (status, out) = s
        .post(
            &format!("/events/{}/replicate", failed["id"].as_str().unwrap()),
            json!({"payload": {"id": "unknown", "kind": "lookup", "carrier": "Royal Mail"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sink.counts_by_id().contains_key("unknown") {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica was not delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn template_outputs_are_delivered_as_text(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let stream = upload_stream(
        &s,
        ORDER_LINES_CSV,
        &sink,
        json!({"timezone": "Europe/London"}),
    )
    .await;
    let job = upload(&s, &stream, json!([sample(ORDER)])).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["counts"]["OK"], 1, "{j}");
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["content-type"], "text/csv");
    assert!(
        got[0].raw.starts_with("order_number,order_date,"),
        "{}",
        got[0].raw
    );
    assert!(
        got[0]
            .raw
            .contains("1042,2024-07-01 23:30,jo.bloggs@example.com,TEE-BLU-M,"),
        "{}",
        got[0].raw
    );
    let events = events_of(&s, &job).await;
    assert_eq!(events[0]["payload_out"], json!(got[0].raw));

    let sink = Sink::ok().await;
    let stream = upload_stream(&s, PEOPLEVOX_XML, &sink, json!({})).await;
    let job = upload(&s, &stream, json!([sample(ORDER)])).await;
    wait_for_job(&s, &job).await;
    let got = sink.received();
    assert_eq!(got[0].headers["content-type"], "application/xml");
    assert!(got[0]
        .raw
        .contains("<Company>Bloggs &amp; Daughters, Ltd</Company>"));
}

async fn lookup_changes_reach_the_next_run(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let id = private(
        &s,
        "javascript",
        "json",
        "function transform(r, ctx) { return {id: r.id, carrier: ctx.lookup('carriers', r.carrier)}; }",
    )
    .await;
    let stream = upload_stream(&s, &id, &sink, json!({})).await;
    let table = s
        .create(
            "/lookup-tables",
            json!({"name": "carriers", "description": "", "default_value": "OTHER",
                "entries": {"Royal Mail": "RM"}}),
        )
        .await;
    let table = table["id"].as_str().unwrap().to_string();
    let job = upload(
        &s,
        &stream,
        json!([{"id": "a", "carrier": "Royal Mail"}, {"id": "b", "carrier": "Pigeon"}]),
    )
    .await;
    wait_for_job(&s, &job).await;
    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{table}/entries"))
            .json(&json!({"entries": {"Royal Mail": "ROYALMAIL"}})),
    )
    .await;
    assert!(status.is_success(), "{out}");
    let job = upload(&s, &stream, json!([{"id": "c", "carrier": "Royal Mail"}])).await;
    wait_for_job(&s, &job).await;
    let carriers: std::collections::HashMap<String, String> = sink
        .received()
        .into_iter()
        .map(|r| {
            (
                r.body["id"].as_str().unwrap().to_string(),
                r.body["carrier"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(carriers["a"], "RM");
    assert_eq!(carriers["b"], "OTHER", "the table's default");
    assert_eq!(
        carriers["c"], "ROYALMAIL",
        "the change is seen by the next run"
    );
}

both_stores!(
    syntax_errors_are_refused_on_save,
    dry_runs_return_output_logs_or_the_error,
    the_sandbox_fails_only_the_offending_event,
    template_outputs_are_delivered_as_text,
    lookup_changes_reach_the_next_run,
);
