//! Peoplevox through a local IntegrationServiceV4 that answers as Peoplevox does: SOAP 1.1 at
//! `/{clientId}/resources/integrationservicev4.asmx` (any case), the SOAPAction checked against
//! the body, `Authenticate` with a base64 password, the `UserSessionCredentials` header on
//! every other call (`System : Security - Invalid Session` otherwise, and when a session is
//! expired on demand), business errors as HTTP 200 with `ResponseId` -1, ASMX faults (HTTP 500)
//! for malformed requests, `GetData` paged with a search clause, `SaveData` checked against the
//! templates' columns with per-line errors, event subscriptions whose callbacks it fires with
//! GET, and its limit of 15 requests in 15 s (and a 429 on demand).

pub(crate) mod service;

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};

use self::service::{expire, peoplevox, PvxState, CLIENT, PASSWORD, USER};
use crate::both_stores;
use crate::common::{read, Db, Env, Server};
use crate::engine::{attempts, events_of, run, upload_and_wait, wait_for_job};
use crate::peers::Sink;

pub(crate) const PUBLIC: &str = "https://wharf.example.com";
const PASSTHROUGH: &str = "01900000-0000-7000-8000-000000000001";
const DESPATCH_TO_FULFILLMENT: &str = "01900000-0000-7000-8000-00000000000b";
const SHOPIFY_TO_IMPORT: &str = "01900000-0000-7000-8000-00000000000c";

pub(crate) async fn key(s: &Server, base: &str, password: &str) -> Value {
    s.create(
        "/keys",
        json!({"system": "peoplevox", "title": "Peoplevox", "credentials": {
            "client_id": CLIENT, "username": USER, "password": password, "base_url": base}}),
    )
    .await
}

/// Calls a subscription's callback as Peoplevox does: its placeholders filled (URL-encoded,
/// as `encodeParameterData` asks) and a GET, at the test server instead of the public address.
pub(crate) async fn fire(
    s: &Server,
    p: &PvxState,
    event: &str,
    values: &Value,
) -> (StatusCode, Value) {
    let url = {
        let p = p.lock().unwrap();
        let (_, _, url, encode) = p
            .subscriptions
            .values()
            .find(|(e, ..)| e == event)
            .expect("a subscription to the event")
            .clone();
        assert!(encode, "values are asked for URL-encoded");
        let mut url = url;
        for (k, v) in values.as_object().unwrap() {
            let v: String = form_encode(v.as_str().unwrap());
            url = url.replace(&format!("{{{k}}}"), &v);
        }
        assert!(!url.contains('{'), "every placeholder is filled: {url}");
        url.replace(PUBLIC, &s.url(""))
    };
    read(s.client.get(url).send().await.unwrap()).await
}

fn form_encode(v: &str) -> String {
    serde_urlencoded::to_string([("x", v)]).unwrap()[2..].to_string()
}

