//! DEAR through its API, against the local DEAR in `server.rs`: sales read on a schedule,
//! sales made from the output (and from a Shopify order through the library), sales fulfilled
//! (`dear.fulfilment`, its retries and DEAR's refusals and limit), and stock read
//! (`dear.stock`) into the library's Shopify inventory levels.

pub(crate) mod server;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use server::{add_order, by_sku, dear, use_up_the_limit, Dear, MAIN};

use crate::both_stores;
use crate::common::Db;
use crate::engine::{attempts, events_of, run, start, wait_for_job};
use crate::peers::Sink;

async fn sales_are_read_by_updated_since_within_the_limit(db: Db) {
    let (_env, s) = start(db).await;
    let sink = Sink::ok().await;
    let (base, dear) = dear().await;
    let key = dear_key(&s, &base, "app-key").await;
    let source = s
        .create(
            "/sources",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let stream = s
        .passthrough_stream("DEAR sales", "sales_order", &source, &sink.url())
        .await;
    let stream = stream["id"].as_str().unwrap();

    // All 230, after waiting out one 429, in three pages of 100.
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 230);
    // Known by the sale id, as DEAR's webhooks know it (one history for both).
    assert!(events
        .iter()
        .any(|e| e["entity_id"] == "5b4e5f8c-0000-4c1e-9a3e-000000000042"
            && e["payload_in"]["OrderNumber"] == "SO-00042"));
    let newest = {
        let mut d = dear.lock().unwrap();
        assert_eq!(d.calls.len(), 3);
        assert_eq!(d.calls[2].get("page").map(String::as_str), Some("3"));
        assert!(d.calls.iter().all(|c| !c.contains_key("updatedsince")));
        d.calls.clear();
        // Two sales change after the newest the run saw.
        for i in [7u32, 99] {
            let id = format!("5b4e5f8c-0000-4c1e-9a3e-{i:012}");
            d.sales.get_mut(&id).unwrap()["Updated"] = json!("2026-11-30T09:00:00.5Z");
        }
        // The newest `Updated` before the change: day 20, and the largest fraction there.
        d.sales
            .values()
            .filter(|s| s["Updated"].as_str().unwrap().starts_with("2026-11-20"))
            .map(|s| s["Updated"].as_str().unwrap().to_string())
            .max_by_key(|u| {
                chrono::NaiveDateTime::parse_from_str(
                    u.trim_end_matches('Z'),
                    "%Y-%m-%dT%H:%M:%S%.f",
                )
                .unwrap()
            })
            .unwrap()
    };
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let mut numbers: Vec<&str> = events
        .iter()
        .map(|e| e["payload_in"]["OrderNumber"].as_str().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["SO-00007", "SO-00099"]);
    {
        let d = dear.lock().unwrap();
        let since = d.calls[0].get("updatedsince").unwrap();
        // Written as DEAR's parameters are: milliseconds, no zone.
        let want = chrono::NaiveDateTime::parse_from_str(
            newest.trim_end_matches('Z'),
            "%Y-%m-%dT%H:%M:%S%.f",
        )
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
        assert_eq!(since, &want);
    }

    // In full, and only one status: the sale as `GET /sale` answers it.
    let full = s
        .create(
            "/sources",
            json!({"title": "DEAR ordered", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual",
                "params": {"status": "ORDERED", "full": true, "since": "2026-11-30T00:00:00"}}),
        )
        .await;
    let stream = s
        .passthrough_stream("DEAR ordered", "sales_order", &full, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 0, "SO-00007 and SO-00099 are INVOICED");
    {
        let mut d = dear.lock().unwrap();
        let id = format!("5b4e5f8c-0000-4c1e-9a3e-{:012}", 8);
        d.sales.get_mut(&id).unwrap()["Updated"] = json!("2026-11-30T10:00:00Z");
    }
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["entity_id"],
        "5b4e5f8c-0000-4c1e-9a3e-000000000008"
    );
    assert_eq!(events[0]["payload_in"]["OrderNumber"], "SO-00008");
    assert_eq!(events[0]["payload_in"]["Order"]["Lines"][0]["SKU"], "A-1");

    // Wrong credentials fail the run with DEAR's answer.
    let bad = dear_key(&s, &base, "wrong").await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"]}),
    )
    .await;
    let stream = s
        .passthrough_stream("DEAR bad", "sales_order", &source, &sink.url())
        .await;
    let job = run(&s, stream["id"].as_str().unwrap()).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Incorrect credentials!"),
        "{j}"
    );
}

