//! The tutorials' integrations end to end, through the API and the local vendors: a Shopify
//! order webhook into Peoplevox, a Peoplevox despatch callback into a Shopify fulfilment, and
//! DEAR's stock on a schedule into Shopify's inventory.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{Db, Env, Server};
use crate::engine::{events_of, wait_for_job};

const SHOPIFY_TO_PEOPLEVOX: &str = "01900000-0000-7000-8000-00000000000c";
const DESPATCH_TO_FULFILLMENT: &str = "01900000-0000-7000-8000-00000000000b";
const DEAR_STOCK_TO_SHOPIFY: &str = "01900000-0000-7000-8000-00000000000a";
const ORDER: &str = include_str!("../../src/transform/library/samples/shopify_order.json");

/// A server that installs subscriptions at a public address and whose workers poll often.
async fn server(env: &Env) -> Server {
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.public_base_url = Some(crate::peoplevox::PUBLIC.into());
    Server::start(config).await
}

async fn stream(
    s: &Server,
    title: &str,
    source: &Value,
    transformation: &str,
    destination: &Value,
) {
    s.create(
        "/streams",
        json!({"title": title, "data_type": "flow", "source_id": source["id"],
            "transformation_id": transformation, "destination_id": destination["id"]}),
    )
    .await;
}

