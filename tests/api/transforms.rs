//! Transformations through the API: validation on save, dry runs, the public library, and
//! the sandbox failing only the offending event while the others are delivered.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{read, send, Db, Env, Server};
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
    assert_eq!(out["output"][1]["tracking"]["company"], "DPD");

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
        // The limit is wall-clock time: generous enough that on a loaded machine (a shared
        // two-core one at a load of 20) the memory bomb reaches its memory limit first, while
        // the infinite loop still runs out of time.
        config.transform.timeout_ms = 3000;
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
    let metrics = s.metrics().await;
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

/// A server whose transformation pool is shaped by `tune`.
async fn start_with(db: Db, tune: impl FnOnce(&mut wharf::config::Config)) -> (Env, Server) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    tune(&mut config);
    let server = Server::start(config).await;
    (env, server)
}

/// The owner token of a new organisation.
async fn other_org(s: &Server, name: &str) -> String {
    let org = s.create("/organisations", json!({"name": name})).await;
    org["owner_token"].as_str().unwrap().to_string()
}

async fn create_as(s: &Server, token: &str, language: &str, format: &str, code: &str) -> String {
    let (status, t) = send(s.req_as(token, Method::POST, "/transformations").json(
        &json!({"title": "Custom", "data_type": "sales_order", "language": language,
            "format": format, "code": code}),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    t["id"].as_str().unwrap().to_string()
}

async fn dry_run_as(s: &Server, token: &str, id: &str, payload: Value) -> (StatusCode, Value) {
    send(
        s.req_as(token, Method::POST, &format!("/transformations/{id}/test"))
            .json(&json!({"payload": payload})),
    )
    .await
}

/// Another organisation's transformations, both languages, still answer correctly.
async fn others_still_transform(s: &Server, token: &str) {
    let js = create_as(
        s,
        token,
        "javascript",
        "json",
        "function transform(r, ctx) { return { n: ctx.padStart(r.n, 4, '0') }; }",
    )
    .await;
    let (status, out) = dry_run_as(s, token, &js, json!({"n": 7})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], json!({"n": "0007"}));
    let template = create_as(
        s,
        token,
        "template",
        "text",
        "{{ record.n | pad_left(4, '0') }}",
    )
    .await;
    let (status, out) = dry_run_as(s, token, &template, json!({"n": 7})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], "0007");
}

async fn huge_widths_fail_only_their_record(db: Db) {
    // Two threads: two panics used to stop the pool for everyone.
    let (_env, s) = start_with(db, |c| c.transform.threads = 2).await;
    let other = other_org(&s, "second-shop").await;
    for width in ["18446744073709551615", "1099511627776"] {
        for filter in ["pad_left", "pad_right", "fixed"] {
            let code = format!("{{{{ record.sku | {filter}({width}) }}}}");
            let id = private(&s, "template", "text", &code).await;
            for _ in 0..3 {
                let (status, p) = dry_run(&s, &id, json!({"sku": "A1"}), json!({})).await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {p}");
                assert_eq!(p["error_code"], "TRANSFORM_ERROR", "{p}");
                let detail = p["detail"].as_str().unwrap();
                assert!(
                    detail.contains(&format!(
                        "width {width} is over the limit of 10000 characters"
                    )) && detail.contains("transform.max_pad_width"),
                    "{p}"
                );
            }
        }
        for helper in ["padStart", "padEnd", "fixed"] {
            let code = format!(
                "function transform(r, ctx) {{ return {{ sku: ctx.{helper}(r.sku, {width}) }}; }}"
            );
            let id = private(&s, "javascript", "json", &code).await;
            let (status, p) = dry_run(&s, &id, json!({"sku": "A1"}), json!({})).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {p}");
            assert_eq!(p["error_code"], "TRANSFORM_ERROR", "{p}");
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("over the limit of 10000 characters (transform.max_pad_width)"),
                "{p}"
            );
        }
    }
    // The threads serve on: the same organisation and another one transform as before.
    others_still_transform(&s, &other).await;
    others_still_transform(&s, &s.token).await;
    // So does the engine, for a whole job.
    let sink = Sink::ok().await;
    let stream = upload_stream(&s, SALES_ORDER, &sink, json!({"warehouse": "LON1"})).await;
    let job = upload(&s, &stream, json!([sample(ORDER)])).await;
    let job = wait_for_job(&s, &job).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(job["counts"]["OK"], 1, "{job}");
    assert_eq!(sink.received().len(), 1);
}