async fn sales_are_created_updated_and_ordered(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    dear.lock().unwrap().limited = false;
    let key = dear_key(&s, &base, "app-key").await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sale",
                "key_id": key["id"], "params": {}, "retry": {"schedule_seconds": [0], "timeout_seconds": 10}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "To DEAR", "data_type": "sales_order", "source_id": source["id"],
                "transformation_id": crate::common::PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    let existing = "5b4e5f8c-0000-4c1e-9a3e-000000000005";
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        stream["id"].as_str().unwrap(),
        json!([
            {"Customer": "Cash Customer", "Location": "Main Warehouse", "CustomerReference": "#1042",
             "Order": {"Lines": [{"SKU": "A-1", "Name": "Bread", "Quantity": 2, "Price": 9.5, "Tax": 0, "TaxRule": "Tax Exempt"}]}},
            {"ID": existing, "Note": "Gift wrap"},
            {"ID": "00000000-0000-0000-0000-000000000000", "Note": "lost"},
            {"Customer": "No Location"},
            {"Customer": "Elsewhere", "Location": "Nowhere"}
        ]),
    )
    .await;
    let by = |needle: &str| {
        events
            .iter()
            .find(|e| e["payload_in"].to_string().contains(needle))
            .unwrap()
            .clone()
    };
    assert_eq!(by("#1042")["status"], "OK", "{}", by("#1042"));
    assert_eq!(by("Gift wrap")["status"], "OK");
    assert_eq!(
        by("Gift wrap")["destination_ref"],
        existing,
        "the sale it changed"
    );
    assert!(
        by("#1042")["destination_ref"]
            .as_str()
            .is_some_and(|id| !id.is_empty() && id != existing),
        "the sale it made: {}",
        by("#1042")
    );
    assert_eq!(by("lost")["error_code"], "NOT_FOUND");
    assert!(by("lost")["message"]
        .as_str()
        .unwrap()
        .contains("Sale not found"));
    assert_eq!(by("No Location")["error_code"], "INVALID_SCHEMA");
    let elsewhere = by("Elsewhere");
    assert_eq!(elsewhere["error_code"], "INVALID_SCHEMA");
    assert!(elsewhere["message"]
        .as_str()
        .unwrap()
        .contains("'Nowhere' does not exist"));
    let d = dear.lock().unwrap();
    let kinds: Vec<&str> = d.written.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "POST sale").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "PUT sale").count(), 1);
    let (_, created) = d.written.iter().find(|(k, _)| k == "POST sale").unwrap();
    assert_eq!(
        created["SkipQuote"], true,
        "so the order can be added at once"
    );
    assert!(
        created.get("Order").is_none(),
        "the order goes on its own call"
    );
    let (_, order) = d
        .written
        .iter()
        .find(|(k, _)| k == "POST sale/order")
        .unwrap();
    assert_eq!(order["SaleID"], created["ID"]);
    assert_eq!(order["Status"], "AUTHORISED");
    assert_eq!(order["Lines"][0]["SKU"], "A-1");
    assert_eq!(d.sales[existing]["Note"], "Gift wrap");
}

