//! `POST /sources/{id}/webhooks/install` and `/uninstall`: registering a webhook source's
//! subscriptions at the system (Shopify Admin API, DEAR External API), pointing at Wharf's
//! public URL, and removing them.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::IdPath;
use super::sources::{source_out, SourceOut};
use super::{AppState, Auth};
use crate::connectors::net::{CallError, Outbound};
use crate::connectors::{self, dear};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Key, Source};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(install))
        .routes(routes!(uninstall))
}

const SHOPIFY_API_VERSION: &str = "2025-01";

/// The key field that says where the system is, for a refused address.
fn host_field(system: &str, creds: &Value) -> &'static str {
    match system {
        "shopify" if creds.get("base_url").is_none() => "credentials.shop_domain",
        _ => "credentials.base_url",
    }
}

async fn prepare(
    state: &AppState,
    auth: &Auth,
    id: uuid::Uuid,
) -> Result<(Source, Value), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let source = state.store.get::<Source>(auth.org_id, id).await?;
    if source.trigger != "webhook" {
        return Err(ApiError::Conflict(
            "Only webhook sources have subscriptions to install.".into(),
        ));
    }
    if !matches!(source.system.as_str(), "shopify" | "dear") {
        return Err(ApiError::Conflict(format!(
            "Wharf installs subscriptions at Shopify and DEAR; set up `{}` to push to this source's webhook_url by hand.",
            source.system
        )));
    }
    let key_id = source
        .key_id
        .ok_or_else(|| ApiError::Conflict("The source has no key.".into()))?;
    let key = state.store.get::<Key>(auth.org_id, key_id).await?;
    let creds = connectors::open_key(&state.master_key, &key)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("key {} does not open", key.id)))?;
    Ok((source, creds))
}

fn shopify_base(creds: &Value) -> String {
    match creds.get("base_url").and_then(Value::as_str) {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "https://{}",
            creds["shop_domain"].as_str().unwrap_or_default()
        ),
    }
}

fn shopify_request(
    client: &Outbound,
    method: reqwest::Method,
    creds: &Value,
    path: &str,
) -> reqwest::RequestBuilder {
    let version = creds
        .get("api_version")
        .and_then(Value::as_str)
        .unwrap_or(SHOPIFY_API_VERSION);
    client
        .request(
            method,
            format!("{}/admin/api/{version}{path}", shopify_base(creds)),
        )
        .header(
            "X-Shopify-Access-Token",
            creds["access_token"].as_str().unwrap_or_default(),
        )
}

/// Sends through the guard: a refused host is the key's mistake (422 naming its field), any
/// other failure a 502.
async fn call(
    client: &Outbound,
    req: reqwest::RequestBuilder,
    what: &str,
    field: &'static str,
) -> Result<reqwest::Response, ApiError> {
    client.send(req, None).await.map_err(|e| match e {
        CallError::Blocked(_) => ApiError::invalid(
            field,
            format!(
                "{}: {what} {e}. Point the key at the system's public address.",
                e.code().as_str()
            ),
        ),
        other => ApiError::Upstream(format!("{what}: {other}")),
    })
}