async fn templates_build_within_the_memory_limit(db: Db) {
    let (_env, s) = start_with(db, |c| c.transform.threads = 2).await;
    let other = other_org(&s, "second-shop").await;
    let bombs = [
        // Each copy doubles the last; the 64 MiB budget cannot pay for the 5th.
        "{% set a = 'x' * 4000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{% set h = g ~ g %}{{ h | length }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        // A single allocation larger than the whole budget.
        "{% set s = 'x' * 90000000 %}{{ s | length }}",
        "{{ (['y' * 1000000] * 300) | join('') | length }}",
    ];
    for code in bombs {
        let id = private(&s, "template", "text", code).await;
        let started = std::time::Instant::now();
        let (status, p) = dry_run(&s, &id, json!({}), json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {p}");
        assert_eq!(p["error_code"], "TRANSFORM_MEMORY", "{code}: {p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("transform.memory_mib = 64 MiB"),
            "{p}"
        );
        // Stopped by the budget, not by a long wait (generous: machines are noisy).
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{code}"
        );
    }
    // A loop that builds nothing is still a timeout.
    let id = private(
        &s,
        "template",
        "text",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    .await;
    let (status, p) = dry_run(&s, &id, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["error_code"], "TRANSFORM_TIMEOUT", "{p}");
    others_still_transform(&s, &other).await;
}

/// A JavaScript transformation that never ends on its own.
const ENDLESS: &str = "function transform(r) { for (;;) {} }";

async fn a_full_queue_answers_503_with_retry_after(db: Db) {
    let (_env, s) = start_with(db, |c| {
        c.transform.threads = 1;
        // Long enough that the whole burst arrives while the first loop still runs, even on
        // a loaded machine.
        c.transform.timeout_ms = 800;
        c.transform.queue_per_org = 2;
        c.transform.queue_total = 8;
    })
    .await;
    let s = std::sync::Arc::new(s);
    let other = other_org(&s, "second-shop").await;
    let endless = private(&s, "javascript", "json", ENDLESS).await;
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (s, endless) = (s.clone(), endless.clone());
        flood.spawn(async move {
            let res = s
                .req(Method::POST, &format!("/transformations/{endless}/test"))
                .json(&json!({"payload": {}}))
                .send()
                .await
                .unwrap();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let (status, body) = read(res).await;
            (status, retry_after, body)
        });
    }
    // Another organisation has its own room meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let js = create_as(
        &s,
        &other,
        "javascript",
        "json",
        "function transform(r) { return { ok: r.n }; }",
    )
    .await;
    let (status, out) = dry_run_as(&s, &other, &js, json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], json!({"ok": 1}));
    let (mut refused, mut ran) = (0, 0);
    while let Some(answer) = flood.join_next().await {
        let (status, retry_after, body) = answer.unwrap();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
                assert!((1..=60).contains(&seconds), "{seconds}");
                assert_eq!(body["type"], "https://wharf.dev/problems/busy", "{body}");
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap()
                        .contains("transform.queue_per_org = 2"),
                    "{body}"
                );
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                ran += 1;
                assert_eq!(body["error_code"], "TRANSFORM_TIMEOUT", "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    // One running and two waiting at most when the burst arrived; the rest were refused.
    assert!(refused >= 1, "{refused} refused, {ran} ran");
    assert!(ran >= 1, "{refused} refused, {ran} ran");
    assert_eq!(refused + ran, 10);
    // Once the queue drains the organisation is served again.
    let (status, out) = dry_run(&s, &js_echo(&s).await, json!({"n": 2}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");

    // Saving code compiles it on the same threads: refused the same way while the
    // organisation's line is full. Saves are sent one after another without waiting for the
    // answers, so the line is full while some of them arrive whatever the machine's pace.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (s, endless) = (s.clone(), endless.clone());
        flood.spawn(async move { dry_run(&s, &endless, json!({}), json!({})).await });
    }
    let mut saves = tokio::task::JoinSet::new();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let s = s.clone();
        saves.spawn(async move {
            let res = s
                .req(Method::POST, "/transformations")
                .json(
                    &json!({"title": "Saved", "data_type": "sales_order", "language": "template",
                    "format": "text", "code": "{{ record.n }}"}),
                )
                .send()
                .await
                .unwrap();
            let retry_after = res.headers().get("retry-after").cloned();
            let (status, body) = read(res).await;
            (status, retry_after, body)
        });
    }
    let mut refused = 0;
    while let Some(answer) = saves.join_next().await {
        let (status, retry_after, body) = answer.unwrap();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry_after.is_some(), "{body}");
            assert_eq!(body["type"], "https://wharf.dev/problems/busy", "{body}");
            refused += 1;
        } else {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    assert!(refused >= 1, "no save was refused while the line was full");
    while flood.join_next().await.is_some() {}
}