async fn dear_sale_from_a_shopify_order_through_the_library(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    dear.lock().unwrap().limited = false;
    let key = dear_key(&s, &base, "app-key").await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Shopify orders", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR sales", "system": "dear", "function": "dear.sale",
                "key_id": key["id"], "params": {}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Shopify to DEAR", "data_type": "sales_order", "source_id": source["id"],
                "transformation_id": "01900000-0000-7000-8000-000000000009", "destination_id": destination["id"],
                "settings": {"location": "Main Warehouse", "tax_rule": "20% (VAT on Income)"}}),
        )
        .await;
    let order: Value = serde_json::from_str(include_str!(
        "../../../src/transform/library/samples/shopify_order.json"
    ))
    .unwrap();
    let (_, events) =
        crate::engine::upload_and_wait(&s, stream["id"].as_str().unwrap(), json!([order])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let d = dear.lock().unwrap();
    let (_, sale) = d.written.iter().find(|(k, _)| k == "POST sale").unwrap();
    assert_eq!(sale["CustomerReference"], "#1042");
    assert_eq!(sale["Location"], "Main Warehouse");
    assert_eq!(sale["SkipQuote"], true);
    let (_, placed) = d
        .written
        .iter()
        .find(|(k, _)| k == "POST sale/order")
        .unwrap();
    assert_eq!(placed["SaleID"], sale["ID"]);
    assert_eq!(placed["Status"], "AUTHORISED");
    let skus: Vec<&str> = placed["Lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["SKU"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["TEE-BLU-M", "TOTE-HBR"]);
    assert_eq!(placed["AdditionalCharges"][0]["Price"], 3.95);
}

/// A DEAR key, a `dear.fulfilment` destination with it (retried twice, at once unless DEAR
/// asks to wait) and a stream to it that takes uploads: the stream's id.
async fn fulfilment_stream(s: &crate::common::Server, base: &str, application_key: &str) -> String {
    let key = dear_key(s, base, application_key).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Shipments", "system": "dear", "function": "dear.sales",
                "key_id": key["id"], "trigger": "manual", "params": {}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "DEAR fulfilment", "system": "dear", "function": "dear.fulfilment",
                // A try may take most of a minute: the sales' calls share one account's 60
                // calls a minute, and a try waits for its turns within its own time.
                "key_id": key["id"], "params": {}, "retry": {"schedule_seconds": [0, 0], "timeout_seconds": 60}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Ship in DEAR", "data_type": "shipment", "source_id": source["id"],
                "transformation_id": crate::common::PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    stream["id"].as_str().unwrap().to_string()
}

/// The upload's event for this sale.
fn event_of<'a>(events: &'a [Value], sale: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["payload_in"]["SaleID"] == sale)
        .unwrap()
}

fn calls_for(d: &Dear, sale: &str) -> Vec<String> {
    d.fulfil_calls
        .iter()
        .filter(|(_, s)| s == sale)
        .map(|(c, _)| c.clone())
        .collect()
}

const S1: &str = "916ab4c0-6ccb-4c93-873d-000000000001";
const S2: &str = "916ab4c0-6ccb-4c93-873d-000000000002";
const S3: &str = "916ab4c0-6ccb-4c93-873d-000000000003";
const S4: &str = "916ab4c0-6ccb-4c93-873d-000000000004";
const S5: &str = "916ab4c0-6ccb-4c93-873d-000000000005";
const S6: &str = "916ab4c0-6ccb-4c93-873d-000000000006";
const S7: &str = "916ab4c0-6ccb-4c93-873d-000000000007";