/// Shopify `orders/create` webhook → "Shopify order to Peoplevox import" → `peoplevox.import`:
/// the order and its items reach Peoplevox, in that order.
async fn a_shopify_order_becomes_a_peoplevox_sales_order(db: Db) {
    let env = Env::new(db).await;
    let s = server(&env).await;
    let (pvx_base, pvx) = crate::peoplevox::service::peoplevox().await;
    let shop = s
        .create(
            "/keys",
            json!({"system": "shopify", "title": "Shop", "credentials": {
                "shop_domain": "example.myshopify.com", "access_token": "shpat_flow",
                "webhook_secret": crate::ingest::SECRET}}),
        )
        .await;
    let source = s
        .create(
            "/sources",
            json!({"title": "New orders", "system": "shopify", "function": "shopify.webhook",
                "key_id": shop["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
        )
        .await;
    let warehouse = crate::peoplevox::key(&s, &pvx_base, crate::peoplevox::service::PASSWORD).await;
    let import = s
        .create(
            "/destinations",
            json!({"title": "Peoplevox", "system": "peoplevox", "function": "peoplevox.import",
                "key_id": warehouse["id"], "params": {}}),
        )
        .await;
    stream(
        &s,
        "Shopify to Peoplevox",
        &source,
        SHOPIFY_TO_PEOPLEVOX,
        &import,
    )
    .await;

    let hook = source["webhook_url"]
        .as_str()
        .unwrap()
        .replace(crate::peoplevox::PUBLIC, "");
    let body = ORDER.as_bytes();
    let headers = crate::ingest::shopify_headers(body, crate::ingest::SECRET, "flow-1");
    let (status, receipt) = crate::ingest::push(&s, &hook, body, &headers).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    let job = receipt["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(events[0]["entity_id"], "#1042");

    let p = pvx.lock().unwrap();
    let order = p
        .orders
        .get("1042")
        .expect("the sales order is in Peoplevox");
    assert_eq!(order["Email"], "jo.bloggs@example.com");
    assert_eq!(order["ShippingAddressPostcode"], "SW1A 1AA");
    let items: Vec<(&String, &String)> = p
        .items
        .iter()
        .filter(|((so, _), _)| so == "1042")
        .map(|((_, _), row)| (&row["ItemCode"], &row["QuantityOrdered"]))
        .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items
        .iter()
        .any(|(code, q)| *code == "TEE-BLU-M" && *q == "2"));
    assert!(items
        .iter()
        .any(|(code, q)| *code == "TOTE-HBR" && *q == "1"));
    let saves: Vec<&str> = p
        .calls
        .iter()
        .filter(|(op, _)| op == "SaveData")
        .map(|(_, what)| what.as_str())
        .collect();
    assert_eq!(saves.len(), 2, "{saves:?}");
    assert!(
        saves[0].contains("Sales orders") && saves[1].contains("Sales order items"),
        "the order before its items: {saves:?}"
    );
}

/// Peoplevox `TrackingNumberReceived` callback → "Peoplevox despatch to Shopify fulfillment"
/// → `shopify.fulfillment`: the order is fulfilled with its tracking, once.
async fn a_peoplevox_despatch_fulfils_the_shopify_order(db: Db) {
    let env = Env::new(db).await;
    let s = server(&env).await;
    let (pvx_base, pvx) = crate::peoplevox::service::peoplevox().await;
    let (shop_base, shop) = crate::shopify::store().await;
    shop.lock()
        .unwrap()
        .orders
        .push(crate::shopify::order(1042, "2026-11-30T10:00:00Z", 2));
    let warehouse = crate::peoplevox::key(&s, &pvx_base, crate::peoplevox::service::PASSWORD).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Despatches", "system": "peoplevox", "function": "peoplevox.webhook",
                "key_id": warehouse["id"], "trigger": "webhook",
                "params": {"event_type": "TrackingNumberReceived", "entity_id_path": "SalesOrderNumber"}}),
        )
        .await;
    let store_key = crate::shopify::key(&s, &shop_base, crate::shopify::TOKEN).await;
    let fulfil = s
        .create(
            "/destinations",
            json!({"title": "Shopify fulfilments", "system": "shopify", "function": "shopify.fulfillment",
                "key_id": store_key["id"], "params": {}}),
        )
        .await;
    stream(
        &s,
        "Despatches to Shopify",
        &source,
        DESPATCH_TO_FULFILLMENT,
        &fulfil,
    )
    .await;
    let id = source["id"].as_str().unwrap();
    let (status, out) = s
        .post(&format!("/sources/{id}/webhooks/install"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");

    let values = json!({"Picks.SalesOrder.SalesOrderNumber": "1042", "DespatchNumber": "D000456",
        "TrackingNumber": "JD0002212345678", "Carrier.Number": "DPD",
        "ServiceType.Name": "UK Standard 1-2 Days (Tracked)", "ServiceType.Code": "DPD12",
        "Picks.SalesOrder.Email": "jo.bloggs@example.com"});
    let (status, r) = crate::peoplevox::fire(&s, &pvx, "TrackingNumberReceived", &values).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    assert_eq!(wait_for_job(&s, job).await["status"], "FINISHED");
    let events = events_of(&s, job).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(events[0]["entity_id"], "1042");
    let made = events[0]["destination_ref"].as_str().unwrap().to_string();
    {
        let st = shop.lock().unwrap();
        let order = &st.orders[0];
        assert_eq!(order["fulfillmentOrders"][0]["status"], "CLOSED");
        let fulfilments = order["fulfillments"].as_array().unwrap();
        assert_eq!(fulfilments.len(), 1);
        assert_eq!(fulfilments[0]["id"], made.as_str());
        assert_eq!(
            fulfilments[0]["trackingInfo"][0]["number"],
            "JD0002212345678"
        );
        assert_eq!(fulfilments[0]["trackingInfo"][0]["company"], "DPD");
    }
    // The warehouse sends the despatch again (another despatch number, the same parcel): the
    // order is not fulfilled twice.
    let mut again = values.clone();
    again["DespatchNumber"] = json!("D000457");
    let (status, r) = crate::peoplevox::fire(&s, &pvx, "TrackingNumberReceived", &again).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let job = r["job_id"].as_str().unwrap();
    wait_for_job(&s, job).await;
    let events = events_of(&s, job).await;
    assert_eq!(events[0]["status"], "OK", "{}", events[0]);
    assert_eq!(events[0]["destination_ref"], made.as_str());
    assert_eq!(
        shop.lock().unwrap().orders[0]["fulfillments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A scheduled `dear.stock` source → "DEAR stock to Shopify inventory" → `shopify.inventory`:
/// each SKU's available stock at the DEAR location becomes its Shopify quantity.
async fn dear_stock_on_a_schedule_sets_shopify_inventory(db: Db) {
    let env = Env::new(db).await;
    let s = server(&env).await;
    let (dear_base, dear) = crate::dear::server::dear().await;
    {
        let mut d = dear.lock().unwrap();
        d.limited = false;
        d.stock = vec![
            crate::dear::row("TEE", "Main Warehouse", Some("A-1"), 10.0, 2.0),
            crate::dear::row("TEE", "Main Warehouse", Some("A-2"), 4.0, 0.0),
            crate::dear::row("TEE", "Shop", None, 9.0, 0.0),
            crate::dear::row("MUG", "Main Warehouse", None, 1.0, 3.0),
        ];
    }
    let (shop_base, shop) = crate::shopify::store().await;
    {
        let mut st = shop.lock().unwrap();
        st.products.push(crate::shopify::product(
            5,
            "2026-11-20T10:00:00Z",
            &["TEE", "TEE-2"],
        ));
        st.products
            .push(crate::shopify::product(6, "2026-11-20T10:00:00Z", &["MUG"]));
    }
    let erp = crate::dear::dear_key(&s, &dear_base, "app-key").await;
    let source = s
        .create(
            "/sources",
            // Yearly: the run under test is the one the test makes due.
            json!({"title": "DEAR stock", "system": "dear", "function": "dear.stock",
                "key_id": erp["id"], "trigger": "scheduled", "schedule": "0 0 1 1 *",
                "timezone": "Europe/London",
                "params": {"location": "Main Warehouse", "sum_by_sku": true}}),
        )
        .await;
    let store_key = crate::shopify::key(&s, &shop_base, crate::shopify::TOKEN).await;
    let inventory = s
        .create(
            "/destinations",
            json!({"title": "Shopify stock", "system": "shopify", "function": "shopify.inventory",
                "key_id": store_key["id"], "params": {"location_id": "gid://shopify/Location/71"}}),
        )
        .await;
    stream(
        &s,
        "Stock to Shopify",
        &source,
        DEAR_STOCK_TO_SHOPIFY,
        &inventory,
    )
    .await;

    let source_id = source["id"].as_str().unwrap();
    env.set_next_run(source_id, chrono::Utc::now() - chrono::Duration::seconds(1))
        .await;
    let job = loop {
        let (_, page) = s.get("/jobs?trigger=scheduled").await;
        if let Some(j) = page["items"].as_array().unwrap().first() {
            break j["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let j = wait_for_job(&s, &job).await;
    assert_eq!(j["status"], "FINISHED", "{j}");
    let events = events_of(&s, &job).await;
    assert_eq!(events.len(), 2, "one per SKU at the location: {events:?}");
    assert!(events.iter().all(|e| e["status"] == "OK"), "{events:?}");
    let inv = shop.lock().unwrap().inventory.clone();
    let at = |item: &str| {
        inv.get(&(
            format!("gid://shopify/InventoryItem/{item}"),
            "gid://shopify/Location/71".to_string(),
        ))
        .copied()
    };
    assert_eq!(
        at("500"),
        Some(12),
        "TEE: 8 + 4 available at Main Warehouse"
    );
    assert_eq!(
        at("600"),
        Some(0),
        "MUG: allocated past what is on hand, never below 0"
    );
    assert_eq!(at("501"), None, "TEE-2 is another product");
}

both_stores!(
    a_shopify_order_becomes_a_peoplevox_sales_order,
    a_peoplevox_despatch_fulfils_the_shopify_order,
    dear_stock_on_a_schedule_sets_shopify_inventory,
);