async fn js_echo(s: &Server) -> String {
    private(
        s,
        "javascript",
        "json",
        "function transform(r) { return r; }",
    )
    .await
}

async fn one_organisation_cannot_starve_another(db: Db) {
    let (_env, s) = start_with(db, |c| {
        c.transform.threads = 1;
        c.transform.timeout_ms = 300;
    })
    .await;
    let s = std::sync::Arc::new(s);
    let other = other_org(&s, "second-shop").await;
    let fast = create_as(&s, &other, "template", "text", "{{ record.n }} ok").await;
    let endless = private(&s, "javascript", "json", ENDLESS).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (s, endless, done) = (s.clone(), endless.clone(), done.clone());
        flood.spawn(async move {
            let (status, p) = dry_run(&s, &endless, json!({}), json!({})).await;
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (status, p)
        });
    }
    // Let the flood queue up first: in one shared line the other organisation would wait
    // for all twenty (six seconds); served in turn, it waits for about one.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, out) = dry_run_as(&s, &other, &fast, json!({"n": 5})).await;
    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], "5 ok");
    assert!(
        finished <= 10,
        "the other organisation waited for {finished} of the flood's 20 records"
    );
    while let Some(answer) = flood.join_next().await {
        let (status, p) = answer.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["error_code"], "TRANSFORM_TIMEOUT", "{p}");
    }
}

async fn work_whose_caller_left_is_dropped(db: Db) {
    let (_env, s) = start_with(db, |c| {
        c.transform.threads = 1;
        c.transform.timeout_ms = 1000;
        c.http.request_timeout_seconds = 2;
    })
    .await;
    let s = std::sync::Arc::new(s);
    let endless = private(&s, "javascript", "json", ENDLESS).await;
    let echo = js_echo(&s).await;
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (s, endless) = (s.clone(), endless.clone());
        flood.spawn(async move { dry_run(&s, &endless, json!({}), json!({})).await });
    }
    let mut gave_up = 0;
    while let Some(answer) = flood.join_next().await {
        let (status, p) = answer.unwrap();
        match status {
            // The request timeout answered: the caller is gone.
            StatusCode::SERVICE_UNAVAILABLE => gave_up += 1,
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(p["error_code"], "TRANSFORM_TIMEOUT"),
            other => panic!("{other}: {p}"),
        }
    }
    assert!(gave_up >= 6, "{gave_up}");
    // Had the abandoned loops still run, this would wait behind them (a second each) past
    // its own two-second timeout.
    let (status, out) = dry_run(&s, &echo, json!({"n": 3}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], json!({"n": 3}));
}