async fn dear_fulfilment_picks_packs_and_ships(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        add_order(
            &mut d,
            S1,
            "AUTHORISED",
            &[("TEE-BLU-M", 2), ("TOTE-HBR", 1)],
        );
        add_order(
            &mut d,
            S2,
            "AUTHORISED",
            &[("TEE-BLU-M", 3), ("TOTE-HBR", 2)],
        );
        add_order(&mut d, S3, "DRAFT", &[("TEE-BLU-M", 1)]);
        add_order(&mut d, S4, "AUTHORISED", &[("TOTE-HBR", 1)]);
        add_order(&mut d, S6, "AUTHORISED", &[("TOTE-HBR", 1)]);
        d.fail
            .push(("GET fulfilment".into(), S6.into(), 200, false));
    }
    let stream = fulfilment_stream(&s, &base, "app-key").await;
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([
            // Autopick, everything in one box, one parcel.
            {"SaleID": S1, "ship": {"ShippingNotes": "Leave with neighbour", "Lines": [
                {"Carrier": "Royal Mail", "TrackingNumber": "RM123456785GB",
                 "TrackingURL": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
                 "ShipmentDate": "2026-11-30"}]}},
            // Part of the order picked as given, in two boxes; one tracking number for both.
            {"SaleID": S2,
             "pick": {"Lines": [{"SKU": "TEE-BLU-M", "Quantity": 2, "Location": "Main Warehouse"},
                                {"SKU": "TOTE-HBR", "Quantity": 1, "Location": "Main Warehouse"}]},
             "pack": {"Lines": [{"SKU": "TEE-BLU-M", "Quantity": 2, "Location": "Main Warehouse", "Box": "Box A"},
                                {"SKU": "TOTE-HBR", "Quantity": 1, "Location": "Main Warehouse", "Box": "Box B"}]},
             "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "15501234567890"}]}},
            // DEAR's refusals: the order is not authorised; an unknown sale; a box never packed.
            {"SaleID": S3, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "1"}]}},
            {"SaleID": "00000000-0000-0000-0000-000000000000"},
            {"SaleID": S4, "pack": {"Box": "Carton 1"}, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "2", "Box": "Carton 9"}]}},
            // A refusal that comes with a 200.
            {"SaleID": S6},
            // Refused before any call: not a fulfilment.
            {"SaleID": S5, "pick": "by hand"}
        ]),
    )
    .await;
    let one = event_of(&events, S1);
    assert_eq!(one["status"], "OK", "{one}");
    assert_eq!(one["attempt_count"], 1);
    assert_eq!(
        one["destination_ref"],
        dear.lock().unwrap().tasks[S1][0]["TaskID"],
        "the fulfilment task"
    );
    let two = event_of(&events, S2);
    assert_eq!(two["status"], "OK", "{two}");
    let draft = event_of(&events, S3);
    assert_eq!(draft["status"], "FAILED");
    assert_eq!(draft["error_code"], "INVALID_SCHEMA");
    assert_eq!(draft["attempt_count"], 1, "a refusal is not retried");
    assert!(
        draft["message"]
            .as_str()
            .unwrap()
            .contains("Sale Order is not authorised"),
        "{draft}"
    );
    let unknown = event_of(&events, "00000000-0000-0000-0000-000000000000");
    assert_eq!(unknown["status"], "FAILED");
    assert_eq!(unknown["error_code"], "NOT_FOUND");
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("Sale not found"));
    let unpacked = event_of(&events, S4);
    assert_eq!(unpacked["error_code"], "INVALID_SCHEMA");
    assert_eq!(unpacked["attempt_count"], 1);
    assert!(
        unpacked["message"]
            .as_str()
            .unwrap()
            .contains("Box 'Carton 9' is not packed"),
        "{unpacked}"
    );
    // Shipping again without a task or a tracking number, after a shipment: a retry could not
    // tell it from its own, so it is refused rather than picking and shipping the rest.
    let (_, again) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S1, "ship": {"Lines": [{"Carrier": "DPD"}]}}]),
    )
    .await;
    assert_eq!(again[0]["status"], "FAILED", "{}", again[0]);
    assert_eq!(again[0]["error_code"], "INVALID_SCHEMA");
    assert!(
        again[0]["message"]
            .as_str()
            .unwrap()
            .contains("names neither a `TaskID`"),
        "{}",
        again[0]
    );
    assert_eq!(dear.lock().unwrap().tasks[S1].len(), 1, "no second task");
    // New parcels for a task shipped already are refused, not answered as shipped.
    let task = dear.lock().unwrap().tasks[S1][0]["TaskID"].clone();
    let (_, again) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S1, "TaskID": task, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "NEW-1"}]}}]),
    )
    .await;
    assert_eq!(again[0]["error_code"], "INVALID_SCHEMA", "{}", again[0]);
    assert!(
        again[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not take more parcels (NEW-1)"),
        "{}",
        again[0]
    );
    // The same parcel again (a replay) is done.
    let (_, again) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S1, "ship": {"Lines": [{"Carrier": "Royal Mail", "TrackingNumber": "RM123456785GB"}]}}]),
    )
    .await;
    assert_eq!(again[0]["status"], "OK", "{}", again[0]);
    assert_eq!(again[0]["destination_ref"], task);
    let refused_in_200 = event_of(&events, S6);
    assert_eq!(refused_in_200["status"], "FAILED");
    assert_eq!(refused_in_200["error_code"], "INVALID_SCHEMA");
    assert!(
        refused_in_200["message"]
            .as_str()
            .unwrap()
            .contains("Sale is being edited by another user"),
        "{refused_in_200}"
    );
    let by_hand = events
        .iter()
        .find(|e| e["payload_in"]["pick"] == "by hand")
        .unwrap();
    assert_eq!(by_hand["error_code"], "INVALID_SCHEMA");
    assert!(by_hand["message"].as_str().unwrap().contains("`pick`"));

    {
        let d = dear.lock().unwrap();
        assert_eq!(
            calls_for(&d, S1),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "POST ship",
                // The refused second shipment, the refused parcel and the replay each read the
                // tasks and went no further.
                "GET fulfilment",
                "GET fulfilment",
                "GET fulfilment"
            ]
        );
        let task = &d.tasks[S1][0];
        assert_eq!(task["FulFilmentStatus"], "FULFILLED");
        assert_eq!(task["Pick"]["Status"], "AUTHORISED");
        assert_eq!(
            task["Pick"]["Lines"].as_array().unwrap().len(),
            2,
            "autopicked"
        );
        assert_eq!(task["Pack"]["Status"], "AUTHORISED");
        let packed = task["Pack"]["Lines"].as_array().unwrap();
        assert!(
            packed
                .iter()
                .all(|l| l["Box"] == "Box 1" && l["Location"] == MAIN),
            "{packed:?}"
        );
        assert_eq!(by_sku(packed)["TEE-BLU-M"], 2.0);
        assert_eq!(task["Ship"]["Status"], "AUTHORISED");
        assert_eq!(task["Ship"]["ShippingNotes"], "Leave with neighbour");
        assert_eq!(
            task["Ship"]["Lines"],
            json!([{"ID": "51fbd688-47ab-469c-a585-000000000001", "ShipmentDate": "2026-11-30",
                "Carrier": "Royal Mail", "Boxes": "Box 1", "TrackingNumber": "RM123456785GB",
                "TrackingURL": "https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB",
                "IsShipped": true}])
        );

        let task = &d.tasks[S2][0];
        assert_eq!(
            by_sku(task["Pick"]["Lines"].as_array().unwrap())["TEE-BLU-M"],
            2.0,
            "the lines given"
        );
        assert_eq!(
            task["Ship"]["Status"], "AUTHORISED",
            "every packed box shipped"
        );
        let boxes: Vec<&str> = task["Ship"]["Lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                assert_eq!(l["TrackingNumber"], "15501234567890");
                assert!(
                    l["ShipmentDate"].as_str().unwrap().len() == 19,
                    "now, as DEAR writes times"
                );
                l["Boxes"].as_str().unwrap()
            })
            .collect();
        assert_eq!(boxes, ["Box A", "Box B"]);

        // S4 stopped at its ship: picked and packed in the box the output named.
        let task = &d.tasks[S4][0];
        assert_eq!(task["Pack"]["Status"], "AUTHORISED");
        assert_eq!(task["Pack"]["Lines"][0]["Box"], "Carton 1");
        assert_eq!(task["Ship"]["Status"], "DRAFT");
        assert!(!d.tasks.contains_key(S3));
        assert_eq!(calls_for(&d, S6), ["GET fulfilment"]);
    }

    // Picked and packed as a draft first; a later output ships it, and the draft pack is
    // replaced (PUT), not added to: a POST would pack every line twice.
    add_order(
        &mut dear.lock().unwrap(),
        S7,
        "AUTHORISED",
        &[("CAP-RED", 2)],
    );
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S7, "pack": {"Status": "DRAFT"}}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(dear.lock().unwrap().tasks[S7][0]["Pack"]["Status"], "DRAFT");
    let (_, events) = crate::engine::upload_and_wait(
        &s,
        &stream,
        json!([{"SaleID": S7, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": "T-7"}]}}]),
    )
    .await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let d = dear.lock().unwrap();
    assert_eq!(
        calls_for(&d, S7),
        [
            "GET fulfilment",
            "POST fulfilment",
            "POST pick",
            "POST pack",
            "GET fulfilment",
            "PUT pack",
            "POST ship"
        ]
    );
    let task = &d.tasks[S7][0];
    assert_eq!(
        by_sku(task["Pack"]["Lines"].as_array().unwrap())["CAP-RED"],
        2.0
    );
    assert_eq!(task["FulFilmentStatus"], "FULFILLED");
}

async fn dear_fulfilment_retries_go_on_from_the_stage_reached(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        add_order(&mut d, S1, "AUTHORISED", &[("TEE-BLU-M", 2)]);
        add_order(&mut d, S2, "AUTHORISED", &[("TOTE-HBR", 1)]);
        // S1's pack fails; S2's shipment is made but its answer is lost.
        d.fail.push(("pack".into(), S1.into(), 500, false));
        d.fail.push(("ship".into(), S2.into(), 502, true));
    }
    let stream = fulfilment_stream(&s, &base, "app-key").await;
    let ship = |sale: &str, tracking: &str| json!({"SaleID": sale, "ship": {"Lines": [{"Carrier": "DPD", "TrackingNumber": tracking, "ShipmentDate": "2026-11-30T10:00:00"}]}});
    let (_, events) =
        crate::engine::upload_and_wait(&s, &stream, json!([ship(S1, "T-1"), ship(S2, "T-2")]))
            .await;
    for (sale, status) in [(S1, 500), (S2, 502)] {
        let e = event_of(&events, sale);
        assert_eq!(e["status"], "OK", "{e}");
        let tries = attempts(&s, e).await;
        let outcomes: Vec<&str> = tries
            .iter()
            .map(|a| a["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["RETRY", "SUCCESS"], "{tries:?}");
        assert_eq!(tries[0]["error_code"], "SERVER_ERROR");
        assert_eq!(tries[0]["http_status"], status);
    }
    {
        let d = dear.lock().unwrap();
        // The retry read the task and went on with its pack: no second task, no second pick.
        assert_eq!(
            calls_for(&d, S1),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "GET fulfilment",
                "POST pack",
                "POST ship"
            ]
        );
        // The shipment went through the first time: the retry found it done.
        assert_eq!(
            calls_for(&d, S2),
            [
                "GET fulfilment",
                "POST fulfilment",
                "POST pick",
                "POST pack",
                "POST ship",
                "GET fulfilment"
            ]
        );
        for sale in [S1, S2] {
            assert_eq!(d.tasks[sale].len(), 1);
            assert_eq!(d.tasks[sale][0]["FulFilmentStatus"], "FULFILLED");
            assert_eq!(
                d.tasks[sale][0]["Ship"]["Lines"].as_array().unwrap().len(),
                1
            );
        }
    }

    // DEAR's limit, used up by another application on the key: the 429 asks for
    // `1 Seconds`, which is waited, and the event goes through.
    {
        let mut d = dear.lock().unwrap();
        add_order(&mut d, S5, "AUTHORISED", &[("TEE-BLU-M", 1)]);
        use_up_the_limit(&mut d);
    }
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S5, "T-5")])).await;
    let e = &events[0];
    assert_eq!(e["status"], "OK", "{e}");
    let tries = attempts(&s, e).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED");
    assert_eq!(tries[0]["http_status"], 429);
    assert_eq!(tries[1]["outcome"], "SUCCESS");
    let t = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["started_at"].as_str().unwrap()).unwrap()
    };
    assert!(
        t(&tries[1]) - t(&tries[0]) >= chrono::Duration::milliseconds(900),
        "{tries:?}"
    );
    assert_eq!(
        dear.lock().unwrap().tasks[S5][0]["FulFilmentStatus"],
        "FULFILLED"
    );

    // As DEAR documents its limit: a 503 with the same text.
    {
        let mut d = dear.lock().unwrap();
        add_order(&mut d, S6, "AUTHORISED", &[("TEE-BLU-M", 1)]);
        d.limit_status = 503;
        use_up_the_limit(&mut d);
    }
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S6, "T-6")])).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    let tries = attempts(&s, &events[0]).await;
    assert_eq!(tries[0]["error_code"], "RATE_LIMITED");
    assert_eq!(tries[0]["http_status"], 503);

    // Wrong credentials: DEAR's 403 text, not retried.
    let stream = fulfilment_stream(&s, &base, "wrong").await;
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, json!([ship(S6, "T-7")])).await;
    let e = &events[0];
    assert_eq!(e["status"], "FAILED");
    assert_eq!(e["error_code"], "UNAUTHORIZED");
    assert_eq!(e["attempt_count"], 1);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect credentials!"),
        "{e}"
    );
}

