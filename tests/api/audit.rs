//! The audit log: a walk over every change the OpenAPI document offers, each made once and
//! each leaving exactly one entry naming who did what to which object, with no secret in it;
//! the log's filters, order and CSV; and that nothing can change it.

use std::collections::BTreeSet;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{send, Db, Env, Server, OWNER_TOKEN};

/// Operations that change nothing, so leave no entry: a transformation's dry run.
const NOT_CHANGES: [&str; 1] = ["POST /api/v1/transformations/{id}/test"];

/// Secrets the walk sends; none may appear in the log.
const KEY_SECRET: &str = "bearer-secret-0001";
const KEY_SECRET_2: &str = "bearer-secret-0002";
const CHANNEL_SECRET: &str = "whsec_channel_secret_0003";
const PASSWORD: &str = "harbour lights at dawn";
const PASSWORD_2: &str = "tide tables turn slowly";

struct Walk<'a> {
    s: &'a Server,
    /// The newest entry seen.
    last: String,
    done: BTreeSet<String>,
    secrets: Vec<String>,
    /// A signed-in person's cookie and CSRF token.
    browser: Option<(String, String)>,
}

impl Walk<'_> {
    async fn entries_after(&self, after: &str) -> Vec<Value> {
        let (status, page) = self.s.get("/audit-log?order=desc&limit=20").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["id"].as_str().unwrap() > after)
            .cloned()
            .collect()
    }

    fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.s.req(method, path)
    }

    fn as_person(&self, method: Method, path: &str) -> RequestBuilder {
        let (cookie, csrf) = self.browser.as_ref().expect("signed in");
        self.s
            .client
            .request(method, self.s.url(&format!("/api/v1{path}")))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
    }

    fn public(&self, method: Method, path: &str) -> RequestBuilder {
        self.s
            .client
            .request(method, self.s.url(&format!("/api/v1{path}")))
    }

    /// Makes the change `op` ("METHOD /api/v1/template") with `req`; it must answer
    /// `status` and leave exactly one entry, `action` on `object_type`.
    async fn change(
        &mut self,
        op: &str,
        req: RequestBuilder,
        status: StatusCode,
        action: &str,
        object_type: &str,
    ) -> (Value, Value) {
        let (got, body) = send(req).await;
        assert_eq!(got, status, "{op}: {body}");
        let new = self.entries_after(&self.last.clone()).await;
        assert_eq!(new.len(), 1, "{op} wrote {} entries: {new:?}", new.len());
        let entry = new[0].clone();
        assert_eq!(entry["action"], action, "{op}: {entry}");
        assert_eq!(entry["object"]["type"], object_type, "{op}: {entry}");
        assert!(
            entry["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{op}: {entry}"
        );
        assert!(
            entry["ip"].as_str().is_some_and(|ip| ip == "127.0.0.1"),
            "{op}: {entry}"
        );
        self.last = entry["id"].as_str().unwrap().to_string();
        assert!(self.done.insert(op.to_string()), "{op} walked twice");
        (body, entry)
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn every_change_writes_exactly_one_audit_entry_without_secrets(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.public_base_url = Some("https://wharf.example.com".into());
    // Nothing is delivered: events stay open for aborting.
    config.workers.enabled = false;
    let s = Server::start(config).await;
    let (shop, _subs) = crate::ingest::shopify_api().await;
    let mut w = Walk {
        s: &s,
        last: String::new(),
        done: BTreeSet::new(),
        secrets: vec![
            KEY_SECRET.into(),
            KEY_SECRET_2.into(),
            CHANNEL_SECRET.into(),
            PASSWORD.into(),
            PASSWORD_2.into(),
            OWNER_TOKEN.into(),
        ],
        browser: None,
    };
    use Method as M;
    const CREATED: StatusCode = StatusCode::CREATED;
    const OK: StatusCode = StatusCode::OK;
    const GONE: StatusCode = StatusCode::NO_CONTENT;
    const QUEUED: StatusCode = StatusCode::ACCEPTED;

    // Keys: a secret sent, changed and never shown.
    let (key, entry) = w
        .change(
            "POST /api/v1/keys",
            w.api(M::POST, "/keys")
                .json(&json!({"system": "http", "title": "Partner",
                "credentials": {"bearer_token": KEY_SECRET}})),
            CREATED,
            "key.create",
            "key",
        )
        .await;
    assert_eq!(entry["changes"]["title"], json!([null, "Partner"]));
    assert_eq!(entry["actor"]["type"], "token");
    let key = id(&key);
    let (_, entry) = w
        .change(
            "PATCH /api/v1/keys/{id}",
            w.api(M::PATCH, &format!("/keys/{key}"))
                .json(&json!({"title": "Partner API",
                "credentials": {"bearer_token": KEY_SECRET_2}})),
            OK,
            "key.update",
            "key",
        )
        .await;
    assert_eq!(entry["changes"]["title"], json!(["Partner", "Partner API"]));
    assert_eq!(
        entry["changes"]["credentials"],
        json!(["********", "********"])
    );

    // Sources, transformations, destinations, streams.
    let (source, _) = w
        .change(
            "POST /api/v1/sources",
            w.api(M::POST, "/sources")
                .json(&json!({"title": "Orders in", "system": "http",
                "function": "http.webhook", "trigger": "webhook"})),
            CREATED,
            "source.create",
            "source",
        )
        .await;
    let source = id(&source);
    w.change(
        "PATCH /api/v1/sources/{id}",
        w.api(M::PATCH, &format!("/sources/{source}"))
            .json(&json!({"title": "Orders"})),
        OK,
        "source.update",
        "source",
    )
    .await;
    let (t, _) = w
        .change(
            "POST /api/v1/transformations",
            w.api(M::POST, "/transformations").json(
                &json!({"title": "Pass", "data_type": "sales_order",
                "language": "javascript", "format": "json",
                "code": "function transform(record, ctx) { return record; }"}),
            ),
            CREATED,
            "transformation.create",
            "transformation",
        )
        .await;
    let t = id(&t);
    w.change(
        "PATCH /api/v1/transformations/{id}",
        w.api(M::PATCH, &format!("/transformations/{t}"))
            .json(&json!({"title": "Pass it on"})),
        OK,
        "transformation.update",
        "transformation",
    )
    .await;
    let (copy, _) = w
        .change(
            "POST /api/v1/transformations/{id}/copy",
            w.api(M::POST, &format!("/transformations/{t}/copy")),
            CREATED,
            "transformation.copy",
            "transformation",
        )
        .await;
    let (dest, _) = w
        .change(
            "POST /api/v1/destinations",
            w.api(M::POST, "/destinations").json(&json!({"title": "Sink", "system": "http",
                "function": "http.send", "key_id": key, "params": {"url": "http://127.0.0.1:9/orders"}})),
            CREATED,
            "destination.create",
            "destination",
        )
        .await;
    let dest = id(&dest);
    w.change(
        "PATCH /api/v1/destinations/{id}",
        w.api(M::PATCH, &format!("/destinations/{dest}"))
            .json(&json!({"title": "Sink 2"})),
        OK,
        "destination.update",
        "destination",
    )
    .await;
    let (stream, _) = w
        .change(
            "POST /api/v1/streams",
            w.api(M::POST, "/streams")
                .json(&json!({"title": "Orders", "data_type": "sales_order",
                "source_id": source, "transformation_id": t, "destination_id": dest})),
            CREATED,
            "stream.create",
            "stream",
        )
        .await;
    let stream = id(&stream);
    w.change(
        "PATCH /api/v1/streams/{id}",
        w.api(M::PATCH, &format!("/streams/{stream}"))
            .json(&json!({"test_mode": true})),
        OK,
        "stream.update",
        "stream",
    )
    .await;

    // Work: runs, uploads, events made by hand, replicas, aborts, ignoring.
    let (run, _) = w
        .change(
            "POST /api/v1/streams/{id}/run",
            w.api(M::POST, &format!("/streams/{stream}/run")),
            QUEUED,
            "stream.run",
            "stream",
        )
        .await;
    assert!(run["job_id"].is_string());
    let (upload, _) = w
        .change(
            "POST /api/v1/streams/{id}/uploads",
            w.api(M::POST, &format!("/streams/{stream}/uploads"))
                .header("content-type", "application/json")
                .body(r#"[{"id": "u1"}, {"id": "u2"}]"#),
            QUEUED,
            "stream.upload",
            "stream",
        )
        .await;
    let upload_job = upload["job_id"].as_str().unwrap().to_string();
    let (made, _) = w
        .change(
            "POST /api/v1/events",
            w.api(M::POST, "/events")
                .json(&json!({"stream_id": stream, "payloads": [{"id": "e1"}, {"id": "e2"}]})),
            QUEUED,
            "stream.events_create",
            "stream",
        )
        .await;
    let event = made["event_ids"][0].as_str().unwrap().to_string();
    let other_event = made["event_ids"][1].as_str().unwrap().to_string();
    w.change(
        "POST /api/v1/events/{id}/replicate",
        w.api(M::POST, &format!("/events/{event}/replicate"))
            .json(&json!({"payload": {"id": "e1", "fixed": true}})),
        QUEUED,
        "event.replicate",
        "event",
    )
    .await;
    let (many, _) = w
        .change(
            "POST /api/v1/events/replicate",
            w.api(M::POST, "/events/replicate")
                .json(&json!({"event_ids": [other_event]})),
            QUEUED,
            "event.replicate_many",
            "events",
        )
        .await;
    assert_eq!(many["replicated"], 1);
    w.change(
        "PATCH /api/v1/events/{id}",
        w.api(M::PATCH, &format!("/events/{event}"))
            .json(&json!({"ignored": true})),
        OK,
        "event.update",
        "event",
    )
    .await;
    w.change(
        "POST /api/v1/events/{id}/abort",
        w.api(M::POST, &format!("/events/{event}/abort")),
        OK,
        "event.abort",
        "event",
    )
    .await;
    w.change(
        "POST /api/v1/jobs/{id}/replicate",
        w.api(M::POST, &format!("/jobs/{upload_job}/replicate")),
        QUEUED,
        "job.replicate",
        "job",
    )
    .await;
    w.change(
        "POST /api/v1/jobs/{id}/abort",
        w.api(M::POST, &format!("/jobs/{upload_job}/abort")),
        OK,
        "job.abort",
        "job",
    )
    .await;

    // Lookup tables.
    let (table, _) = w
        .change(
            "POST /api/v1/lookup-tables",
            w.api(M::POST, "/lookup-tables")
                .json(&json!({"name": "skus", "entries": {"A": "1"}})),
            CREATED,
            "lookup_table.create",
            "lookup_table",
        )
        .await;
    let table = id(&table);
    w.change(
        "PATCH /api/v1/lookup-tables/{id}",
        w.api(M::PATCH, &format!("/lookup-tables/{table}"))
            .json(&json!({"description": "SKUs"})),
        OK,
        "lookup_table.update",
        "lookup_table",
    )
    .await;
    w.change(
        "PUT /api/v1/lookup-tables/{id}/entries",
        w.api(M::PUT, &format!("/lookup-tables/{table}/entries"))
            .json(&json!({"entries": {"B": "2"}, "replace": false})),
        OK,
        "lookup_table.entries_put",
        "lookup_table",
    )
    .await;
    w.change(
        "PUT /api/v1/lookup-tables/{id}/csv",
        w.api(M::PUT, &format!("/lookup-tables/{table}/csv?replace=false"))
            .header("content-type", "text/csv")
            .body("key,value\nC,3\n"),
        OK,
        "lookup_table.csv_upload",
        "lookup_table",
    )
    .await;
    w.change(
        "DELETE /api/v1/lookup-tables/{id}/entries/{key}",
        w.api(M::DELETE, &format!("/lookup-tables/{table}/entries/B")),
        GONE,
        "lookup_table.entry_delete",
        "lookup_table",
    )
    .await;

    // Alerts: a channel (its secret never logged), a rule, and an alert acted on.
    let (channel, _) = w
        .change(
            "POST /api/v1/alert-channels",
            w.api(M::POST, "/alert-channels")
                .json(&json!({"name": "Ops hook", "kind": "webhook",
                "target": "http://127.0.0.1:9/alerts", "secret": CHANNEL_SECRET})),
            CREATED,
            "alert_channel.create",
            "alert_channel",
        )
        .await;
    let channel = id(&channel);
    w.change(
        "PATCH /api/v1/alert-channels/{id}",
        w.api(M::PATCH, &format!("/alert-channels/{channel}"))
            .json(&json!({"name": "Ops", "secret": format!("{CHANNEL_SECRET}-2")})),
        OK,
        "alert_channel.update",
        "alert_channel",
    )
    .await;
    let (rule, _) = w
        .change(
            "POST /api/v1/alert-rules",
            w.api(M::POST, "/alert-rules")
                .json(&json!({"name": "Failures", "kind": "job_failed",
                "channel_ids": [channel]})),
            CREATED,
            "alert_rule.create",
            "alert_rule",
        )
        .await;
    let rule = id(&rule);
    w.change(
        "PATCH /api/v1/alert-rules/{id}",
        w.api(M::PATCH, &format!("/alert-rules/{rule}"))
            .json(&json!({"name": "Job failures"})),
        OK,
        "alert_rule.update",
        "alert_rule",
    )
    .await;
    let alert = open_alert(&env, &s, &rule, &stream).await;
    for (verb, status_after) in [
        ("acknowledge", "acknowledged"),
        ("ignore", "ignored"),
        ("resolve", "resolved"),
    ] {
        let (out, entry) = w
            .change(
                &format!("POST /api/v1/alerts/{{id}}/{verb}"),
                w.api(M::POST, &format!("/alerts/{alert}/{verb}")),
                OK,
                &format!("alert.{verb}"),
                "alert",
            )
            .await;
        assert_eq!(out["status"], status_after);
        assert_eq!(entry["changes"]["status"][1], status_after);
    }

    // A Shopify source's webhooks, installed and uninstalled at the shop.
    let (shop_key, _) = {
        let out = s
            .create(
                "/keys",
                json!({"system": "shopify", "title": "Shop", "credentials":
                {"shop_domain": "example.myshopify.com", "access_token": "shpat_admin",
                 "webhook_secret": "whsec_shop", "base_url": shop}}),
            )
            .await;
        w.last = w.entries_after("").await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        (id(&out), ())
    };
    let shop_source = s
        .create(
            "/sources",
            json!({"title": "Shop orders", "system": "shopify",
            "function": "shopify.webhook", "key_id": shop_key, "trigger": "webhook",
            "params": {"topics": ["orders/create"]}}),
        )
        .await;
    w.last = w.entries_after("").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shop_source = id(&shop_source);
    w.change(
        "POST /api/v1/sources/{id}/webhooks/install",
        w.api(M::POST, &format!("/sources/{shop_source}/webhooks/install")),
        OK,
        "source.webhooks_install",
        "source",
    )
    .await;
    w.change(
        "POST /api/v1/sources/{id}/webhooks/uninstall",
        w.api(
            M::POST,
            &format!("/sources/{shop_source}/webhooks/uninstall"),
        ),
        OK,
        "source.webhooks_uninstall",
        "source",
    )
    .await;

    // People: an invitation, its link, sign-in, 2FA, sessions, passwords, resets.
    let (person, entry) = w
        .change(
            "POST /api/v1/users",
            w.api(M::POST, "/users")
                .json(&json!({"email": "ops@example.com", "name": "Ops",
                "role": "owner"})),
            CREATED,
            "user.create",
            "user",
        )
        .await;
    assert_eq!(entry["changes"]["email"], json!([null, "ops@example.com"]));
    w.secrets
        .push(person["invitation"]["token"].as_str().unwrap().into());
    let user = id(&person);
    w.change(
        "POST /api/v1/password",
        w.public(M::POST, "/password")
            .json(&json!({"token": person["invitation"]["token"], "password": PASSWORD})),
        GONE,
        "user.password_set",
        "user",
    )
    .await;
    let (signed, entry) = w
        .change(
            "POST /api/v1/session",
            w.public(M::POST, "/session")
                .json(&json!({"email": "ops@example.com", "password": PASSWORD})),
            OK,
            "session.create",
            "session",
        )
        .await;
    assert_eq!(
        entry["actor"],
        json!({"type": "user", "id": user, "name": "Ops"})
    );
    let csrf = signed["csrf_token"].as_str().unwrap().to_string();
    w.secrets.push(csrf.clone());
    // The cookie's token: sign in once more to read it from the header.
    let res = w
        .public(M::POST, "/session")
        .json(&json!({"email": "ops@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let csrf2 = res.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    w.secrets
        .push(cookie.trim_start_matches("wharf_session=").into());
    w.last = w.entries_after("").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.browser = Some((cookie, csrf2));
    let (_, sessions) = send(w.as_person(M::GET, "/users/me/sessions")).await;
    let first_session = sessions.as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.change(
        "DELETE /api/v1/users/me/sessions/{id}",
        w.as_person(M::DELETE, &format!("/users/me/sessions/{first_session}")),
        GONE,
        "session.revoke",
        "session",
    )
    .await;
    let (enrolment, _) = w
        .change(
            "POST /api/v1/users/me/totp",
            w.as_person(M::POST, "/users/me/totp"),
            CREATED,
            "user.totp_enrol",
            "user",
        )
        .await;
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    w.secrets.push(secret.clone());
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let code = wharf::people::totp::code(&raw, wharf::people::totp::step_at(s.clock.now()));
    let (codes, _) = w
        .change(
            "POST /api/v1/users/me/totp/confirm",
            w.as_person(M::POST, "/users/me/totp/confirm")
                .json(&json!({"code": code})),
            OK,
            "user.totp_enable",
            "user",
        )
        .await;
    for c in codes["recovery_codes"].as_array().unwrap() {
        w.secrets.push(c.as_str().unwrap().into());
    }
    w.change(
        "POST /api/v1/users/me/password",
        w.as_person(M::POST, "/users/me/password")
            .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD_2})),
        GONE,
        "user.password_change",
        "user",
    )
    .await;
    w.change(
        "POST /api/v1/users/{id}/totp/reset",
        w.api(M::POST, &format!("/users/{user}/totp/reset")),
        GONE,
        "user.totp_reset",
        "user",
    )
    .await;
    let (link, _) = w
        .change(
            "POST /api/v1/users/{id}/password-reset",
            w.api(M::POST, &format!("/users/{user}/password-reset")),
            CREATED,
            "user.password_reset",
            "user",
        )
        .await;
    w.secrets.push(link["token"].as_str().unwrap().into());
    w.change(
        "PATCH /api/v1/users/{id}",
        w.api(M::PATCH, &format!("/users/{user}"))
            .json(&json!({"name": "Ops lead"})),
        OK,
        "user.update",
        "user",
    )
    .await;
    w.change(
        "DELETE /api/v1/session",
        w.as_person(M::DELETE, "/session"),
        GONE,
        "session.delete",
        "session",
    )
    .await;

    // Tokens and organisations.
    let (token, _) = w
        .change(
            "POST /api/v1/tokens",
            w.api(M::POST, "/tokens")
                .json(&json!({"name": "CI", "role": "viewer"})),
            CREATED,
            "token.create",
            "token",
        )
        .await;
    w.secrets.push(token["token"].as_str().unwrap().into());
    w.change(
        "DELETE /api/v1/tokens/{id}",
        w.api(M::DELETE, &format!("/tokens/{}", id(&token))),
        GONE,
        "token.delete",
        "token",
    )
    .await;
    let (org, _) = w
        .change(
            "POST /api/v1/organisations",
            w.api(M::POST, "/organisations")
                .json(&json!({"name": "sister-shop"})),
            CREATED,
            "organisation.create",
            "organisation",
        )
        .await;
    w.secrets.push(org["owner_token"].as_str().unwrap().into());
    let (_, orgs) = send(w.api(M::GET, "/organisations")).await;
    let mine = id(&orgs["items"][0]);
    let (_, entry) = w
        .change(
            "PATCH /api/v1/organisations/{id}",
            w.api(M::PATCH, &format!("/organisations/{mine}"))
                .json(&json!({"require_2fa": true, "retention": {"payload_days": 10}})),
            OK,
            "organisation.update",
            "organisation",
        )
        .await;
    assert_eq!(entry["changes"]["require_2fa"], json!([false, true]));

    // Deletes, last.
    w.change(
        "DELETE /api/v1/users/{id}",
        w.api(M::DELETE, &format!("/users/{user}")),
        GONE,
        "user.delete",
        "user",
    )
    .await;
    w.change(
        "DELETE /api/v1/alert-rules/{id}",
        w.api(M::DELETE, &format!("/alert-rules/{rule}")),
        GONE,
        "alert_rule.delete",
        "alert_rule",
    )
    .await;
    w.change(
        "DELETE /api/v1/alert-channels/{id}",
        w.api(M::DELETE, &format!("/alert-channels/{channel}")),
        GONE,
        "alert_channel.delete",
        "alert_channel",
    )
    .await;
    w.change(
        "DELETE /api/v1/lookup-tables/{id}",
        w.api(M::DELETE, &format!("/lookup-tables/{table}")),
        GONE,
        "lookup_table.delete",
        "lookup_table",
    )
    .await;
    w.change(
        "DELETE /api/v1/streams/{id}",
        w.api(M::DELETE, &format!("/streams/{stream}")),
        GONE,
        "stream.delete",
        "stream",
    )
    .await;
    w.change(
        "DELETE /api/v1/transformations/{id}",
        w.api(M::DELETE, &format!("/transformations/{}", id(&copy))),
        GONE,
        "transformation.delete",
        "transformation",
    )
    .await;
    w.change(
        "DELETE /api/v1/destinations/{id}",
        w.api(M::DELETE, &format!("/destinations/{dest}")),
        GONE,
        "destination.delete",
        "destination",
    )
    .await;
    w.change(
        "DELETE /api/v1/sources/{id}",
        w.api(M::DELETE, &format!("/sources/{source}")),
        GONE,
        "source.delete",
        "source",
    )
    .await;
    w.change(
        "DELETE /api/v1/keys/{id}",
        w.api(M::DELETE, &format!("/keys/{key}")),
        GONE,
        "key.delete",
        "key",
    )
    .await;

    // Every change the document offers was walked.
    let (_, doc) = send(s.client.get(s.url("/api/v1/openapi.json"))).await;
    let mut offered = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let op = format!("{} {path}", method.to_uppercase());
            if method != "get" && !NOT_CHANGES.contains(&op.as_str()) {
                offered.insert(op);
            }
        }
    }
    let missing: Vec<_> = offered.difference(&w.done).collect();
    assert!(missing.is_empty(), "changes not walked: {missing:?}");

    // No secret anywhere in the log, in JSON or CSV.
    let res = s
        .req(M::GET, "/audit-log")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let csv = res.text().await.unwrap();
    assert!(
        csv.starts_with("id,at,action,actor,object,changes,ip,request_id\n"),
        "{csv}"
    );
    assert!(csv.lines().count() > w.done.len(), "every entry exported");
    for secret in &w.secrets {
        assert!(
            !csv.contains(secret.as_str()),
            "the audit log shows a secret: {secret}"
        );
    }
}

/// An open alert of `rule` on `stream`, as the evaluator would make it.
async fn open_alert(env: &Env, s: &Server, rule: &str, stream: &str) -> String {
    let (_, orgs) = s.get("/organisations").await;
    let org: uuid::Uuid = orgs["items"][0]["id"].as_str().unwrap().parse().unwrap();
    let store = wharf::store::Store::connect(&env.config()).await.unwrap();
    let now = wharf::domain::Timestamp::now();
    let alert = wharf::store::Alert {
        id: uuid::Uuid::now_v7(),
        org_id: org,
        rule_id: rule.parse().unwrap(),
        stream_id: stream.parse().unwrap(),
        error_code: String::new(),
        status: "open".into(),
        first_seen_at: now,
        last_seen_at: now,
        count: 1,
        summary: "A job failed".into(),
        sample_event_ids: sqlx::types::Json(json!([])),
        notified_count: 1,
        flood_started_at: None,
        flood_sent: 0,
        clear_since: None,
        resolved_at: None,
        created_at: now,
        updated_at: now,
    };
    store.insert(&alert).await.unwrap();
    store.close().await;
    alert.id.to_string()
}

/// The log filters by action, object and actor, pages newest first, and refuses what a
/// viewer asks; nothing in the API or the database changes an entry.
async fn the_log_is_filtered_paged_and_append_only(db: Db) {
    let env = Env::new(db).await;
    let s = Server::start(env.config()).await;
    for title in ["A", "B", "C"] {
        s.create(
            "/keys",
            json!({"system": "http", "title": title, "credentials": {}}),
        )
        .await;
    }
    let (_, page) = s.get("/audit-log?action=key.create&limit=2").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["changes"]["title"], json!([null, "A"]));
    let (_, next) = s
        .get(&format!(
            "/audit-log?action=key.create&limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(next["items"][0]["changes"]["title"], json!([null, "C"]));
    assert_eq!(next["next_cursor"], Value::Null);
    let (_, newest) = s.get("/audit-log?order=desc&limit=1").await;
    assert_eq!(newest["items"][0]["changes"]["title"], json!([null, "C"]));
    let key = items[1]["object"]["id"].as_str().unwrap();
    let (_, by_object) = s.get(&format!("/audit-log?object_id={key}")).await;
    assert_eq!(by_object["items"].as_array().unwrap().len(), 1);
    let (_, by_actor) = s.get("/audit-log?actor_type=user").await;
    assert_eq!(by_actor["items"].as_array().unwrap().len(), 0);
    let (status, _) = s.get("/audit-log?order=sideways").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Owners and admins read it; others do not.
    let admin = s.token_with_role("admin").await;
    let (status, _) = send(s.req_as(&admin, Method::GET, "/audit-log")).await;
    assert_eq!(status, StatusCode::OK);
    let editor = s.token_with_role("editor").await;
    let (status, _) = send(s.req_as(&editor, Method::GET, "/audit-log")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // There is no route that changes or removes an entry.
    let entry = items[0]["id"].as_str().unwrap();
    for method in [Method::PATCH, Method::PUT, Method::DELETE] {
        let (status, _) = send(s.req(method.clone(), &format!("/audit-log/{entry}"))).await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {status}"
        );
    }
    // Not even the database's owner updates an entry.
    s.stop().await;
    let id: uuid::Uuid = entry.parse().unwrap();
    let refused = env
        .try_on_store(
            "UPDATE audit_log SET action = 'key.delete' WHERE id = $1",
            id,
        )
        .await;
    assert!(refused.unwrap_err().to_string().contains("append-only"));
}

both_stores!(
    every_change_writes_exactly_one_audit_entry_without_secrets,
    the_log_is_filtered_paged_and_append_only,
);
