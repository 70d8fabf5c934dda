//! Secrets at rest, organisations kept apart, and roles.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::common::{fresh, send, Db, Env};
use crate::config_resources::{shopify_key, stream};

const SECRETS: [&str; 2] = ["shpat_topsecret_access", "whsec_topsecret_hook"];

/// Every byte the store holds about keys, as text.
async fn raw_storage(env: &Env) -> Vec<u8> {
    match env.db {
        Db::Sqlite => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(env.data_path()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("wharf.db")
                {
                    all.extend(std::fs::read(path).unwrap());
                }
            }
            assert!(!all.is_empty(), "found the SQLite files");
            all
        }
        Db::Postgres => {
            let url = &env.pg.as_ref().unwrap().url;
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar("SELECT row_to_json(k)::text FROM keys k")
                .fetch_all(&pool)
                .await
                .unwrap();
            assert!(!rows.is_empty(), "found the key rows");
            rows.join("\n").into_bytes()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn secrets_are_never_returned_nor_stored_in_clear(db: Db) {
    let (env, s) = fresh(db).await;
    let key = shopify_key(&s).await;
    let id = key["id"].as_str().unwrap();
    let (_, got) = s.get(&format!("/keys/{id}")).await;
    let (_, list) = s.get("/keys").await;
    let (_, patched) = s
        .patch(&format!("/keys/{id}"), json!({"title": "t2"}))
        .await;
    for body in [&key, &got, &list, &patched] {
        let text = body.to_string();
        for secret in SECRETS {
            assert!(!text.contains(secret), "API returned a secret: {text}");
        }
    }
    let raw = raw_storage(&env).await;
    assert!(
        contains(&raw, "example.myshopify.com"),
        "the non-secret field is stored"
    );
    for secret in SECRETS {
        assert!(
            !contains(&raw, secret),
            "{secret} found in clear in storage"
        );
    }
}

async fn other_organisations_objects_are_not_found(db: Db) {
    let (_env, s) = fresh(db).await;
    let (key, source, destination, st) = stream(&s).await;
    let org = s
        .create("/organisations", json!({"name": "second-shop"}))
        .await;
    let other = org["owner_token"].as_str().unwrap().to_string();

    let (status, mine) = send(s.req_as(&other, Method::GET, "/organisations")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["items"][0]["name"], "second-shop");

    for (path, patch) in [
        (
            format!("/keys/{}", key["id"].as_str().unwrap()),
            json!({"title": "x"}),
        ),
        (
            format!("/sources/{}", source["id"].as_str().unwrap()),
            json!({"title": "x"}),
        ),
        (
            format!("/destinations/{}", destination["id"].as_str().unwrap()),
            json!({"title": "x"}),
        ),
        (
            format!("/streams/{}", st["id"].as_str().unwrap()),
            json!({"title": "x"}),
        ),
    ] {
        let (status, _) = send(s.req_as(&other, Method::GET, &path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}");
        let (status, _) = send(s.req_as(&other, Method::PATCH, &path).json(&patch)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "PATCH {path}");
        let (status, _) = send(s.req_as(&other, Method::DELETE, &path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "DELETE {path}");
        let (status, _) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "still there for its owner: {path}");
    }
    for list in [
        "/keys",
        "/sources",
        "/destinations",
        "/streams",
        "/transformations?visibility=private",
    ] {
        let (status, page) = send(s.req_as(&other, Method::GET, list)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"], json!([]), "{list} of the other organisation");
    }
    // Nor can another organisation's parts be wired into a stream.
    let (status, p) = send(s.req_as(&other, Method::POST, "/streams").json(&json!({
        "title": "steal", "data_type": "sales_order", "source_id": source["id"],
        "transformation_id": "01900000-0000-7000-8000-000000000001", "destination_id": destination["id"]})))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, _) = send(s.req_as(
        &other,
        Method::GET,
        &format!("/organisations/{}", "01900000-0000-7000-8000-000000000001"),
    ))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn missing_or_bad_tokens_are_unauthorized(db: Db) {
    let (_env, s) = fresh(db).await;
    let (status, p) = send(s.client.get(s.url("/api/v1/keys"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(p["detail"].as_str().unwrap().contains("Bearer"));
    let (status, _) = send(s.req_as("wharf_not_a_real_token", Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A revoked token stops working.
    let t = s
        .create("/tokens", json!({"name": "ci", "role": "viewer"}))
        .await;
    let token = t["token"].as_str().unwrap();
    let (status, _) = send(s.req_as(token, Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = s.get("/tokens").await;
    assert!(
        list.to_string().find(token).is_none(),
        "tokens are never listed"
    );
    let (status, _) = s
        .delete(&format!("/tokens/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(s.req_as(token, Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // So does an expired one.
    let (status, p) = s
        .post(
            "/tokens",
            json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
}

async fn roles_are_enforced(db: Db) {
    let (_env, s) = fresh(db).await;
    let (_, source, destination, _) = stream(&s).await;
    let private = s
        .create(
            "/transformations/01900000-0000-7000-8000-000000000001/copy",
            json!(null),
        )
        .await;
    let admin = s.token_with_role("admin").await;
    let editor = s.token_with_role("editor").await;
    let viewer = s.token_with_role("viewer").await;
    let feed = s.token_with_role("event_viewer").await;

    let key_body = json!({"system": "http", "title": "k", "credentials": {}});
    let tf_body = json!({"title": "t", "data_type": "sales_order", "language": "javascript", "format": "json",
                         "code": "function transform(r) { return r; }"});
    let stream_body = |tid: &serde_json::Value| {
        json!({"title": "s", "data_type": "sales_order",
        "source_id": source["id"], "transformation_id": tid, "destination_id": destination["id"]})
    };

    // (token, method, path, body, expected status)
    let cases: Vec<(&str, Method, &str, serde_json::Value, StatusCode)> = vec![
        (&viewer, Method::GET, "/keys", json!(null), StatusCode::OK),
        (
            &viewer,
            Method::GET,
            "/streams",
            json!(null),
            StatusCode::OK,
        ),
        (
            &viewer,
            Method::POST,
            "/keys",
            key_body.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            &viewer,
            Method::GET,
            "/tokens",
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            &feed,
            Method::GET,
            "/keys",
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            &feed,
            Method::GET,
            "/systems",
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            &editor,
            Method::POST,
            "/keys",
            key_body.clone(),
            StatusCode::CREATED,
        ),
        (
            &editor,
            Method::POST,
            "/transformations",
            tf_body.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            &editor,
            Method::POST,
            "/lookup-tables",
            json!({"name": "skus"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &editor,
            Method::POST,
            "/streams",
            stream_body(&private["id"]),
            StatusCode::FORBIDDEN,
        ),
        (
            &editor,
            Method::POST,
            "/streams",
            stream_body(&json!("01900000-0000-7000-8000-000000000001")),
            StatusCode::CREATED,
        ),
        (
            &editor,
            Method::POST,
            "/tokens",
            json!({"name": "x", "role": "viewer"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            Method::POST,
            "/transformations",
            tf_body.clone(),
            StatusCode::CREATED,
        ),
        (
            &admin,
            Method::POST,
            "/tokens",
            json!({"name": "x", "role": "editor"}),
            StatusCode::CREATED,
        ),
        (
            &admin,
            Method::POST,
            "/tokens",
            json!({"name": "x", "role": "owner"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            Method::GET,
            "/users",
            json!(null),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            Method::POST,
            "/organisations",
            json!({"name": "nope"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &s.token,
            Method::POST,
            "/users",
            json!({"email": "ops@example.com", "name": "Ops", "role": "editor"}),
            StatusCode::CREATED,
        ),
    ];
    for (token, method, path, body, expected) in cases {
        let mut req = s.req_as(token, method.clone(), path);
        if !body.is_null() {
            req = req.json(&body);
        }
        let (status, out) = send(req).await;
        assert_eq!(status, expected, "{method} {path}: {out}");
        if status == StatusCode::FORBIDDEN {
            assert!(
                out["detail"].as_str().unwrap().len() > 10,
                "403 explains itself"
            );
        }
    }
    // Refused writes stored nothing.
    let (_, tokens) = s.get("/tokens").await;
    assert!(tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["role"] != "owner" || t["name"] == "bootstrap"));
}

async fn users_crud(db: Db) {
    let (_env, s) = fresh(db).await;
    let u = s
        .create(
            "/users",
            json!({"email": "Ann@Example.com", "name": "Ann", "role": "viewer"}),
        )
        .await;
    assert_eq!(u["email"], "ann@example.com");
    let id = u["id"].as_str().unwrap();
    let (status, p) = s
        .post(
            "/users",
            json!({"email": "ann@example.com", "name": "Ann 2", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    let (status, p) = s
        .post(
            "/users",
            json!({"email": "not-an-email", "name": "x", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, p) = s
        .post(
            "/users",
            json!({"email": "a@b.c", "name": "x", "role": "superuser"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, p) = s
        .patch(&format!("/users/{id}"), json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["role"], "admin");
    let t = s
        .create(
            "/tokens",
            json!({"name": "ann", "role": "admin", "user_id": id}),
        )
        .await;
    assert_eq!(t["user_id"], id);
    let (status, _) = s.delete(&format!("/users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A user's tokens go with the user.
    let (status, _) = send(s.req_as(t["token"].as_str().unwrap(), Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn every_response_carries_the_security_headers(db: Db) {
    let env = Env::new(db).await;
    let s = crate::common::Server::start(env.config()).await;
    let strict = |res: &reqwest::Response, what: &str| {
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
        csp.to_string()
    };
    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/metrics", StatusCode::OK),
        ("/api/v1/keys", StatusCode::UNAUTHORIZED),
        ("/hooks/nothing-here", StatusCode::METHOD_NOT_ALLOWED),
        ("/nowhere", StatusCode::NOT_FOUND),
    ] {
        let res = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        let csp = strict(&res, path);
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(
            res.headers().get("strict-transport-security").is_none(),
            "plain http"
        );
    }
    // The docs page runs no inline script: its start-up is a file of its own.
    let res = s.client.get(s.url("/docs")).send().await.unwrap();
    let csp = strict(&res, "/docs");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"<script src="/docs/init.js"></script>"#));
    assert!(!page.contains("<script>"), "no inline script");
    let init = s.client.get(s.url("/docs/init.js")).send().await.unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await.unwrap().contains("SwaggerUIBundle"));
    s.stop().await;
    // Served over https: browsers are told to keep to it.
    let mut config = env.config();
    config.public_base_url = Some("https://wharf.example.com".into());
    let s = crate::common::Server::start(config).await;
    let res = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(
        res.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    s.stop().await;
}

both_stores!(
    secrets_are_never_returned_nor_stored_in_clear,
    other_organisations_objects_are_not_found,
    missing_or_bad_tokens_are_unauthorized,
    roles_are_enforced,
    users_crud,
    every_response_carries_the_security_headers,
);