async fn imports_go_in_order_in_one_session(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let (base, pvx) = peoplevox().await;
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": k["id"], "trigger": "webhook", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "Peoplevox", "system": "peoplevox", "function": "peoplevox.import",
                "key_id": k["id"], "params": {}, "retry": {"schedule_seconds": [0], "timeout_seconds": 10}}),
        )
        .await;
    let stream = |transformation: &'static str| {
        let (s, source, destination) = (&s, &source, &destination);
        async move {
            let out = s
                .create(
                    "/streams",
                    json!({"title": "To Peoplevox", "data_type": "sales_order", "source_id": source["id"],
                        "transformation_id": transformation, "destination_id": destination["id"]}),
                )
                .await;
            out["id"].as_str().unwrap().to_string()
        }
    };
    // A Shopify order through the library's transformation: the order, then its items,
    // accepted by the templates' columns.
    let shopify = stream(SHOPIFY_TO_IMPORT).await;
    let order: Value = serde_json::from_str(include_str!(
        "../../../src/transform/library/samples/shopify_order.json"
    ))
    .unwrap();
    let (job, events) = upload_and_wait(&s, &shopify, json!([order])).await;
    assert_eq!(job["status"], "FINISHED", "{job}");
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["Authenticate", "SaveData", "SaveData"]);
        assert!(
            p.calls[1].1.starts_with("Sales orders|0|"),
            "{}",
            p.calls[1].1
        );
        assert!(p.calls[2].1.starts_with("Sales order items|0|"));
        let o = &p.orders["1042"];
        assert_eq!(o["ContactName"], "Jo Bloggs");
        assert_eq!(o["ServiceType"], "Royal Mail Tracked 24");
        assert_eq!(p.items.len(), 2);
        assert_eq!(
            p.items[&("1042".to_string(), "2".to_string())]["ItemCode"],
            "TOTE-HBR"
        );
    }
    // The next delivery keeps the session; rows become CSV quoted as CSV needs, and
    // `imports` go in their order.
    let direct = stream(PASSTHROUGH).await;
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"imports": [
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2001", "Customer": "Doe, \"Jane\" & Co <x>",
                "Email": "jane@example.com", "TotalSale": 12.5, "IsPartialShipment": false}]},
            {"template": "Sales order items", "csv": "SalesOrderNumber,ItemCode,QuantityOrdered,Line\nSO-2001,A-1,2,1\n"}
        ]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    {
        let mut p = pvx.lock().unwrap();
        assert_eq!(p.ops()[3..], ["SaveData", "SaveData"], "no new login");
        let o = &p.orders["SO-2001"];
        assert_eq!(o["Customer"], "Doe, \"Jane\" & Co <x>");
        assert_eq!(o["IsPartialShipment"], "false");
        assert_eq!(o["TotalSale"], "12.5");
        assert_eq!(
            p.items[&("SO-2001".to_string(), "1".to_string())]["ItemCode"],
            "A-1"
        );
        assert_eq!(p.over_limit, 0, "requests are paced within the limit");
        p.calls.clear();
    }
    // The session expires: Peoplevox says so, Wharf signs in again once and the import goes on.
    expire(&pvx);
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2002", "Email": "a@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(attempts(&s, &events[0]).await.len(), 1);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["SaveData", "Authenticate", "SaveData"]);
        assert_eq!(p.calls[0].1, "invalid session");
        assert!(p.orders.contains_key("SO-2002"));
    }
    // A deletion with the destination's action.
    let (status, _) = s
        .patch(
            &format!("/destinations/{}", destination["id"].as_str().unwrap()),
            json!({"params": {"action": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, events) = upload_and_wait(
        &s,
        &direct,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-2002"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert!(!pvx.lock().unwrap().orders.contains_key("SO-2002"));
}

async fn import_refusals_are_final_and_failures_retried(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let (base, pvx) = peoplevox().await;
    let good = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": good["id"], "trigger": "webhook", "params": {}}),
        )
        .await;
    let stream_with = |k: Value| {
        let (s, source) = (&s, &source);
        async move {
            let destination = s
                .create(
                    "/destinations",
                    json!({"title": "Peoplevox", "system": "peoplevox", "function": "peoplevox.import",
                        "key_id": k["id"], "params": {}, "retry": {"schedule_seconds": [0, 0], "timeout_seconds": 10}}),
                )
                .await;
            let out = s
                .create(
                    "/streams",
                    json!({"title": "To Peoplevox", "data_type": "sales_order", "source_id": source["id"],
                        "transformation_id": PASSTHROUGH, "destination_id": destination["id"]}),
                )
                .await;
            out["id"].as_str().unwrap().to_string()
        }
    };
    let stream = stream_with(good).await;
    // Peoplevox refuses some rows: what it took is said, with its own words, and nothing is
    // tried again.
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([
            {"template": "Sales orders", "rows": [
                {"SalesOrderNumber": "SO-1", "Email": "a@example.com", "TotalSale": "9.99"},
                {"SalesOrderNumber": "SO-2", "Email": "b@example.com", "TotalSale": "lots"}]},
            {"template": "Sales order items", "rows": [{"SalesOrderNumber": "SO-404", "ItemCode": "A-1", "QuantityOrdered": 1}]},
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-3", "Colour": "red"}]},
            {"template": "Sales orders", "rows": [{"Customer": "nobody"}]}
        ]),
    )
    .await;
    let by = |n: usize| events[n].clone();
    for (i, says) in [
        (0, "Peoplevox imported 1 of 2 rows of template Sales orders: Line 2: TotalSale 'lots' is not a valid decimal"),
        (1, "Peoplevox imported 0 of 1 rows of template Sales order items: Line 1: Sales order 'SO-404' does not exist"),
        (2, "Column 'Colour' is not part of template 'Sales orders'"),
        (3, "Column 'SalesOrderNumber' is required"),
    ] {
        let e = by(i);
        assert_eq!(e["status"], "FAILED", "{e}");
        assert_eq!(e["error_code"], "INVALID_SCHEMA", "{e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
        assert_eq!(attempts(&s, &e).await.len(), 1, "a refusal is not tried again");
    }
    assert!(pvx.lock().unwrap().orders.contains_key("SO-1"));
    // An output Peoplevox cannot take is refused before anything is sent.
    let (_, events) =
        upload_and_wait(&s, &stream, json!([{"rows": [{"SalesOrderNumber": "X"}]}])).await;
    assert_eq!(events[0]["error_code"], "INVALID_SCHEMA");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("names no `template`"));

    // A fault of the server, then Peoplevox's limit: each tried again, then delivered.
    pvx.lock().unwrap().failing = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-5", "Email": "e@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0]["error_code"], "SERVER_ERROR", "{tries:?}");
    assert_eq!(tries[0]["http_status"], 500);
    assert!(
        tries[0]["response_excerpt"]
            .as_str()
            .unwrap()
            .contains("Timeout expired"),
        "{tries:?}"
    );
    // A request Peoplevox cannot read is a client fault: final, with its words.
    pvx.lock().unwrap().unreadable = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-8", "Email": "h@example.com"}]}]),
    )
    .await;
    let e = &events[0];
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error_code"], "INVALID_SCHEMA");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("There is an error in XML document (1, 120)"),
        "{e}"
    );
    assert_eq!(attempts(&s, e).await.len(), 1);
    pvx.lock().unwrap().limited = 1;
    let (_, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-6", "Email": "f@example.com"}]}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED", "{tries:?}");
    assert!(pvx.lock().unwrap().orders.contains_key("SO-6"));

    // A wrong password: Peoplevox's refusal, final.
    let bad = key(&s, &base, "wrong").await;
    let stream = stream_with(bad).await;
    let (job, events) = upload_and_wait(
        &s,
        &stream,
        json!([{"template": "Sales orders", "rows": [{"SalesOrderNumber": "SO-7", "Email": "g@example.com"}]}]),
    )
    .await;
    assert_eq!(job["status"], "FINISHED_WITH_ISSUES", "{job}");
    let e = &events[0];
    assert_eq!(e["status"], "FAILED", "{e}");
    assert_eq!(e["error_code"], "UNAUTHORIZED");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Invalid username or password"),
        "{e}"
    );
    assert_eq!(attempts(&s, e).await.len(), 1);
    assert!(!pvx.lock().unwrap().orders.contains_key("SO-7"));
}

