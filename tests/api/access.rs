//! Who may see and redirect secrets: webhook URLs, where a key's secrets are sent, secret
//! headers, role gaps, and the bootstrap token file.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{error_fields, fresh, send, Db, Env, Server, PASSTHROUGH};
use crate::config_resources::{shopify_key, stream};
use crate::peers::Sink;

async fn call(
    s: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = s.req_as(token, method, path);
    if !body.is_null() {
        req = req.json(&body);
    }
    send(req).await
}

/// Records subscriptions as installed at the system, as `…/webhooks/install` does.
async fn set_installed(env: &Env, source_id: &str, address: &str) {
    let state = json!({"installed": true, "address": address, "subscriptions": []}).to_string();
    let sql = "UPDATE sources SET webhook_state = $1{cast} WHERE id = $2";
    write_row(env, sql, "::jsonb", state, source_id).await;
}

/// Runs `sql` (`{cast}` replaced by `pg_cast` on Postgres) with `value` and the row `id`,
/// straight on the server's database: for states the API cannot make.
async fn write_row(env: &Env, sql: &str, pg_cast: &str, value: String, id: &str) {
    let id = uuid::Uuid::parse_str(id).unwrap();
    match &env.pg {
        Some(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            sqlx::query(&sql.replace("{cast}", pg_cast))
                .bind(value)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        None => {
            let url = format!("sqlite://{}", env.data_path().join("wharf.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(&sql.replace("{cast}", ""))
                .bind(value)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// A key of a system an earlier version offered (`as2`) stays readable, renamable and
/// deletable; changing its credentials is a conflict that says why, never a server error.
async fn keys_of_a_system_no_longer_offered_are_kept_but_not_changed(db: Db) {
    let (env, s) = fresh(db).await;
    let (status, key) = s
        .post(
            "/keys",
            json!({"system": "http", "title": "old files",
                   "credentials": {"base_url": "http://127.0.0.1:9", "bearer_token": "t"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let id = key["id"].as_str().unwrap();
    write_row(
        &env,
        "UPDATE keys SET system = $1 WHERE id = $2",
        "",
        "as2".into(),
        id,
    )
    .await;
    let path = format!("/keys/{id}");
    let (status, out) = s.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["system"], "as2");
    let (status, out) = s
        .patch(&path, json!({"credentials": {"bearer_token": "new"}}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .contains("no longer offers the system `as2`"),
        "{out}"
    );
    let (status, out) = s.patch(&path, json!({"title": "old ftp"})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["title"], "old ftp");
    let (status, _) = s.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn viewers_do_not_see_webhook_urls(db: Db) {
    let (env, s) = fresh(db).await;
    let (_, source, _, _) = stream(&s).await;
    let id = source["id"].as_str().unwrap();
    let hook = source["webhook_url"].as_str().unwrap().to_string();
    assert!(hook.contains("/hooks/"), "{source}");
    set_installed(&env, id, &hook).await;
    let viewer = s.token_with_role("viewer").await;
    let editor = s.token_with_role("editor").await;

    let (status, got) = call(
        &s,
        &viewer,
        Method::GET,
        &format!("/sources/{id}"),
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        got["webhook_url"].is_null(),
        "a viewer saw the webhook URL: {got}"
    );
    assert_eq!(got["webhooks"]["installed"], true, "{got}");
    assert!(!got.to_string().contains(&hook), "{got}");
    let (status, list) = call(&s, &viewer, Method::GET, "/sources", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["webhook_url"].is_null(), "{list}");
    assert!(!list.to_string().contains(&hook), "{list}");

    let (status, got) = call(
        &s,
        &editor,
        Method::GET,
        &format!("/sources/{id}"),
        json!(null),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["webhook_url"], hook);
    assert_eq!(got["webhooks"]["address"], hook);
    let (_, list) = call(&s, &editor, Method::GET, "/sources", json!(null)).await;
    assert_eq!(list["items"][0]["webhook_url"], hook);
}

async fn uploads_need_the_role_that_creates_events(db: Db) {
    let (_env, s) = fresh(db).await;
    let (_, _, _, st) = stream(&s).await;
    let path = format!("/streams/{}/uploads", st["id"].as_str().unwrap());
    let editor = s.token_with_role("editor").await;
    let admin = s.token_with_role("admin").await;
    let body = json!([{"id": "1"}]);

    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/events",
        json!({"stream_id": st["id"], "payloads": [{"id": "1"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (status, out) = call(&s, &editor, Method::POST, &path, body.clone()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an editor created events by upload: {out}"
    );
    let (_, events) = s.get("/events").await;
    assert_eq!(events["items"].as_array().unwrap().len(), 0, "{events}");

    let (status, out) = call(&s, &admin, Method::POST, &path, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(out["event_ids"].as_array().unwrap().len(), 1);
}

async fn editors_can_stop_a_stream_with_a_private_transformation(db: Db) {
    let (_env, s) = fresh(db).await;
    let (_, _, _, st) = stream(&s).await;
    let private = s
        .create(&format!("/transformations/{PASSTHROUGH}/copy"), json!(null))
        .await;
    let path = format!("/streams/{}", st["id"].as_str().unwrap());
    let (status, out) = s
        .patch(&path, json!({"transformation_id": private["id"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let editor = s.token_with_role("editor").await;

    // Anything but stopping stays out of an editor's reach.
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &path,
        json!({"title": "renamed", "active": false}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &path,
        json!({"test_mode": true}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");

    let (status, out) = call(&s, &editor, Method::PATCH, &path, json!({"active": false})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an editor could not stop the stream: {out}"
    );
    assert_eq!(out["active"], false);
    assert_eq!(out["title"], st["title"]);
    let (_, got) = s.get(&path).await;
    assert_eq!(got["active"], false);

    // Starting it again is a change to a stream running private code: not an editor's.
    let (status, out) = call(&s, &editor, Method::PATCH, &path, json!({"active": true})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (_, got) = s.get(&path).await;
    assert_eq!(got["active"], false);
}

async fn a_demoted_users_tokens_lose_the_old_role(db: Db) {
    let (_env, s) = fresh(db).await;
    let user = s
        .create(
            "/users",
            json!({"email": "ann@example.com", "name": "Ann", "role": "admin"}),
        )
        .await;
    let uid = user["id"].as_str().unwrap();
    let t = s
        .create(
            "/tokens",
            json!({"name": "ann", "role": "admin", "user_id": uid}),
        )
        .await;
    let token = t["token"].as_str().unwrap();
    let (status, out) = call(&s, token, Method::GET, "/tokens", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{out}");

    let (status, _) = s
        .patch(&format!("/users/{uid}"), json!({"role": "viewer"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = call(&s, token, Method::GET, "/tokens", json!(null)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the demoted user's token kept admin: {out}"
    );
    let (status, out) = call(
        &s,
        token,
        Method::POST,
        "/keys",
        json!({"system": "http", "title": "k", "credentials": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("viewer"), "{out}");
    let (status, _) = call(&s, token, Method::GET, "/keys", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "a viewer still reads");

    // Promoted back, the token holds its own role again: never more than it was made with.
    let (status, _) = s
        .patch(&format!("/users/{uid}"), json!({"role": "owner"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&s, token, Method::GET, "/tokens", json!(null)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&s, token, Method::GET, "/users", json!(null)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an admin token of an owner is still admin"
    );

    // A token above its user's role is refused when made.
    let (status, _) = s
        .patch(&format!("/users/{uid}"), json!({"role": "editor"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = s
        .post(
            "/tokens",
            json!({"name": "too high", "role": "admin", "user_id": uid}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["role"]);
}

async fn moving_a_keys_host_takes_its_secrets_again(db: Db) {
    let (_env, s) = fresh(db).await;
    let key = shopify_key(&s).await;
    let path = format!("/keys/{}", key["id"].as_str().unwrap());
    let editor = s.token_with_role("editor").await;
    let admin = s.token_with_role("admin").await;

    // Another shop with the secrets kept: refused, naming each secret to send again.
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &path,
        json!({"credentials": {"shop_domain": "other.myshopify.com", "access_token": "********"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let mut fields = error_fields(&out);
    fields.sort();
    assert_eq!(
        fields,
        vec!["credentials.access_token", "credentials.webhook_secret"]
    );
    assert!(out.to_string().contains("shop_domain"), "{out}");
    // Even an owner moves secrets only by knowing them.
    let (status, out) = s
        .patch(
            &path,
            json!({"credentials": {"base_url": "http://127.0.0.1:9"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (_, got) = s.get(&path).await;
    assert_eq!(got["credentials"]["shop_domain"], "example.myshopify.com");
    assert!(got["credentials"].get("base_url").is_none(), "{got}");

    // Shopify fixes the host: an editor stays on myshopify.com, and cannot set base_url.
    let (status, out) = call(&s, &editor, Method::PATCH, &path,
        json!({"credentials": {"shop_domain": "evil.example", "access_token": "a", "webhook_secret": "b"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["credentials.shop_domain"]);
    let (status, out) = call(&s, &editor, Method::PATCH, &path,
        json!({"credentials": {"shop_domain": "evil.example/x.myshopify.com", "access_token": "a", "webhook_secret": "b"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (status, out) = call(&s, &editor, Method::PATCH, &path,
        json!({"credentials": {"base_url": "http://127.0.0.1:9", "access_token": "a", "webhook_secret": "b"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("base_url"),
        "{out}"
    );
    let (status, out) = call(&s, &editor, Method::POST, "/keys",
        json!({"system": "shopify", "title": "k", "credentials": {"shop_domain": "evil.example", "access_token": "a"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (status, out) = call(&s, &editor, Method::POST, "/keys",
        json!({"system": "dear", "title": "d", "credentials": {"account_id": "a", "application_key": "k",
               "base_url": "http://127.0.0.1:9"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");

    // Moving within the vendor's domain with the secrets re-entered is an editor's to do.
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &path,
        json!({"credentials": {"shop_domain": "other.myshopify.com", "access_token": "shpat_new",
               "webhook_secret": null}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["credentials"]["shop_domain"], "other.myshopify.com");
    assert!(out["credentials"].get("webhook_secret").is_none(), "{out}");

    // An admin may point a key anywhere (with its secrets); then the shop domain is free.
    let (status, out) = call(&s, &admin, Method::PATCH, &path,
        json!({"credentials": {"base_url": "http://127.0.0.1:9", "shop_domain": "test-shop", "access_token": "shpat_new"}})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, out) = call(&s, &admin, Method::POST, "/keys",
        json!({"system": "dear", "title": "d", "credentials": {"account_id": "a", "application_key": "k",
               "base_url": "http://127.0.0.1:9"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    let (status, out) = call(&s, &editor, Method::POST, "/keys",
        json!({"system": "dear", "title": "d2", "credentials": {"account_id": "a", "application_key": "k"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{out}");

    // A server of the customer's own (an HTTP API) moves with its secrets only.
    let own = s
        .create(
            "/keys",
            json!({"system": "http", "title": "f", "credentials": {"base_url": "https://api.example.com/",
                "bearer_token": "own-secret"}}),
        )
        .await;
    let fpath = format!("/keys/{}", own["id"].as_str().unwrap());
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &fpath,
        json!({"credentials": {"base_url": "https://api.elsewhere.example/"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["credentials.bearer_token"]);
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &fpath,
        json!({"credentials": {"base_url": "https://api.example.com:2121/"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &fpath,
        json!({"credentials": {"base_url": "https://api.elsewhere.example/", "bearer_token": "new-secret"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &fpath,
        json!({"title": "renamed", "credentials": {"headers": {"X-A": "1"}, "bearer_token": "********"}}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "other fields change as before: {out}"
    );
}

async fn an_http_keys_secrets_stay_on_its_host(db: Db) {
    let (_env, s) = fresh(db).await;
    let editor = s.token_with_role("editor").await;
    let admin = s.token_with_role("admin").await;
    let open = s
        .create("/keys", json!({"system": "http", "title": "ERP", "credentials": {"bearer_token": "erp-secret"}}))
        .await;
    let dest = |key: &Value, url: &str| {
        json!({"title": "mine", "system": "http", "function": "http.send", "key_id": key["id"],
               "params": {"url": url}})
    };

    // The reported case: an editor's own destination with the organisation's key.
    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/destinations",
        dest(&open, "http://127.0.0.1:9/collect"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(
        out["detail"].as_str().unwrap().contains("base_url"),
        "{out}"
    );
    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/sources",
        json!({"title": "mine", "system": "http", "function": "http.fetch", "key_id": open["id"],
               "trigger": "manual", "params": {"url": "http://127.0.0.1:9/collect"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (_, all) = s.get("/destinations").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 0);
    // An editor's destination without a key, then the key put on it: refused too.
    let d = call(&s, &editor, Method::POST, "/destinations",
        json!({"title": "mine", "system": "http", "function": "http.send", "params": {"url": "http://127.0.0.1:9/collect"}})).await;
    assert_eq!(d.0, StatusCode::CREATED, "{}", d.1);
    let dpath = format!("/destinations/{}", d.1["id"].as_str().unwrap());
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &dpath,
        json!({"key_id": open["id"]}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    // An admin decides: they may.
    let (status, out) = call(
        &s,
        &admin,
        Method::POST,
        "/destinations",
        dest(&open, "http://127.0.0.1:9/erp"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    let admins = format!("/destinations/{}", out["id"].as_str().unwrap());
    // ... and an editor changing where that destination sends is refused, a title is not.
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &admins,
        json!({"params": {"url": "http://127.0.0.1:9/collect"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &admins,
        json!({"title": "ERP orders"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");

    // A key bound to a base_url may be used by anyone, under it only.
    let bound = s
        .create(
            "/keys",
            json!({"system": "http", "title": "ERP API", "credentials": {
            "bearer_token": "erp-secret", "base_url": "http://127.0.0.1:9/api"}}),
        )
        .await;
    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/destinations",
        dest(&bound, "http://127.0.0.1:9/api/orders"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    let bpath = format!("/destinations/{}", out["id"].as_str().unwrap());
    for url in [
        "http://127.0.0.1:9/apix",
        "http://127.0.0.1:10/api/orders",
        "https://127.0.0.1:9/api/orders",
        "http://127.0.0.2:9/api/orders",
        "http://user@127.0.0.1:9/api/orders",
    ] {
        let (status, out) = call(
            &s,
            &editor,
            Method::POST,
            "/destinations",
            dest(&bound, url),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {out}");
        assert_eq!(error_fields(&out), vec!["params.url"], "{url}");
        let (status, _) = call(
            &s,
            &editor,
            Method::PATCH,
            &bpath,
            json!({"params": {"url": url}}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
    // Moving the key's base_url takes its secrets again.
    let kpath = format!("/keys/{}", bound["id"].as_str().unwrap());
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &kpath,
        json!({"credentials": {"base_url": "http://127.0.0.1:9/"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["credentials.bearer_token"]);
    let (status, out) = call(
        &s,
        &editor,
        Method::PATCH,
        &kpath,
        json!({"credentials": {"base_url": null}}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "dropping the bound is a move too: {out}"
    );
    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/keys",
        json!({"system": "http", "title": "x", "credentials": {"base_url": "ftp://127.0.0.1/"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(error_fields(&out), vec!["credentials.base_url"]);
    // A key with no secrets goes anywhere: nothing to leak.
    let plain = call(
        &s,
        &editor,
        Method::POST,
        "/keys",
        json!({"system": "http", "title": "plain", "credentials": {"headers": {"X-Tenant": "7"}}}),
    )
    .await;
    assert_eq!(plain.0, StatusCode::CREATED);
    let (status, out) = call(
        &s,
        &editor,
        Method::POST,
        "/destinations",
        dest(&plain.1, "http://127.0.0.1:9/x"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
}

async fn secret_headers_are_sealed_masked_and_sent(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.workers.poll_interval_ms = 50;
    let s = Server::start(config).await;
    let sink = Sink::ok().await;
    let base = format!("http://{}", sink.addr);
    let key = s
        .create(
            "/keys",
            json!({"system": "http", "title": "ERP", "credentials": {
            "base_url": base, "headers": {"X-Tenant": "7"},
            "secret_headers": {"X-Api-Key": "sk_live_hidden_value"}}}),
        )
        .await;
    assert_eq!(
        key["credentials"]["secret_headers"],
        json!({"X-Api-Key": "********"})
    );
    assert_eq!(key["credentials"]["headers"], json!({"X-Tenant": "7"}));
    let kpath = format!("/keys/{}", key["id"].as_str().unwrap());
    let viewer = s.token_with_role("viewer").await;
    let (_, seen) = call(&s, &viewer, Method::GET, &kpath, json!(null)).await;
    let (_, list) = call(&s, &viewer, Method::GET, "/keys", json!(null)).await;
    for body in [&seen, &list] {
        assert!(!body.to_string().contains("sk_live_hidden_value"), "{body}");
    }
    // Sent back masked, the value is kept; a changed title does not touch it.
    let (status, out) = s
        .patch(
            &kpath,
            json!({"title": "ERP 2", "credentials": {"secret_headers": {"X-Api-Key": "********"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["credentials"]["secret_headers"],
        json!({"X-Api-Key": "********"})
    );
    let (status, out) = s
        .post(
            "/keys",
            json!({"system": "http", "title": "bad", "credentials": {
        "secret_headers": {"X-Api-Key": 5}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");

    let source = s
        .create("/sources", json!({"title": "Hook", "system": "http", "function": "http.webhook", "trigger": "webhook"}))
        .await;
    let destination = s
        .create(
            "/destinations",
            json!({"title": "ERP", "system": "http", "function": "http.send",
            "key_id": key["id"], "params": {"url": sink.url()}}),
        )
        .await;
    let st = s
        .create(
            "/streams",
            json!({"title": "To ERP", "data_type": "sales_order", "source_id": source["id"],
            "transformation_id": PASSTHROUGH, "destination_id": destination["id"]}),
        )
        .await;
    let (status, out) = s
        .post(
            "/events",
            json!({"stream_id": st["id"], "payloads": [{"id": "1"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received().is_empty() {
        assert!(Instant::now() < deadline, "nothing was delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = &sink.received()[0];
    assert_eq!(got.headers["x-api-key"], "sk_live_hidden_value");
    assert_eq!(got.headers["x-tenant"], "7");
    // A changed secret is what the next delivery sends (opened credentials are not kept
    // past a change of their key).
    let (status, out) = s
        .patch(
            &kpath,
            json!({"credentials": {"headers": {"X-Tenant": "8"},
                "secret_headers": {"X-Api-Key": "sk_live_rotated_value"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, out) = s
        .post(
            "/events",
            json!({"stream_id": st["id"], "payloads": [{"id": "2"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    while sink.received().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second event was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = &sink.received()[1];
    assert_eq!(got.headers["x-api-key"], "sk_live_rotated_value");
    assert_eq!(got.headers["x-tenant"], "8");
    s.stop().await;
}

async fn the_bootstrap_token_file_goes_once_the_token_is_used(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.bootstrap_token = None;
    let file = env.data_path().join(wharf::BOOTSTRAP_TOKEN_FILE);
    let s = Server::start(config.clone()).await;
    let token = std::fs::read_to_string(&file).expect("the first start writes the token file");
    let token = token.trim().to_string();
    s.stop().await;

    // Unused, it survives a restart.
    let s = Server::start(config.clone()).await;
    assert!(file.exists(), "the unused token's file was removed");
    let (status, _) = send(s.req_as(&token, Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() {
        assert!(
            Instant::now() < deadline,
            "the used token's file stayed on disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once its use is recorded, the bootstrap token no longer looks at the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, tokens) = send(s.req_as(&token, Method::GET, "/tokens")).await;
        let boot = tokens["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "bootstrap")
            .cloned()
            .unwrap();
        if !boot["last_used_at"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token's use was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another token's first use leaves a file (restored, as if a use elsewhere had not removed
    // it) alone; the next start removes it, as the token in it has been used.
    let other = {
        let (status, out) = send(
            s.req_as(&token, Method::POST, "/tokens")
                .json(&json!({"name": "ops", "role": "viewer"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        out["token"].as_str().unwrap().to_string()
    };
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let (status, _) = send(s.req_as(&other, Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(file.exists(), "another token's use removed the file");
    s.stop().await;
    let s = Server::start(config).await;
    assert!(!file.exists(), "the next start kept a used token's file");
    s.stop().await;
}

both_stores!(
    viewers_do_not_see_webhook_urls,
    uploads_need_the_role_that_creates_events,
    editors_can_stop_a_stream_with_a_private_transformation,
    a_demoted_users_tokens_lose_the_old_role,
    moving_a_keys_host_takes_its_secrets_again,
    an_http_keys_secrets_stay_on_its_host,
    secret_headers_are_sealed_masked_and_sent,
    the_bootstrap_token_file_goes_once_the_token_is_used,
    keys_of_a_system_no_longer_offered_are_kept_but_not_changed,
);