async fn a_running_loop_whose_caller_left_is_stopped(db: Db) {
    let (_env, s) = start_with(db, |c| {
        c.transform.threads = 1;
        // Far longer than the request timeout: only the caller leaving can stop it sooner.
        c.transform.timeout_ms = 15_000;
        c.http.request_timeout_seconds = 2;
    })
    .await;
    let endless = private(&s, "javascript", "json", ENDLESS).await;
    let echo = js_echo(&s).await;
    let (status, p) = dry_run(&s, &endless, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{p}");
    // Had the loop run on to its own limit, this would wait past its two-second timeout.
    let (status, out) = dry_run(&s, &echo, json!({"n": 4}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], json!({"n": 4}));
}

async fn a_record_splits_into_at_most_max_outputs(db: Db) {
    let (_env, s) = start_with(db, |_| {}).await;
    let split = private(
        &s,
        "javascript",
        "json",
        "function transform(r) { return Array.from({ length: r.n }, (_, i) => ({ i })); }",
    )
    .await;
    let (status, out) = dry_run(&s, &split, json!({"n": 1000}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["outputs"], 1000);
    let (status, p) = dry_run(&s, &split, json!({"n": 1001}), json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["error_code"], "OUTPUT_TOO_LARGE", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("split into 1001 outputs, over the limit of 1000 (transform.max_outputs)"),
        "{p}"
    );
    // Configurable, and the engine fails such a record as it should.
    let (_env2, s) = start_with(db, |c| c.transform.max_outputs = 2).await;
    let split = private(
        &s,
        "javascript",
        "json",
        "function transform(r) { return Array.from({ length: r.n }, (_, i) => ({ i })); }",
    )
    .await;
    let sink = Sink::ok().await;
    let stream = upload_stream(&s, &split, &sink, json!({})).await;
    let job = upload(&s, &stream, json!([{"n": 2}, {"n": 3}])).await;
    wait_for_job(&s, &job).await;
    let events = events_of(&s, &job).await;
    let codes: Vec<Value> = events.iter().map(|e| e["error_code"].clone()).collect();
    assert!(codes.contains(&json!("OUTPUT_TOO_LARGE")), "{events:?}");
    assert_eq!(
        sink.received().len(),
        2,
        "the record of two outputs is delivered"
    );
    // Each of its outputs is an event that keeps the record it came from.
    let mut two: Vec<&Value> = events
        .iter()
        .filter(|e| e["payload_in"] == json!({"n": 2}))
        .collect();
    two.sort_by_key(|e| e["payload_out"]["i"].as_i64());
    let outs: Vec<&Value> = two.iter().map(|e| &e["payload_out"]).collect();
    assert_eq!(outs, [&json!({"i": 0}), &json!({"i": 1})], "{events:?}");
}

/// `lookup(table, key, default)`: the entry, else the call's default, else the table's
/// `default_value`, else LookupNotFound — the same in JavaScript and in templates.
async fn lookup_defaults_agree_in_javascript_and_templates(db: Db) {
    let (_env, s) = start(db).await;
    s.create(
        "/lookup-tables",
        json!({"name": "carriers", "default_value": "TABLE", "entries": {"DPD": "DPD1"}}),
    )
    .await;
    s.create("/lookup-tables", json!({"name": "bare", "entries": {}}))
        .await;
    let js = private(
        &s,
        "javascript",
        "json",
        "function transform(r, ctx) { return { hit: ctx.lookup('carriers', 'DPD', 'CALL'), \
         call: ctx.lookup('carriers', 'UPS', 'CALL'), table: ctx.lookup('carriers', 'UPS') }; }",
    )
    .await;
    let template = private(
        &s,
        "template",
        "text",
        "{{ lookup('carriers', 'DPD', 'CALL') }}|{{ lookup('carriers', 'UPS', 'CALL') }}|{{ lookup('carriers', 'UPS') }}",
    )
    .await;
    let (status, out) = dry_run(&s, &js, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["output"],
        json!({"hit": "DPD1", "call": "CALL", "table": "TABLE"})
    );
    let (status, out) = dry_run(&s, &template, json!({}), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["output"], "DPD1|CALL|TABLE");

    // No entry and no default anywhere: LookupNotFound in both.
    for (language, format, code) in [
        (
            "javascript",
            "json",
            "function transform(r, ctx) { return { v: ctx.lookup('bare', 'x') }; }",
        ),
        ("template", "text", "{{ lookup('bare', 'x') }}"),
    ] {
        let id = private(&s, language, format, code).await;
        let (status, out) = dry_run(&s, &id, json!({}), json!({})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
        assert_eq!(out["error_code"], "LOOKUP_NOT_FOUND", "{language}: {out}");
    }
}

/// One row of the ctx helper table: the same helper call in JavaScript and in a template,
/// and what both must give.
struct Helper {
    name: &'static str,
    js: &'static str,
    template: &'static str,
    expected: &'static str,
}

#[rustfmt::skip]
const HELPERS: &[Helper] = &[
    Helper { name: "money", js: "ctx.money(r.price)", template: "record.price | money", expected: "2.68" },
    Helper { name: "money places", js: "ctx.money(r.neg, 1)", template: "record.neg | money(1)", expected: "-20.0" },
    Helper { name: "money of a number", js: "ctx.money(r.num)", template: "record.num | money", expected: "1.01" },
    Helper { name: "money of an integer", js: "ctx.money(r.qty, 3)", template: "record.qty | money(3)", expected: "7.000" },
    Helper { name: "format date", js: "ctx.formatDate(r.at, '%d/%m/%Y %H:%M', 'Europe/London')", template: "record.at | format_date('%d/%m/%Y %H:%M', 'Europe/London')", expected: "02/07/2024 00:30" },
    Helper { name: "format date defaults", js: "ctx.formatDate(r.at)", template: "record.at | format_date", expected: "2024-07-01T23:30:00+00:00" },
    Helper { name: "format date of milliseconds", js: "ctx.formatDate(r.ms, '%Y-%m-%d %H:%M', 'Europe/London')", template: "record.ms | format_date('%Y-%m-%d %H:%M', 'Europe/London')", expected: "2024-07-02 00:30" },
    Helper { name: "format date with offset", js: "ctx.formatDate(r.offset, '%d/%m/%Y %H:%M')", template: "record.offset | format_date('%d/%m/%Y %H:%M')", expected: "05/01/2024 15:00" },
    Helper { name: "parse date", js: "ctx.parseDate(r.local, '%d/%m/%Y %H:%M', 'Australia/Sydney')", template: "record.local | parse_date('%d/%m/%Y %H:%M', 'Australia/Sydney')", expected: "2024-01-04T22:00:00Z" },
    Helper { name: "parse date without pattern", js: "ctx.parseDate('2024-07-01 23:30')", template: "'2024-07-01 23:30' | parse_date", expected: "2024-07-01T23:30:00Z" },
    Helper { name: "pad start", js: "ctx.padStart(r.qty, 5, '0')", template: "record.qty | pad_left(5, '0')", expected: "00007" },
    Helper { name: "pad start, default fill", js: "ctx.padStart(r.sku, 5)", template: "record.sku | pad_left(5)", expected: "  ABC" },
    Helper { name: "pad end", js: "ctx.padEnd(r.sku, 6, '.')", template: "record.sku | pad_right(6, '.')", expected: "ABC..." },
    Helper { name: "pad, first fill character", js: "ctx.padEnd(r.sku, 5, 'xy')", template: "record.sku | pad_right(5, 'xy')", expected: "ABCxx" },
    Helper { name: "pad, longer text kept", js: "ctx.padStart(r.long, 4)", template: "record.long | pad_left(4)", expected: "ABCDEFGHIJ" },
    Helper { name: "pad, wide characters", js: "ctx.padStart(r.wide, 4, '*')", template: "record.wide | pad_left(4, '*')", expected: "*€ü😀" },
    Helper { name: "pad of a missing value", js: "ctx.padEnd(r.nothing, 3, '-')", template: "record.nothing | pad_right(3, '-')", expected: "---" },
    Helper { name: "fixed cuts", js: "ctx.fixed(r.long, 4)", template: "record.long | fixed(4)", expected: "ABCD" },
    Helper { name: "fixed pads", js: "ctx.fixed(r.sku, 5)", template: "record.sku | fixed(5)", expected: "ABC  " },
    Helper { name: "fixed right", js: "ctx.fixed(r.qty, 4, '0', 'right')", template: "record.qty | fixed(4, fill='0', align='right')", expected: "0007" },
    Helper { name: "csv row", js: "ctx.csv([r.sku, r.name, r.qty, null])", template: "[record.sku, record.name, record.qty, none] | csv", expected: "ABC,\"Tee, \"\"blue\"\"\",7," },
    Helper { name: "csv field", js: "ctx.csv(r.name)", template: "record.name | csv", expected: "\"Tee, \"\"blue\"\"\"" },
    Helper { name: "xml", js: "ctx.xml(r.markup)", template: "record.markup | xml", expected: "A &amp; &lt;B&gt; &apos;C&apos;" },
    Helper { name: "lookup entry", js: "ctx.lookup('carriers', r.carrier)", template: "lookup('carriers', record.carrier)", expected: "DPD1" },
    Helper { name: "lookup entry over defaults", js: "ctx.lookup('carriers', r.carrier, 'CALL')", template: "lookup('carriers', record.carrier, 'CALL')", expected: "DPD1" },
    Helper { name: "lookup, call default", js: "ctx.lookup('carriers', 'UPS', 'CALL')", template: "lookup('carriers', 'UPS', 'CALL')", expected: "CALL" },
    Helper { name: "lookup, table default", js: "ctx.lookup('carriers', 'UPS')", template: "lookup('carriers', 'UPS')", expected: "TABLE" },
    Helper { name: "lookup, no table but a call default", js: "ctx.lookup('nope', 'x', 'CALL')", template: "lookup('nope', 'x', 'CALL')", expected: "CALL" },
    Helper { name: "lookup, number key", js: "ctx.lookup('carriers', r.qty)", template: "lookup('carriers', record.qty)", expected: "seven" },
];

/// Every ctx helper, called with the same inputs from JavaScript and from a template,
/// gives the same text, and the text expected.
async fn ctx_helpers_agree_in_javascript_and_templates(db: Db) {
    let (_env, s) = start(db).await;
    s.create(
        "/lookup-tables",
        json!({"name": "carriers", "default_value": "TABLE", "entries": {"DPD": "DPD1", "7": "seven"}}),
    )
    .await;
    let record = json!({
        "price": "2.675", "neg": "-19.995", "num": 1.005, "qty": 7, "sku": "ABC",
        "long": "ABCDEFGHIJ", "wide": "€ü😀", "nothing": null,
        "at": "2024-07-01T23:30:00Z", "ms": 1_719_876_600_000u64,
        "offset": "2024-01-05T10:00:00-05:00", "local": "05/01/2024 09:00",
        "name": "Tee, \"blue\"", "markup": "A & <B> 'C'", "carrier": "DPD",
    });
    let calls: Vec<&str> = HELPERS.iter().map(|h| h.js).collect();
    let js = private(
        &s,
        "javascript",
        "text",
        &format!(
            "function transform(r, ctx) {{ return [\n{}\n].join('\\n'); }}",
            calls.join(",\n")
        ),
    )
    .await;
    let lines: Vec<String> = HELPERS
        .iter()
        .map(|h| format!("{{{{ {} }}}}", h.template))
        .collect();
    let template = private(&s, "template", "text", &lines.join("\n")).await;
    let mut outputs = Vec::new();
    for id in [&js, &template] {
        let (status, out) = dry_run(&s, id, record.clone(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        outputs.push(out["output"].as_str().unwrap().to_string());
    }
    let (js_lines, template_lines): (Vec<&str>, Vec<&str>) = (
        outputs[0].split('\n').collect(),
        outputs[1].split('\n').collect(),
    );
    assert_eq!(js_lines.len(), HELPERS.len(), "{}", outputs[0]);
    assert_eq!(template_lines.len(), HELPERS.len(), "{}", outputs[1]);
    for (i, h) in HELPERS.iter().enumerate() {
        assert_eq!(
            js_lines[i], template_lines[i],
            "{}: JavaScript and template differ",
            h.name
        );
        assert_eq!(js_lines[i], h.expected, "{}", h.name);
    }

    // A helper refuses the same arguments in both, with the same code and message.
    let refusals = [
        (
            "ctx.money('abc')",
            "'abc' | money",
            "TRANSFORM_ERROR",
            "`abc` is not a number",
        ),
        (
            "ctx.formatDate('yesterday', '%Y')",
            "'yesterday' | format_date('%Y')",
            "TRANSFORM_ERROR",
            "`yesterday` is not a date this helper reads",
        ),
        (
            "ctx.formatDate(r.at, '%Y', 'Mars/Base')",
            "record.at | format_date('%Y', 'Mars/Base')",
            "TRANSFORM_ERROR",
            "unknown time zone `Mars/Base`",
        ),
        (
            "ctx.parseDate('5 May', '%d/%m/%Y')",
            "'5 May' | parse_date('%d/%m/%Y')",
            "TRANSFORM_ERROR",
            "`5 May` does not match the date pattern `%d/%m/%Y`",
        ),
        (
            "ctx.padStart('7', 10001)",
            "'7' | pad_left(10001)",
            "TRANSFORM_ERROR",
            "width 10001 is over the limit of 10000 characters (transform.max_pad_width)",
        ),
        (
            "ctx.lookup('nope', 'x')",
            "lookup('nope', 'x')",
            "LOOKUP_NOT_FOUND",
            "there is no lookup table named `nope`",
        ),
    ];
    for (js_call, template_call, code, message) in refusals {
        let js = private(
            &s,
            "javascript",
            "text",
            &format!("function transform(r, ctx) {{ return String({js_call}); }}"),
        )
        .await;
        let template = private(
            &s,
            "template",
            "text",
            &format!("{{{{ {template_call} }}}}"),
        )
        .await;
        for (language, id) in [("javascript", &js), ("template", &template)] {
            let (status, p) = dry_run(&s, id, record.clone(), json!({})).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{language} {js_call}: {p}"
            );
            assert_eq!(p["error_code"], code, "{language} {js_call}: {p}");
            let detail = p["detail"].as_str().unwrap();
            assert!(detail.contains(message), "{language} {js_call}: {p}");
            assert!(!detail.contains("RangeError"), "{language} {js_call}: {p}");
        }
    }

    // skip(reason) skips the record with that reason in both.
    let js = private(
        &s,
        "javascript",
        "json",
        "function transform(r, ctx) { return r.qty < 10 ? ctx.skip('low stock') : r; }",
    )
    .await;
    let template = private(
        &s,
        "template",
        "csv",
        "sku\n{% if record.qty < 10 %}{{ skip('low stock') }}{% endif %}{{ record.sku }}",
    )
    .await;
    for id in [&js, &template] {
        let (status, out) = dry_run(&s, id, record.clone(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["output"], Value::Null, "{out}");
        assert_eq!(out["skipped"], "low stock", "{out}");
    }
}

both_stores!(
    ctx_helpers_agree_in_javascript_and_templates,
    lookup_defaults_agree_in_javascript_and_templates,
    syntax_errors_are_refused_on_save,
    dry_runs_return_output_logs_or_the_error,
    the_sandbox_fails_only_the_offending_event,
    template_outputs_are_delivered_as_text,
    lookup_changes_reach_the_next_run,
    huge_widths_fail_only_their_record,
    templates_build_within_the_memory_limit,
    a_full_queue_answers_503_with_retry_after,
    one_organisation_cannot_starve_another,
    work_whose_caller_left_is_dropped,
    a_running_loop_whose_caller_left_is_stopped,
    a_record_splits_into_at_most_max_outputs,
    nul_characters_never_stop_an_event,
);

/// U+0000 from a transformation or a destination never stops an event: Postgres cannot keep
/// it in text, so the store keeps what it says about an event (messages, logs, the answer's
/// excerpt) with U+FFFD in its place, on both stores alike; an output holding it is data,
/// stored and sent as it is (payloads are JSON text on both stores).
async fn nul_characters_never_stop_an_event(db: Db) {
    let (_env, s) = start(db).await;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let record: Value = serde_json::from_slice(&body).unwrap_or_default();
            seen.lock().unwrap().push(record.clone());
            let status = if record["id"] == "refused" {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            (status, "answer \u{0}with a NUL")
        }
    });
    let addr = wharf_testkit::serve(app).await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Answers with NUL", "system": "http", "function": "http.send",
            "params": {"url": format!("http://{addr}/in")}}),
        )
        .await;
    let code = r#"
function transform(r, ctx) {
  ctx.log("log \u0000 of " + r.id);
  if (r.kind === "out") return { id: r.id, note: "a\u0000b" };
  if (r.kind === "throw") throw new Error("bad \u0000 thing");
  return { id: r.id };
}
"#;
    let id = private(&s, "javascript", "json", code).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Uploads", "system": "http", "function": "http.fetch",
            "trigger": "manual", "params": {"url": "http://127.0.0.1:9/unused"}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "NUL", "data_type": "sales_order", "source_id": source["id"],
            "transformation_id": id, "destination_id": destination["id"]}),
        )
        .await;
    let stream = stream["id"].as_str().unwrap();
    let records = json!([
        {"id": "plain"}, {"id": "refused"}, {"id": "out", "kind": "out"},
        {"id": "throw", "kind": "throw"}
    ]);
    let job = upload(&s, stream, records).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{j}");
    let events = events_of(&s, &job).await;
    let one = |id: &str| {
        events
            .iter()
            .find(|e| e["payload_in"]["id"] == id)
            .cloned()
            .unwrap()
    };
    let replaced = "\u{FFFD}";

    let plain = one("plain");
    assert_eq!(plain["status"], "OK", "{plain}");
    assert_eq!(plain["logs"], json!([format!("log {replaced} of plain")]));
    let tries = crate::engine::attempts(&s, &plain).await;
    assert_eq!(
        tries[0]["response_excerpt"],
        format!("answer {replaced}with a NUL")
    );

    let refused = one("refused");
    assert_eq!(refused["status"], "FAILED", "{refused}");
    let tries = crate::engine::attempts(&s, &refused).await;
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(
        tries[0]["response_excerpt"],
        format!("answer {replaced}with a NUL")
    );

    let thrown = one("throw");
    assert_eq!(thrown["status"], "ERROR", "{thrown}");
    assert_eq!(thrown["error_code"], "TRANSFORM_ERROR");
    let message = thrown["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("bad {replaced} thing")),
        "{message}"
    );
    assert!(!message.contains('\u{0}'), "{message}");

    let out = one("out");
    assert_eq!(out["status"], "OK", "{out}");
    assert_eq!(out["payload_out"]["note"], "a\u{0}b");
    assert_eq!(out["logs"], json!([format!("log {replaced} of out")]));
    let tries = crate::engine::attempts(&s, &out).await;
    assert_eq!(tries.len(), 1, "{tries:?}");
    let sent = received.lock().unwrap().clone();
    let sent_out = sent.iter().find(|r| r["id"] == "out").unwrap();
    assert_eq!(sent_out["note"], "a\u{0}b", "sent as it is: {sent_out}");
    assert_eq!(j["counts"]["ERROR"], 1);
}
