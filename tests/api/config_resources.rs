//! CRUD and validation of keys, sources, destinations, transformations and streams.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{error_fields, fresh, Db, Server, PASSTHROUGH};

pub async fn shopify_key(s: &Server) -> Value {
    s.create(
        "/keys",
        json!({"system": "shopify", "title": "Main store", "credentials": {
            "shop_domain": "example.myshopify.com",
            "access_token": "shpat_topsecret_access",
            "webhook_secret": "whsec_topsecret_hook"}}),
    )
    .await
}

/// A complete stream: webhook source, passthrough, http destination.
pub async fn stream(s: &Server) -> (Value, Value, Value, Value) {
    let key = shopify_key(s).await;
    let source = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "shopify", "function": "shopify.webhook",
                   "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
        )
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "ERP", "system": "http", "function": "http.send",
                   "params": {"url": "http://127.0.0.1:9/orders"}}),
        )
        .await;
    let stream = s
        .create(
            "/streams",
            json!({"title": "Orders to ERP", "data_type": "sales_order", "source_id": source["id"],
                   "transformation_id": PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    (key, source, destination, stream)
}

async fn keys_crud(db: Db) {
    let (_env, s) = fresh(db).await;
    let key = shopify_key(&s).await;
    assert_eq!(key["system"], "shopify");
    assert_eq!(key["credentials"]["shop_domain"], "example.myshopify.com");
    assert_eq!(key["credentials"]["access_token"], "********");
    let id = key["id"].as_str().unwrap();

    let (status, got) = s.get(&format!("/keys/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, key);

    // Masked secrets sent back keep their values; other fields change.
    let (status, patched) = s
        .patch(
            &format!("/keys/{id}"),
            json!({"title": "Renamed", "credentials": {
                   "access_token": "********", "api_version": "2025-01"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["title"], "Renamed");
    assert_eq!(patched["credentials"]["api_version"], "2025-01");
    assert_eq!(patched["credentials"]["access_token"], "********");
    // Moving the key to another shop takes its secrets again (they would go there).
    let (status, patched) = s
        .patch(
            &format!("/keys/{id}"),
            json!({"credentials": {"shop_domain": "other.myshopify.com",
                   "access_token": "shpat_other", "webhook_secret": "whsec_other"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["title"], "Renamed");
    assert_eq!(patched["credentials"]["shop_domain"], "other.myshopify.com");
    assert_eq!(patched["credentials"]["access_token"], "********");
    assert_eq!(patched["credentials"]["webhook_secret"], "********");

    // Removing a required secret is refused.
    let (status, problem) = s
        .patch(
            &format!("/keys/{id}"),
            json!({"credentials": {"access_token": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&problem), vec!["credentials.access_token"]);

    let (status, list) = s.get("/keys?system=shopify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, list) = s.get("/keys?system=dear").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    let (status, _) = s.delete(&format!("/keys/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/keys/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn keys_are_validated_against_their_template(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "nope", "title": "x", "credentials": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&p), vec!["system"]);

    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {"account_id": 5, "extra": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error_fields(&p);
    for f in [
        "credentials.account_id",
        "credentials.extra",
        "credentials.application_key",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
    }

    let (status, p) = s
        .post(
            "/keys",
            json!({"system": "dear", "title": "DEAR", "credentials": {"account_id": "a",
                   "application_key": "k", "webhook_auth": {"type": "digest"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&p), vec!["credentials.webhook_auth.type"]);

    // A missing field of the body itself names it.
    let (status, p) = s
        .post("/keys", json!({"system": "http", "credentials": {}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("title"),
        "{p}"
    );

    // The generic http system needs no key fields at all.
    let k = s
        .create(
            "/keys",
            json!({"system": "http", "title": "Open API", "credentials": {}}),
        )
        .await;
    assert_eq!(k["credentials"], json!({}));
}

async fn sources_crud_and_triggers(db: Db) {
    let (_env, s) = fresh(db).await;
    let key = shopify_key(&s).await;

    let manual = s
        .create(
            "/sources",
            json!({"title": "Catalogue", "system": "http", "function": "http.fetch", "trigger": "manual",
                   "params": {"url": "http://127.0.0.1:9/items", "records_path": "items"}}),
        )
        .await;
    assert_eq!(manual["trigger"], "manual");
    assert!(manual["webhook_url"].is_null());
    assert_eq!(manual["active"], true);

    let hook = s
        .create(
            "/sources",
            json!({"title": "Orders", "system": "shopify", "function": "shopify.webhook",
                   "key_id": key["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
        )
        .await;
    let url = hook["webhook_url"].as_str().unwrap();
    assert!(url.starts_with("/hooks/") && url.len() > 20, "{url}");

    let scheduled = s
        .create(
            "/sources",
            json!({"title": "Nightly", "system": "http", "function": "http.fetch",
                   "trigger": "scheduled", "schedule": "0 2 * * *",
                   "timezone": "Europe/London", "params": {"url": "http://127.0.0.1:9/items"}}),
        )
        .await;
    assert!(scheduled["next_run_at"].is_string(), "{scheduled}");

    // Switching a webhook source to manual drops its URL; switching back makes a new one.
    let pushed = s
        .create(
            "/sources",
            json!({"title": "Pushed", "system": "http", "function": "http.webhook",
                   "trigger": "webhook"}),
        )
        .await;
    assert!(pushed["webhook_url"].is_string(), "{pushed}");
    let id = pushed["id"].as_str().unwrap();
    let (status, off) = s
        .patch(
            &format!("/sources/{id}"),
            json!({"trigger": "manual", "function": "http.fetch", "params": {"url": "http://127.0.0.1:9/x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert!(off["webhook_url"].is_null());

    let (status, page) = s.get("/sources?trigger=scheduled").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    let (status, _) = s
        .delete(&format!("/sources/{}", manual["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn sources_are_validated(db: Db) {
    let (_env, s) = fresh(db).await;
    let key = shopify_key(&s).await;
    let http_key = s
        .create(
            "/keys",
            json!({"system": "http", "title": "h", "credentials": {}}),
        )
        .await;
    let cases = [
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.nope", "key_id": key["id"], "trigger": "manual"}),
            "function",
        ),
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook", "key_id": key["id"], "trigger": "manual", "params": {"topics": ["orders/create"]}}),
            "trigger",
        ),
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook", "key_id": key["id"], "trigger": "webhook"}),
            "params.topics",
        ),
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook", "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
            "key_id",
        ),
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook", "key_id": http_key["id"], "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
            "key_id",
        ),
        (
            json!({"title": "x", "system": "shopify", "function": "shopify.webhook", "key_id": "01900000-0000-7000-8000-00000000ffff", "trigger": "webhook", "params": {"topics": ["orders/create"]}}),
            "key_id",
        ),
        (
            json!({"title": "x", "system": "http", "function": "http.fetch", "params": {"url": "http://x"}, "trigger": "scheduled", "schedule": "every day"}),
            "schedule",
        ),
        (
            json!({"title": "x", "system": "http", "function": "http.fetch", "params": {"url": "http://x"}, "trigger": "scheduled", "schedule": "0 * * * *", "timezone": "Mars/Base"}),
            "timezone",
        ),
        (
            json!({"title": "x", "system": "http", "function": "http.fetch", "params": {"url": "http://x"}, "trigger": "manual", "schedule": "0 * * * *"}),
            "schedule",
        ),
        (
            json!({"title": " ", "system": "http", "function": "http.fetch", "trigger": "manual", "params": {"url": "http://x"}}),
            "title",
        ),
        (
            json!({"title": "x", "system": "http", "function": "http.fetch", "trigger": "manual", "params": {}}),
            "params.url",
        ),
    ];
    for (body, field) in cases {
        let (status, p) = s.post("/sources", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {p}");
        assert!(
            error_fields(&p).contains(&field.to_string()),
            "{body}: expected {field} in {p}"
        );
    }
    let (_, page) = s.get("/sources").await;
    assert_eq!(
        page["items"],
        json!([]),
        "nothing stored by refused requests"
    );
}

async fn destinations_crud_and_retry(db: Db) {
    let (_env, s) = fresh(db).await;
    let d = s
        .create(
            "/destinations",
            json!({"title": "ERP", "system": "http", "function": "http.send",
                   "params": {"url": "http://127.0.0.1:9/in"}}),
        )
        .await;
    assert_eq!(d["mode"], "realtime");
    assert_eq!(
        d["retry"]["schedule_seconds"],
        json!([0, 5, 300, 1800, 7200, 18000, 36000, 36000])
    );
    assert_eq!(d["retry"]["timeout_seconds"], 30);
    let id = d["id"].as_str().unwrap();

    let (status, p) = s
        .patch(&format!("/destinations/{id}"), json!({"mode": "aggregate", "retry": {"schedule_seconds": [0, 1], "timeout_seconds": 5}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["mode"], "aggregate");
    assert_eq!(p["retry"]["schedule_seconds"], json!([0, 1]));

    for (body, field) in [
        (json!({"mode": "sometimes"}), "mode"),
        (
            json!({"retry": {"schedule_seconds": [], "timeout_seconds": 5}}),
            "retry.schedule_seconds",
        ),
        (
            json!({"retry": {"schedule_seconds": [0], "timeout_seconds": 0}}),
            "retry.timeout_seconds",
        ),
        (json!({"function": "http.fetch"}), "function"),
        (
            json!({"params": {"url": "http://x", "method": "DELETE"}}),
            "params.method",
        ),
    ] {
        let (status, p) = s.patch(&format!("/destinations/{id}"), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {p}");
        assert!(error_fields(&p).contains(&field.to_string()), "{body}: {p}");
    }
    let (status, _) = s.delete(&format!("/destinations/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn transformations_public_and_private(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, public) = s.get("/transformations?visibility=public").await;
    assert_eq!(status, StatusCode::OK);
    let items = public["items"].as_array().unwrap();
    assert!(items.iter().any(|t| t["id"] == PASSTHROUGH), "{public}");
    assert!(items.iter().all(|t| t["visibility"] == "public"));

    // The library is read-only; a copy is private and editable.
    let (status, p) = s
        .patch(
            &format!("/transformations/{PASSTHROUGH}"),
            json!({"title": "mine"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("/copy"));
    let (status, _) = s.delete(&format!("/transformations/{PASSTHROUGH}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let copy = s
        .create(&format!("/transformations/{PASSTHROUGH}/copy"), json!(null))
        .await;
    assert_eq!(copy["visibility"], "private");
    assert_eq!(copy["copied_from"], PASSTHROUGH);
    let copy_id = copy["id"].as_str().unwrap();
    let (status, edited) = s
        .patch(
            &format!("/transformations/{copy_id}"),
            json!({"code": "function transform(r) { return {id: r.id}; }"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");

    let own = s
        .create(
            "/transformations",
            json!({"title": "Orders CSV", "data_type": "sales_order", "language": "template",
                   "format": "csv", "code": "{{ record.id }}"}),
        )
        .await;
    let (_, private) = s.get("/transformations?visibility=private").await;
    assert_eq!(private["items"].as_array().unwrap().len(), 2);

    let (status, p) = s
        .post("/transformations", json!({"title": "x", "data_type": "sales_order", "language": "cobol", "format": "pdf", "code": ""}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error_fields(&p);
    for f in ["language", "format", "code"] {
        assert!(fields.contains(&f.to_string()), "{p}");
    }
    let (status, _) = s
        .delete(&format!("/transformations/{}", own["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn streams_crud(db: Db) {
    let (_env, s) = fresh(db).await;
    let (_, source, destination, st) = stream(&s).await;
    assert_eq!(st["active"], true);
    assert_eq!(st["test_mode"], false);
    assert_eq!(st["settings"], json!({}));
    let id = st["id"].as_str().unwrap();

    let (status, p) = s
        .patch(
            &format!("/streams/{id}"),
            json!({"active": false, "test_mode": true, "settings": {"warehouse": "UK1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["settings"]["warehouse"], "UK1");
    assert_eq!(p["active"], false);

    let (_, page) = s
        .get(&format!(
            "/streams?source_id={}",
            source["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = s.get("/streams?active=true").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    let (status, p) = s
        .post(
            "/streams",
            json!({"title": "Broken", "data_type": "sales order!", "source_id": destination["id"],
                   "transformation_id": source["id"], "destination_id": source["id"], "settings": []}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = error_fields(&p);
    for f in [
        "data_type",
        "source_id",
        "transformation_id",
        "destination_id",
        "settings",
    ] {
        assert!(fields.contains(&f.to_string()), "{f}: {p}");
    }
}

async fn deleting_what_a_stream_uses_is_a_conflict(db: Db) {
    let (_env, s) = fresh(db).await;
    let (key, source, destination, st) = stream(&s).await;
    let private = s
        .create(&format!("/transformations/{PASSTHROUGH}/copy"), json!(null))
        .await;
    let (status, _) = s
        .patch(
            &format!("/streams/{}", st["id"].as_str().unwrap()),
            json!({"transformation_id": private["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    for path in [
        format!("/keys/{}", key["id"].as_str().unwrap()),
        format!("/sources/{}", source["id"].as_str().unwrap()),
        format!("/destinations/{}", destination["id"].as_str().unwrap()),
        format!("/transformations/{}", private["id"].as_str().unwrap()),
    ] {
        let (status, p) = s.delete(&path).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {p}");
        assert!(p["detail"].as_str().unwrap().contains("still used"), "{p}");
        let (status, _) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path} survives a refused delete");
    }

    let (status, _) = s
        .delete(&format!("/streams/{}", st["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The key is still used by the source until the source goes.
    let (status, _) = s
        .delete(&format!("/keys/{}", key["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for path in [
        format!("/sources/{}", source["id"].as_str().unwrap()),
        format!("/keys/{}", key["id"].as_str().unwrap()),
        format!("/destinations/{}", destination["id"].as_str().unwrap()),
        format!("/transformations/{}", private["id"].as_str().unwrap()),
    ] {
        let (status, p) = s.delete(&path).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {p}");
    }
}

async fn systems_library(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, page) = s.get("/systems").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "http",
            "shopify",
            "dear",
            "peoplevox",
            "woocommerce",
            "magento2",
            "ftp",
            "sftp",
            "email"
        ]
    );
    let (status, shopify) = s.get("/systems/shopify").await;
    assert_eq!(status, StatusCode::OK);
    let template = shopify["key_template"].as_array().unwrap();
    let secret = template
        .iter()
        .find(|f| f["name"] == "access_token")
        .unwrap();
    assert_eq!(secret["secret"], true);
    assert!(shopify["sources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "shopify.webhook"));
    let (status, pvx) = s.get("/systems/peoplevox").await;
    assert_eq!(status, StatusCode::OK);
    let names = |kind: &str| -> Vec<String> {
        pvx[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("sources"), ["peoplevox.data", "peoplevox.webhook"]);
    assert_eq!(names("destinations"), ["peoplevox.import"]);
    // DEAR's functions as the system library lists them (the stock pull feeds Shopify).
    let (_, dear) = s.get("/systems/dear").await;
    let names = |kind: &str| -> Vec<String> {
        dear[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("sources"),
        ["dear.sales", "dear.stock", "dear.webhook"]
    );
    assert_eq!(names("destinations"), ["dear.sale", "dear.fulfilment"]);
    let (status, _) = s.get("/systems/magento9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn systems_list_only_what_the_connectors_run(db: Db) {
    let (_env, s) = fresh(db).await;
    let registry = wharf::connectors::Registry::default();
    let (status, page) = s.get("/systems").await;
    assert_eq!(status, StatusCode::OK);
    let mut listed = Vec::new();
    for system in page["items"].as_array().unwrap() {
        for kind in ["sources", "destinations"] {
            for func in system[kind].as_array().unwrap() {
                let name = func["name"].as_str().unwrap();
                assert!(registry.runs(name), "{name} is listed but cannot run");
                listed.push(name.to_string());
            }
        }
    }
    listed.sort();
    assert_eq!(
        listed,
        registry.functions(),
        "every runnable function is listed"
    );
    for gone in ["magento1", "bigcommerce"] {
        let (status, _) = s.get(&format!("/systems/{gone}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    }

    // A function's listed params are its typed declaration.
    let (_, http) = s.get("/systems/http").await;
    let fetch = &http["sources"][0];
    assert_eq!(fetch["name"], "http.fetch");
    let names: Vec<_> = fetch["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    use wharf::connectors::params::Params;
    let declared: Vec<_> = wharf::connectors::http::FetchParams::FIELDS
        .iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, declared);
    let pagination = fetch["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "pagination")
        .unwrap();
    assert_eq!(pagination["values"], json!(["none", "link", "cursor"]));
    assert_eq!(pagination["required"], false);

    // What is not listed cannot be configured.
    let (status, out) = s
        .post(
            "/keys",
            json!({"system": "bigcommerce", "title": "f", "credentials": {"host": "bc.example.com",
                "username": "u", "password": "p"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["system"]);
    let key = shopify_key(&s).await;
    let (status, out) = s
        .post(
            "/sources",
            json!({"title": "x", "system": "shopify", "function": "shopify.customers",
                   "key_id": key["id"], "trigger": "manual"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        error_fields(&out).contains(&"function".to_string()),
        "{out}"
    );
    let (status, out) = s
        .post(
            "/destinations",
            json!({"title": "x", "system": "shopify", "function": "shopify.refund",
                   "key_id": key["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        error_fields(&out).contains(&"function".to_string()),
        "{out}"
    );
}

both_stores!(
    keys_crud,
    systems_list_only_what_the_connectors_run,
    keys_are_validated_against_their_template,
    sources_crud_and_triggers,
    sources_are_validated,
    destinations_crud_and_retry,
    transformations_public_and_private,
    streams_crud,
    deleting_what_a_stream_uses_is_a_conflict,
    systems_library,
);