/// A stock row as `ref/productavailability` lists it.
/// A DEAR key for the local DEAR at `base`, account `acct-1`.
pub(crate) async fn dear_key(
    s: &crate::common::Server,
    base: &str,
    application_key: &str,
) -> Value {
    s.create(
        "/keys",
        json!({"system": "dear", "title": "DEAR", "credentials": {
        "account_id": "acct-1", "application_key": application_key, "base_url": base}}),
    )
    .await
}

pub(crate) fn row(
    sku: &str,
    location: &str,
    bin: Option<&str>,
    on_hand: f64,
    allocated: f64,
) -> Value {
    json!({"ID": format!("p-{sku}"), "SKU": sku, "Name": format!("Product {sku}"), "Barcode": null,
        "Location": location, "Bin": bin, "Batch": null, "ExpiryDate": null,
        "OnHand": on_hand, "Allocated": allocated, "Available": on_hand - allocated,
        "OnOrder": 0, "StockOnHand": on_hand, "InTransit": 0})
}

async fn dear_stock_is_read_whole_every_run(db: Db) {
    let (_env, s) = start(db).await;
    let (base, dear) = dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        d.stock = vec![
            row("TEE-BLU-M", "Main Warehouse", Some("A-1"), 10.0, 2.0),
            row("TEE-BLU-M", "Main Warehouse", Some("A-2"), 3.5, 0.0),
            row("TEE-BLU-M", "Shop", None, 4.0, 0.0),
            row("TOTE-HBR", "Main Warehouse", None, 1.0, 3.0),
            row("CAP-RED", "Main Warehouse", None, 7.0, 0.0),
        ];
        // Page 2 fails once.
        d.fail.push(("stock".into(), "2".into(), 500, false));
    }
    let key = dear_key(&s, &base, "app-key").await;
    let source = s
        .create(
            "/sources",
            json!({"title": "DEAR stock", "system": "dear", "function": "dear.stock",
                "key_id": key["id"], "trigger": "manual", "params": {"page_size": 2}}),
        )
        .await;
    // Through the library's "DEAR stock to Shopify inventory".
    let sink = Sink::ok().await;
    let dest = s
        .create(
            "/destinations",
            json!({"title": "Sink", "system": "http", "function": "http.send",
                "params": {"url": sink.url()}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Stock to Shopify", "data_type": "stock", "source_id": source["id"],
                "transformation_id": "01900000-0000-7000-8000-00000000000a", "destination_id": dest["id"]}),
        )
        .await;
    let stream = stream["id"].as_str().unwrap();

    // Every row, in pages of two; page 2's server error is tried again.
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(
        j["status"], "FINISHED_WITH_ISSUES",
        "two bins' rows refused: {j}"
    );
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["entity_id"], "TEE-BLU-M");
    // A bin's row is part of its location's stock: the library refuses to set it as the
    // whole (the source should sum by SKU); a location without bins is whole.
    for bin in &events[..2] {
        assert_eq!(bin["status"], "ERROR", "{bin}");
        assert!(
            bin["message"]
                .as_str()
                .unwrap()
                .contains("set `sum_by_sku`"),
            "{bin}"
        );
    }
    let outputs: Vec<&Value> = events.iter().map(|e| &e["payload_out"]).collect();
    assert_eq!(*outputs[2], json!({"sku": "TEE-BLU-M", "available": 4}));
    assert_eq!(
        *outputs[3],
        json!({"sku": "TOTE-HBR", "available": 0}),
        "not below 0"
    );
    {
        let mut d = dear.lock().unwrap();
        let pages: Vec<&str> = d.stock_calls.iter().map(|q| q["page"].as_str()).collect();
        assert_eq!(pages, ["1", "2", "2", "3"]);
        assert!(d
            .stock_calls
            .iter()
            .all(|q| q["limit"] == "2" && !q.contains_key("location")));
        d.stock_calls.clear();
        // A snapshot: the next run reads it all again, within the limit DEAR says is
        // used up (as it documents it, a 503), waiting the `1 Seconds` it asks.
        d.limit_status = 503;
        use_up_the_limit(&mut d);
    }
    let began = Instant::now();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED_WITH_ISSUES", "{j}");
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "not the default minute"
    );
    assert_eq!(events_of(&s, &job).await.len(), 5);
    assert_eq!(dear.lock().unwrap().stock_calls.len(), 3);

    // One location, a SKU's bins summed.
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"params": {"location": "Main Warehouse", "sum_by_sku": true}}),
    )
    .await;
    let job = run(&s, stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FINISHED");
    let events = events_of(&s, &job).await;
    let summed: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| {
            (
                e["payload_in"]["SKU"].as_str().unwrap(),
                &e["payload_in"]["Available"],
            )
        })
        .collect();
    assert_eq!(
        summed,
        [
            ("TEE-BLU-M", &json!(11.5)),
            ("TOTE-HBR", &json!(-2)),
            ("CAP-RED", &json!(7))
        ]
    );
    assert_eq!(
        events[0]["payload_out"],
        json!({"sku": "TEE-BLU-M", "available": 11})
    );
    assert_eq!(
        dear.lock().unwrap().stock_calls.last().unwrap()["location"],
        "Main Warehouse"
    );

    // A SKU DEAR refuses: its message, and the run is not tried again.
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"params": {"sku": "X".repeat(51)}}),
    )
    .await;
    let before = dear.lock().unwrap().stock_calls.len();
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("INVALID_SCHEMA") && m.contains("Sku should not be longer"),
        "{j}"
    );
    assert_eq!(
        dear.lock().unwrap().stock_calls.len(),
        before + 1,
        "not tried again"
    );

    // Wrong credentials.
    let bad = dear_key(&s, &base, "wrong").await;
    s.patch(
        &format!("/sources/{}", source["id"].as_str().unwrap()),
        json!({"key_id": bad["id"], "params": {}}),
    )
    .await;
    let job = run(&s, stream).await;
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FAILED");
    let m = j["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("UNAUTHORIZED") && m.contains("Incorrect credentials!"),
        "{j}"
    );
}

both_stores!(
    sales_are_read_by_updated_since_within_the_limit,
    sales_are_created_updated_and_ordered,
    dear_sale_from_a_shopify_order_through_the_library,
    dear_fulfilment_picks_packs_and_ships,
    dear_fulfilment_retries_go_on_from_the_stage_reached,
    dear_stock_is_read_whole_every_run,
);