async fn template_rows_are_read_page_by_page_then_only_what_changed(db: Db) {
    let (_env, s) = crate::engine::start(db).await;
    let sink = Sink::ok().await;
    let (base, pvx) = peoplevox().await;
    {
        let mut p = pvx.lock().unwrap();
        for i in 1..=230u32 {
            let number = format!("SO-{i:04}");
            let row: BTreeMap<String, String> = [
                ("SalesOrderNumber", number.clone()),
                ("Customer", format!("Customer {i}, Ltd")),
                ("Email", format!("c{i}@example.com")),
                (
                    "Status",
                    if i % 3 == 0 { "Despatched" } else { "New" }.to_string(),
                ),
                (
                    "LastUpdated",
                    format!("2026-11-{:02} 08:{:02}:00", 1 + i % 20, i % 60),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            p.orders.insert(number, row);
        }
        // The first call of the run finds Peoplevox over its limit for a moment.
        p.limited = 1;
    }
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Peoplevox orders", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual",
                "params": {"template": "Sales orders", "since_field": "LastUpdated", "entity_id_path": "SalesOrderNumber"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Peoplevox orders", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 230);
    let e = events.iter().find(|e| e["entity_id"] == "SO-0042").unwrap();
    assert_eq!(e["payload_in"]["Customer"], "Customer 42, Ltd");
    assert_eq!(e["payload_in"]["Status"], "Despatched");
    {
        let mut p = pvx.lock().unwrap();
        let pages: Vec<&str> = p
            .calls
            .iter()
            .filter(|(op, _)| op == "GetData")
            .map(|(_, asked)| asked.as_str())
            .collect();
        assert_eq!(
            pages,
            [
                "Sales orders|1|100|",
                "Sales orders|2|100|",
                "Sales orders|3|100|"
            ]
        );
        assert_eq!(
            p.calls[..2],
            [
                ("Authenticate".to_string(), "429".to_string()),
                ("Authenticate".to_string(), String::new())
            ],
            "the first call met the limit and was made again"
        );
        p.calls.clear();
        // Two orders change after the newest the run saw; the session expires meanwhile.
        for n in ["SO-0007", "SO-0099"] {
            p.orders
                .get_mut(n)
                .unwrap()
                .insert("LastUpdated".into(), "2026-11-30 09:00:00".into());
        }
        p.sessions.clear();
    }
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let mut numbers: Vec<String> = events_of(&s, &job)
        .await
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["SO-0007", "SO-0099"]);
    {
        let p = pvx.lock().unwrap();
        assert_eq!(p.ops(), ["GetData", "Authenticate", "GetData"]);
        assert_eq!(
            p.calls[2].1, "Sales orders|1|100|LastUpdated >= DateTime(2026,11,20,08,59,00)",
            "the newest row before the change: day 20"
        );
    }
    // Another order saved in the same second as the newest read: the next run reads it, and
    // not the two it read at that second already.
    pvx.lock()
        .unwrap()
        .orders
        .get_mut("SO-0010")
        .unwrap()
        .insert("LastUpdated".into(), "2026-11-30 09:00:00".into());
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let numbers: Vec<&str> = events
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["SO-0010"]);
    // A search clause of the source's own, a server fault waited out, small pages.
    let despatched = s
        .create(
            "/sources",
            json!({"title": "Despatched", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual",
                "params": {"template": "Sales orders", "search_clause": "Status == \"Despatched\" AND SalesOrderNumber.StartsWith(\"SO-00\")", "page_size": 10}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Despatched", "sales_order", &despatched, &sink.url())
        .await;
    pvx.lock().unwrap().failing = 1;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 33, "SO-0003 … SO-0099 in steps of 3");
    assert!(events
        .iter()
        .all(|e| e["payload_in"]["Status"] == "Despatched"));

    // A template Peoplevox does not have: its refusal fails the run.
    let missing = s
        .create(
            "/sources",
            json!({"title": "Nothing", "system": "peoplevox", "function": "peoplevox.data",
                "key_id": k["id"], "trigger": "manual", "params": {"template": "Sales ordres"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("Nothing", "sales_order", &missing, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("INVALID_SCHEMA") && m.contains("Template 'Sales ordres' does not exist"),
        "{j}"
    );

    // A wrong password fails the run with Peoplevox's answer.
    let bad = key(&s, &base, "wrong").await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"]}),
    )
    .await;
    let stream = s
        .passthrough_stream("Peoplevox bad", "sales_order", &source, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Invalid username or password"),
        "{j}"
    );
    assert_eq!(
        pvx.lock().unwrap().over_limit,
        0,
        "requests are paced within the limit"
    );
}

async fn callbacks_are_subscribed_received_and_unsubscribed(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.public_base_url = Some(PUBLIC.into());
    let s = Server::start(config).await;
    let sink = Sink::ok().await;
    let (base, pvx) = peoplevox().await;
    let k = key(&s, &base, PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Despatches", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": k["id"], "trigger": "webhook",
                "params": {"event_type": "TrackingNumberReceived", "entity_id_path": "SalesOrderNumber"}}),
        )
        .await;
    let sink_destination = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send", "params": {"url": sink.url()}}),
        )
        .await;
    s.create(
        "/streams",
        json!({"title": "Despatches to Shopify", "data_type": "shipment", "source_id": source["id"],
            "transformation_id": DESPATCH_TO_FULFILLMENT, "destination_id": sink_destination["id"]}),
    )
    .await;
    let id = source["id"].as_str().unwrap();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let hook = source["webhook_url"].as_str().unwrap();
    let local = |url: &str| url.replace(PUBLIC, &s.url(""));
    let subscription = {
        let p = pvx.lock().unwrap();
        assert_eq!(p.subscriptions.len(), 1);
        let (event, filter, url, _) = &p.subscriptions[&1];
        assert_eq!(event, "TrackingNumberReceived");
        assert_eq!(filter, "");
        assert_eq!(
            *url,
            format!("{hook}?SalesOrderNumber={{Picks.SalesOrder.SalesOrderNumber}}&DespatchNumber={{DespatchNumber}}&TrackingNumber={{TrackingNumber}}&Carrier={{Carrier.Number}}&Service={{ServiceType.Name}}&ServiceCode={{ServiceType.Code}}&Email={{Picks.SalesOrder.Email}}")
        );
        url.clone()
    };
    assert_eq!(out["webhooks"]["subscriptions"][0]["id"], 1);
    assert_eq!(
        out["webhooks"]["subscriptions"][0]["topic"],
        "TrackingNumberReceived"
    );
    assert_eq!(
        out["webhooks"]["subscriptions"][0]["callback_url"],
        subscription
    );

    // Peoplevox calls back with GET: the parameters, decoded, are the record.
    let values = json!({"Picks.SalesOrder.SalesOrderNumber": "1042", "DespatchNumber": "D000456",
        "TrackingNumber": "JD0002212345678", "Carrier.Number": "DPD",
        "ServiceType.Name": "UK Standard 1-2 Days (Tracked)", "ServiceType.Code": "DPD12",
        "Picks.SalesOrder.Email": "jo.bloggs+pvx@example.com"});
    let (status, r) = fire(&s, &pvx, "TrackingNumberReceived", &values).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["entity_id"], "1042");
    assert_eq!(
        events[0]["payload_in"],
        json!({"SalesOrderNumber": "1042", "DespatchNumber": "D000456", "TrackingNumber": "JD0002212345678",
            "Carrier": "DPD", "Service": "UK Standard 1-2 Days (Tracked)", "ServiceCode": "DPD12",
            "Email": "jo.bloggs+pvx@example.com"})
    );
    assert_eq!(
        events[0]["payload_out"],
        json!({"order_name": "#1042", "tracking": {"number": "JD0002212345678", "company": "DPD", "url": null},
            "notify_customer": true})
    );
    assert_eq!(sink.received().len(), 1);
    // A HEAD of the callback stores nothing.
    let head = s
        .client
        .head(local(&format!(
            "{hook}?SalesOrderNumber=1043&TrackingNumber=X1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A name given twice (a value with an unencoded `&`) is refused: no value can be trusted.
    let (status, problem) = read(
        s.client
            .get(local(&format!(
                "{hook}?SalesOrderNumber=1043&Email=a&SalesOrderNumber=9&TrackingNumber=X2"
            )))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("`SalesOrderNumber` twice"),
        "{problem}"
    );
    // The same callback again is the same delivery.
    let (status, again) = fire(&s, &pvx, "TrackingNumberReceived", &values).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    let (_, jobs) = s.get("/jobs").await;
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        1,
        "neither the HEAD nor the repeat made a job"
    );
    // Subscribed with SubscribePostEvent, Peoplevox posts the values as a form; a POST with
    // the values in its URL and no body is read the same way.
    for (url, body, number) in [
        (
            local(hook),
            "SalesOrderNumber=1043&TrackingNumber=JD9&Carrier=DPD",
            "1043",
        ),
        (
            local(&format!(
                "{hook}?SalesOrderNumber=1044&TrackingNumber=JD10&Carrier=DPD"
            )),
            "",
            "1044",
        ),
    ] {
        let mut req = s.client.post(url).body(body);
        if !body.is_empty() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let (status, r) = read(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        let job = r["job_id"].as_str().unwrap();
        assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
        let events = events_of(&s, job).await;
        assert_eq!(events[0]["entity_id"], number);
        assert_eq!(events[0]["payload_out"]["tracking"]["company"], "DPD");
    }
    // A callback with no parameters carries no record.
    let (status, _) = read(s.client.get(local(hook)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Other sources still answer GET with 405.
    let http = s
        .create(
            "/sources",
            json!({"title": "HTTP", "system": "http", "function": "http.webhook", "trigger": "webhook", "params": {}}),
        )
        .await;
    let res = s
        .client
        .get(local(http["webhook_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The session expired meanwhile: uninstalling signs in again and removes the subscription.
    expire(&pvx);
    pvx.lock().unwrap().calls.clear();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/uninstall"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    {
        let p = pvx.lock().unwrap();
        assert!(p.subscriptions.is_empty());
        assert_eq!(
            p.ops(),
            ["UnsubscribeEvent", "Authenticate", "UnsubscribeEvent"]
        );
        assert_eq!(p.calls[2].1, "1");
    }
    // An event type Peoplevox does not have, and one whose fields must be named: refused.
    s.patch(
        &format!("/sources/{id}"),
        json!({"params": {"event_type": "Returns"}}),
    )
    .await;
    let (status, problem) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("callback_fields"),
        "{problem}"
    );
    s.patch(
        &format!("/sources/{id}"),
        json!({"params": {"event_type": "AvailabilityChanges", "filter": "site == \"PrimarySite\""}}),
    )
    .await;
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    {
        let p = pvx.lock().unwrap();
        let (event, filter, url, _) = &p.subscriptions[&2];
        assert_eq!(event, "AvailabilityChanges");
        assert_eq!(filter, "site == \"PrimarySite\"");
        assert!(
            url.ends_with("?ItemCode={ItemCode}&Available={Available}"),
            "{url}"
        );
    }
    // A stock level called back again is news, not a repeat: each is stored.
    for _ in 0..2 {
        let values = json!({"ItemCode": "TEE-BLU-M", "Available": "5"});
        let (status, r) = fire(&s, &pvx, "AvailabilityChanges", &values).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["duplicate"], false);
    }
    // A wrong password: Peoplevox's refusal, quoted.
    let bad = key(&s, &base, "wrong").await;
    s.patch(&format!("/sources/{id}"), json!({"key_id": bad["id"]}))
        .await;
    let (status, problem) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("UNAUTHORIZED") && detail.contains("Invalid username or password"),
        "{problem}"
    );
}

both_stores!(
    imports_go_in_order_in_one_session,
    import_refusals_are_final_and_failures_retried,
    template_rows_are_read_page_by_page_then_only_what_changed,
    callbacks_are_subscribed_received_and_unsubscribed,
);
