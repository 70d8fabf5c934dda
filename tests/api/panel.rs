//! The control panel as the server serves it (the browser suite in `tests/browser` walks it):
//! the page at `/` and at every deep link, its assets with their types and caching, the
//! security policy, the CSRF cookie the panel's script reads, and the count it shows before a
//! bulk replication.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::common::{fresh, send, Db, Env, Server};

async fn fetch(s: &Server, path: &str) -> reqwest::Response {
    s.client.get(s.url(path)).send().await.unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn the_page_and_its_assets_are_served_with_types_caching_and_policy(db: Db) {
    let (_env, s) = fresh(db).await;
    let page = fetch(&s, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    let version = wharf::web::VERSION;
    let app = format!("/assets/{version}/js/app.js");
    assert!(html.contains(&app), "{html}");

    // Deep links answer the same page, so a shared link and the back button work.
    for path in [
        "/events?status=FAILED",
        "/events/0190aa00-0000-7000-8000-000000000001",
        "/jobs",
        "/streams/new",
        "/sign-in?next=%2Fevents",
        "/set-password",
        "/audit-log",
    ] {
        let res = fetch(&s, path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.text().await.unwrap(), html, "{path}");
    }
    // The API's own addresses stay problems, never the page.
    let res = fetch(&s, "/api/v1/no-such-thing").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(header(&res, "content-type").starts_with("application/problem+json"));
    let res = fetch(&s, "/no-such-screen").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Assets: their type, cached for good under this build's version.
    for (path, kind) in [
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/screens/events.js", "text/javascript; charset=utf-8"),
        (
            "vendor/htm-preact-standalone.module.js",
            "text/javascript; charset=utf-8",
        ),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let res = fetch(&s, &format!("/assets/{version}/{path}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), kind, "{path}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert!(!res.bytes().await.unwrap().is_empty());
    }
    // Another build's address gets today's file, not to be kept; unknown files are 404.
    let res = fetch(&s, "/assets/0000000000000000/js/app.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), "no-cache");
    for path in ["js/nothing.js", "index.html", "../Cargo.toml"] {
        let res = fetch(&s, &format!("/assets/{version}/{path}")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Every module the app imports is served (relative imports resolve under the version).
    let app_js = fetch(&s, &app).await.text().await.unwrap();
    for line in app_js.lines().filter(|l| l.starts_with("import ")) {
        let target = line.rsplit("from '").next().unwrap().trim_end_matches("';");
        let url = format!("/assets/{version}/js/{target}");
        let url = url.replace("/js/./", "/js/").replace("/js/../", "/");
        assert_eq!(fetch(&s, &url).await.status(), StatusCode::OK, "{url}");
    }
}

async fn a_node_without_the_api_serves_no_panel(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.api.enabled = false;
    let s = Server::start(config).await;
    assert_eq!(fetch(&s, "/").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(fetch(&s, "/events").await.status(), StatusCode::NOT_FOUND);
}

async fn sign_in_gives_the_panel_a_readable_csrf_cookie(db: Db) {
    let (_env, s) = fresh(db).await;
    let invited = s
        .create(
            "/users",
            json!({"email": "pat@example.com", "name": "Pat", "role": "viewer"}),
        )
        .await;
    let (status, _) = send(s.client.post(s.url("/api/v1/password")).json(&json!({
        "token": invited["invitation"]["token"], "password": "harbour lights at dawn"
    })))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let res = s
        .client
        .post(s.url("/api/v1/session"))
        .json(&json!({"email": "pat@example.com", "password": "harbour lights at dawn"}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let body: serde_json::Value = res.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("wharf_session="))
        .unwrap();
    assert!(session.contains("HttpOnly"), "{session}");
    let readable = cookies
        .iter()
        .find(|c| c.starts_with("wharf_csrf="))
        .unwrap();
    assert!(
        readable.starts_with(&format!("wharf_csrf={csrf};")),
        "{readable}"
    );
    assert!(!readable.contains("HttpOnly") && readable.contains("SameSite=Lax"));
    // The cookie alone proves nothing: a write needs the header to match the session's token.
    let cookie = session.split(';').next().unwrap().to_string();
    let forged = s
        .client
        .delete(s.url("/api/v1/session"))
        .header("cookie", format!("{cookie}; wharf_csrf=forged"))
        .header("x-csrf-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let out = s
        .client
        .delete(s.url("/api/v1/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let cleared: Vec<String> = out
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(cleared.iter().any(|c| c.starts_with("wharf_session=;")));
    assert!(cleared.iter().any(|c| c.starts_with("wharf_csrf=;")));
}

async fn the_count_before_a_bulk_replication_matches_what_it_takes(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, count) = s.get("/events/count?status=FAILED").await;
    assert_eq!(status, StatusCode::OK, "{count}");
    assert_eq!(count, json!({"count": 0, "more": false}));
    let stream = crate::engine::fetch_stream(
        &s,
        "http://127.0.0.1:9/o",
        "http://127.0.0.1:9/sink",
        json!({"schedule_seconds": [0], "timeout_seconds": 5}),
        true,
    )
    .await;
    let records = json!([{"id": "1", "name": "#1"}, {"id": "2", "name": "#2"}]);
    let (_, events) = crate::engine::upload_and_wait(&s, &stream, records).await;
    assert_eq!(events.len(), 2);
    let (_, count) = s.get(&format!("/events/count?stream_id={stream}")).await;
    assert_eq!(count, json!({"count": 2, "more": false}));
    let (_, count) = s
        .get(&format!("/events/count?stream_id={stream}&entity_id=%231"))
        .await;
    assert_eq!(count["count"], 1);
    let (status, problem) = s.get("/events/count?status=LOST").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // Event viewers follow the log only.
    let token = s.token_with_role("event_viewer").await;
    let (status, _) = send(s.req_as(&token, Method::GET, "/events/count")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

both_stores!(
    the_page_and_its_assets_are_served_with_types_caching_and_policy,
    a_node_without_the_api_serves_no_panel,
    sign_in_gives_the_panel_a_readable_csrf_cookie,
    the_count_before_a_bulk_replication_matches_what_it_takes,
);
