//! Lookup tables: CRUD, bulk upsert, CSV upload and download.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::common::{fresh, read, send, Db};

async fn lookup_tables_crud_and_entries(db: Db) {
    let (_env, s) = fresh(db).await;
    let t = s
        .create(
            "/lookup-tables",
            json!({"name": "carrier_codes", "description": "Shopify carrier → WMS code",
                   "default_value": "STD", "entries": {"Royal Mail": "RM", "DPD": "DPD1"}}),
        )
        .await;
    assert_eq!(t["entry_count"], 2);
    let id = t["id"].as_str().unwrap();

    let (status, p) = s
        .post("/lookup-tables", json!({"name": "carrier_codes"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, _) = s.post("/lookup-tables", json!({"name": "bad name!"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/entries"))
            .json(&json!({"entries": {"DPD": "DPD2", "UPS": "UPS1"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["entry_count"], 3);

    // Paged in key order.
    let (_, page) = s.get(&format!("/lookup-tables/{id}/entries?limit=2")).await;
    assert_eq!(
        page["items"],
        json!([{"key": "DPD", "value": "DPD2"}, {"key": "Royal Mail", "value": "RM"}])
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = s
        .get(&format!(
            "/lookup-tables/{id}/entries?limit=2&cursor={}",
            urlencode(cursor)
        ))
        .await;
    assert_eq!(page["items"], json!([{"key": "UPS", "value": "UPS1"}]));
    assert!(page["next_cursor"].is_null());

    let (status, _) = s.delete(&format!("/lookup-tables/{id}/entries/UPS")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.delete(&format!("/lookup-tables/{id}/entries/UPS")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, p) = s
        .patch(
            &format!("/lookup-tables/{id}"),
            json!({"default_value": null, "name": "carriers"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert!(p["default_value"].is_null());
    assert_eq!(p["name"], "carriers");

    let (status, _) = s.delete(&format!("/lookup-tables/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/lookup-tables/{id}/entries")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn urlencode(s: &str) -> String {
    s.replace(' ', "%20")
}

async fn lookup_tables_csv_round_trip(db: Db) {
    let (_env, s) = fresh(db).await;
    let t = s
        .create(
            "/lookup-tables",
            json!({"name": "skus", "entries": {"OLD": "gone"}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    let csv = "key,value\nSKU-1,WMS-001\n\"SKU,2\",\"WMS \"\"two\"\"\"\nSKU-3,\n";
    let (status, out) = send(
        s.req(Method::PUT, &format!("/lookup-tables/{id}/csv"))
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["entry_count"], 3, "an upload replaces the table");

    let res = s
        .req(Method::GET, &format!("/lookup-tables/{id}/csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = res.text().await.unwrap();
    // Byte order of keys: "," sorts before "-".
    assert_eq!(
        body,
        "key,value\n\"SKU,2\",\"WMS \"\"two\"\"\"\nSKU-1,WMS-001\nSKU-3,\n"
    );

    let (status, p) = send(
        s.req(
            Method::PUT,
            &format!("/lookup-tables/{id}/csv?replace=false"),
        )
        .body("key,value\nA,1,extra\n"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("line 2"), "{p}");
    let res = s
        .req(Method::GET, &format!("/lookup-tables/{id}"))
        .send()
        .await
        .unwrap();
    let (_, after) = read(res).await;
    assert_eq!(after["entry_count"], 3, "a refused upload changes nothing");

    // A file without its header row would lose its first entry to it; an empty file would
    // empty the table. Both are refused and change nothing.
    for (body, says) in [
        ("SKU-9,WMS-009\nSKU-8,WMS-008\n", "header `key,value`"),
        ("key,value\n", "would empty the table"),
        ("", "header `key,value`"),
    ] {
        let (status, p) = send(
            s.req(Method::PUT, &format!("/lookup-tables/{id}/csv"))
                .header("content-type", "text/csv")
                .body(body),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}: {p}");
        assert!(
            p["errors"][0]["message"].as_str().unwrap().contains(says),
            "{p}"
        );
    }
    // Adding nothing (replace=false) is harmless; a header in other case is a header.
    let (status, p) = send(
        s.req(
            Method::PUT,
            &format!("/lookup-tables/{id}/csv?replace=false"),
        )
        .body("Key,Value\nSKU-4,WMS-004\n"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["entry_count"], 4, "{p}");
}

both_stores!(lookup_tables_crud_and_entries, lookup_tables_csv_round_trip);