/// The system's answer, or a 502 problem quoting it.
async fn answer(client: &Outbound, res: reqwest::Response, what: &str) -> Result<Value, ApiError> {
    let status = res.status();
    if !status.is_success() {
        let text = client.read_excerpt(res).await;
        let excerpt: String = text.chars().take(300).collect();
        return Err(ApiError::Upstream(format!(
            "{what}: the system answered {status}: {excerpt}"
        )));
    }
    let body = client
        .read_capped(res)
        .await
        .map_err(|e| ApiError::Upstream(format!("{what}: {e}")))?;
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn topics(source: &Source, default: &str) -> Vec<String> {
    match source.params.0.get("topics").and_then(Value::as_array) {
        Some(t) if !t.is_empty() => t
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![default.to_string()],
    }
}

/// DEAR's fields for how it should authenticate to Wharf, from the key's `webhook_auth`.
fn dear_auth_fields(creds: &Value, body: &mut Value) {
    let auth = &creds["webhook_auth"];
    let text = |n: &str| {
        auth.get(n)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match text("type").as_str() {
        "basic" => {
            body["ExternalAuthorizationType"] = json!("basicauth");
            body["ExternalUserName"] = json!(text("username"));
            body["ExternalPassword"] = json!(text("password"));
        }
        "bearer" => {
            body["ExternalAuthorizationType"] = json!("bearerauth");
            body["ExternalBearerToken"] = json!(text("token"));
        }
        "header" => {
            body["ExternalAuthorizationType"] = json!("noauth");
            body["ExternalHeaders"] =
                json!([{"Key": text("header_name"), "Value": text("header_value")}]);
        }
        _ => body["ExternalAuthorizationType"] = json!("noauth"),
    }
}

#[utoipa::path(post, path = "/sources/{id}/webhooks/install", tag = "sources",
    responses((status = 200, body = SourceOut), (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn install(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<SourceOut>, ApiError> {
    let (source, creds) = prepare(&state, &auth, id).await?;
    let base = state.config.public_base_url.as_deref().ok_or_else(|| {
        ApiError::Conflict("Set public_base_url (WHARF_PUBLIC_BASE_URL) to the address the system reaches Wharf at, then install.".into())
    })?;
    let address = format!(
        "{}/hooks/{}",
        base.trim_end_matches('/'),
        source.webhook_token.clone().unwrap_or_default()
    );
    let client = &state.outbound;
    let field = host_field(&source.system, &creds);
    let mut subscriptions = Vec::new();
    match source.system.as_str() {
        "shopify" => {
            for topic in topics(&source, "orders/create") {
                let req = shopify_request(client, reqwest::Method::POST, &creds, "/webhooks.json")
                    .json(
                        &json!({"webhook": {"topic": topic, "address": address, "format": "json"}}),
                    );
                let what = format!("subscribing to {topic}");
                let res = call(client, req, &what, field).await?;
                let out = answer(client, res, &what).await?;
                subscriptions.push(json!({"topic": topic, "id": out["webhook"]["id"]}));
            }
        }
        _ => {
            for topic in topics(&source, "Sale/OrderAuthorised") {
                let mut body = json!({"Type": topic, "IsActive": true, "ExternalURL": address,
                    "Name": format!("Wharf: {}", source.title)});
                dear_auth_fields(&creds, &mut body);
                let req =
                    dear::request(client, reqwest::Method::POST, &creds, "/webhooks").json(&body);
                let what = format!("subscribing to {topic}");
                let res = call(client, req, &what, field).await?;
                let out = answer(client, res, &what).await?;
                subscriptions.push(json!({"topic": topic, "id": out["ID"]}));
            }
        }
    }
    let webhooks = json!({"installed": true, "address": address, "subscriptions": subscriptions,
        "installed_at": Timestamp::now()});
    state
        .store
        .set_webhook_state(auth.org_id, source.id, &webhooks)
        .await?;
    let source = state.store.get::<Source>(auth.org_id, source.id).await?;
    Ok(Json(source_out(&state, source)))
}

#[utoipa::path(post, path = "/sources/{id}/webhooks/uninstall", tag = "sources",
    responses((status = 200, body = SourceOut), (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn uninstall(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<SourceOut>, ApiError> {
    let (source, creds) = prepare(&state, &auth, id).await?;
    let client = &state.outbound;
    let field = host_field(&source.system, &creds);
    let installed = source
        .webhook_state
        .0
        .get("subscriptions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for sub in &installed {
        let id = match &sub["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => continue,
        };
        let req = match source.system.as_str() {
            "shopify" => shopify_request(
                client,
                reqwest::Method::DELETE,
                &creds,
                &format!("/webhooks/{id}.json"),
            ),
            _ => dear::request(client, reqwest::Method::DELETE, &creds, "/webhooks")
                .query(&[("ID", &id)]),
        };
        let what = format!("removing subscription {id}");
        let res = call(client, req, &what, field).await?;
        // Already gone at the system: nothing left to remove.
        if res.status().as_u16() != 404 {
            answer(client, res, &what).await?;
        }
    }
    let webhooks =
        json!({"installed": false, "subscriptions": [], "uninstalled_at": Timestamp::now()});
    state
        .store
        .set_webhook_state(auth.org_id, source.id, &webhooks)
        .await?;
    let source = state.store.get::<Source>(auth.org_id, source.id).await?;
    Ok(Json(source_out(&state, source)))
}
