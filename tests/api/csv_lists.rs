//! `Accept: text/csv` on every list: the configuration, people, tokens and alerting lists answer
//! with a header row of their columns and every row the JSON list has, never with a secret, and
//! with the permissions of the JSON list.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{send, Db, Env, Server};
use crate::engine::{fetch_stream, run, wait_for_job};
use crate::peers::{broken_source, Sink};

/// The bearer token of the key the test makes.
const KEY_SECRET: &str = "csv-export-bearer-secret-0123";
/// The signing secret of the webhook channel the test makes.
const CHANNEL_SECRET: &str = "csv-export-channel-secret-0123456789";
/// How the API shows a secret it keeps.
const MASK: &str = "********";

/// Each list with the columns of its export.
const LISTS: &[(&str, &[&str])] = &[
    (
        "/streams",
        &[
            "id",
            "title",
            "data_type",
            "source_id",
            "transformation_id",
            "destination_id",
            "active",
            "test_mode",
            "created_at",
            "updated_at",
            "settings",
        ],
    ),
    (
        "/keys",
        &["id", "system", "title", "created_at", "updated_at"],
    ),
    (
        "/sources",
        &[
            "id",
            "title",
            "system",
            "function",
            "key_id",
            "trigger",
            "schedule",
            "timezone",
            "active",
            "next_run_at",
            "rejected_count",
            "created_at",
            "updated_at",
            "params",
        ],
    ),
    (
        "/destinations",
        &[
            "id",
            "title",
            "system",
            "function",
            "key_id",
            "mode",
            "created_at",
            "updated_at",
            "params",
            "retry",
        ],
    ),
    (
        "/transformations",
        &[
            "id",
            "visibility",
            "title",
            "description",
            "data_type",
            "language",
            "format",
            "copied_from",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "/lookup-tables",
        &[
            "id",
            "name",
            "description",
            "default_value",
            "entry_count",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "/users",
        &["id", "email", "name", "role", "created_at", "updated_at"],
    ),
    (
        "/tokens",
        &[
            "id",
            "name",
            "role",
            "user_id",
            "hint",
            "created_at",
            "last_used_at",
            "expires_at",
        ],
    ),
    (
        "/alert-channels",
        &["id", "name", "kind", "target", "created_at", "updated_at"],
    ),
    (
        "/alert-rules",
        &[
            "id",
            "name",
            "kind",
            "enabled",
            "digest",
            "stream_ids",
            "channel_ids",
            "threshold_pct",
            "min_events",
            "window_minutes",
            "silence_minutes",
            "stuck_minutes",
            "check_window",
            "flood",
            "digest_sent_at",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "/notifications",
        &[
            "id",
            "channel_id",
            "alert_id",
            "rule_id",
            "kind",
            "subject",
            "status",
            "tries",
            "next_try_at",
            "sent_at",
            "error",
            "created_at",
            "body",
        ],
    ),
];

/// A CSV export as `token` gets it: the status, the content type, the content disposition and
/// the text.
async fn export(s: &Server, token: &str, path: &str) -> (StatusCode, String, String, String) {
    let res = s
        .req_as(token, Method::GET, path)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (status, kind, disposition) = (
        res.status(),
        header("content-type"),
        header("content-disposition"),
    );
    (status, kind, disposition, res.text().await.unwrap())
}

/// The records of a CSV text (the header row first), read as a spreadsheet would.
fn records(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Every item of a JSON list, page after page.
async fn all_items(s: &Server, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}?limit=500"),
            Some(c) => format!("{path}?limit=500&cursor={c}"),
        };
        let (status, page) = s.get(&url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

/// A server whose workers poll often and whose alert evaluation runs every second.
async fn start(db: Db) -> (Env, Server) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    config.alerts.enabled = true;
    config.alerts.interval_seconds = 1;
    config.alerts.condition_interval_seconds = 0;
    config.alerts.lease_seconds = 5;
    config.alerts.retry_seconds = vec![1, 1];
    let server = Server::start(config).await;
    (env, server)
}

async fn every_list_exports_every_row_as_csv_without_secrets(db: Db) {
    let (_env, s) = start(db).await;
    let source = broken_source().await;
    let sink = Sink::ok().await;
    let hook = Sink::ok().await;

    // One of everything: a stream (with its source and destination) whose run fails, a key
    // holding a secret, a webhook source, a transformation, a lookup table, a person, a token,
    // a signed webhook channel and a rule that tells it of the failed run.
    let stream = fetch_stream(
        &s,
        &format!("http://{source}/orders"),
        &sink.url(),
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        false,
    )
    .await;
    let key = s
        .create(
            "/keys",
            json!({"system": "http", "title": "ERP",
                "credentials": {"base_url": "http://127.0.0.1:9/api", "bearer_token": KEY_SECRET}}),
        )
        .await;
    assert_eq!(key["credentials"]["bearer_token"], MASK, "{key}");
    let pushed = s
        .create(
            "/sources",
            json!({"title": "Pushes", "system": "http", "function": "http.webhook",
                "trigger": "webhook"}),
        )
        .await;
    let hook_token = pushed["webhook_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    s.create(
        "/transformations",
        json!({"title": "Orders CSV", "data_type": "sales_order", "language": "template",
            "format": "csv", "code": "{{ record.id }}"}),
    )
    .await;
    s.create(
        "/lookup-tables",
        json!({"name": "skus", "description": "=1+1", "entries": {"A": "1"}}),
    )
    .await;
    s.create(
        "/users",
        json!({"email": "ann@example.com", "name": "Ann", "role": "admin"}),
    )
    .await;
    let viewer = s.token_with_role("viewer").await;
    let channel = s
        .create(
            "/alert-channels",
            json!({"name": "Ops hook", "kind": "webhook", "target": hook.url(),
                "secret": CHANNEL_SECRET}),
        )
        .await;
    assert_eq!(channel["secret"], CHANNEL_SECRET, "{channel}");
    s.create(
        "/alert-rules",
        json!({"name": "Orders import failed", "kind": "job_failed", "stream_ids": [stream],
            "channel_ids": [channel["id"]]}),
    )
    .await;
    let job = run(&s, &stream).await;
    assert_eq!(wait_for_job(&s, &job).await["status"], "FAILED");
    let deadline = Instant::now() + Duration::from_secs(30);
    while all_items(&s, "/notifications").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no notification of the failed run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for (path, columns) in LISTS {
        let (status, kind, disposition, text) = export(&s, &s.token, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        assert_eq!(kind, "text/csv; charset=utf-8", "{path}");
        let name = path.trim_start_matches('/');
        assert_eq!(
            disposition,
            format!("attachment; filename=\"{name}.csv\""),
            "{path}"
        );
        let rows = records(&text);
        assert_eq!(rows[0], *columns, "{path}: the header row");
        let items = all_items(&s, path).await;
        assert!(!items.is_empty(), "{path}: the test made one");
        assert_eq!(rows.len() - 1, items.len(), "{path}: every row\n{text}");
        // The rows are the JSON list's items, in its order.
        for (row, item) in rows[1..].iter().zip(&items) {
            assert_eq!(row[0], item["id"].as_str().unwrap(), "{path}");
        }
        assert!(!text.contains(KEY_SECRET), "{path} shows the key's secret");
        assert!(
            !text.contains(CHANNEL_SECRET),
            "{path} shows the channel's secret"
        );
        assert!(!text.contains(&hook_token), "{path} shows a webhook URL");
    }

    // Secrets are no column, not even masked.
    for path in ["/keys", "/alert-channels"] {
        let (_, _, _, text) = export(&s, &s.token, path).await;
        assert!(
            !text.contains(MASK),
            "{path} shows masked credentials:\n{text}"
        );
    }
    let (_, _, _, text) = export(&s, &s.token, "/keys").await;
    assert!(
        !text.contains("bearer_token") && !text.contains("base_url"),
        "{text}"
    );
    // A formula-like cell stays text.
    let (_, _, _, text) = export(&s, &s.token, "/lookup-tables").await;
    assert_eq!(records(&text)[1][2], "'=1+1", "{text}");

    // Permissions are the JSON list's: a viewer reads the configuration but not the tokens.
    let (status, _) = send(s.req_as(&viewer, Method::GET, "/tokens")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let res = s
        .req_as(&viewer, Method::GET, "/tokens")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let (status, problem) = crate::common::read(res).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, _) = send(s.req_as(&viewer, Method::GET, "/users")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, kind, _, _) = export(&s, &viewer, "/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{kind}");
    let (status, _, _, text) = export(&s, &viewer, "/keys").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains(KEY_SECRET) && !text.contains(MASK), "{text}");
}

/// The JSON answers are unchanged by the export: a client that does not ask for CSV (or refuses
/// it) still gets the page.
async fn lists_still_answer_json_unless_csv_is_asked_for(db: Db) {
    let (_env, s) = start(db).await;
    s.create(
        "/lookup-tables",
        json!({"name": "carriers", "entries": {"dhl": "DHL"}}),
    )
    .await;
    for accept in [
        None,
        Some("application/json"),
        Some("text/csv;q=0, application/json"),
    ] {
        let mut req = s.req(Method::GET, "/lookup-tables");
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"],
            "application/json",
            "{accept:?}"
        );
        let page: Value = res.json().await.unwrap();
        assert_eq!(page["items"][0]["name"], "carriers", "{page}");
        assert_eq!(page["items"][0]["entry_count"], 1, "{page}");
        assert_eq!(page["next_cursor"], Value::Null, "{page}");
    }
}

both_stores!(
    every_list_exports_every_row_as_csv_without_secrets,
    lists_still_answer_json_unless_csv_is_asked_for,
);
