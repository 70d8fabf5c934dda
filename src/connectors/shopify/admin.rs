//! The Shopify Admin API client, and installing webhook subscriptions with it.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{ShopifyWebhook, WebhookParams};
use crate::connectors::install::{self as calls, answer, remove};
use crate::connectors::net::Outbound;
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, InstallError, Installer};

/// The Admin API version when the key names none.
const API_VERSION: &str = "2025-01";

fn base(key: &Value) -> String {
    match key.get("base_url").and_then(Value::as_str) {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "https://{}",
            key["shop_domain"].as_str().unwrap_or_default()
        ),
    }
}

/// An Admin API request with the key's access token; send it with [`Outbound::send`].
pub fn request(
    net: &Outbound,
    method: reqwest::Method,
    key: &Value,
    path: &str,
) -> reqwest::RequestBuilder {
    let version = key
        .get("api_version")
        .and_then(Value::as_str)
        .unwrap_or(API_VERSION);
    net.request(method, format!("{}/admin/api/{version}{path}", base(key)))
        .header(
            "X-Shopify-Access-Token",
            key["access_token"].as_str().unwrap_or_default(),
        )
}

/// The key field that says where the store is, for a refused address.
fn host_field(key: &Value) -> &'static str {
    if key.get("base_url").is_none() {
        "credentials.shop_domain"
    } else {
        "credentials.base_url"
    }
}

fn key<'a>(call: &Call<'a>) -> Result<&'a Value, InstallError> {
    call.key
        .ok_or_else(|| InstallError::Upstream("the source has no key".into()))
}

#[async_trait]
impl Installer for ShopifyWebhook {
    async fn install(
        &self,
        call: Call<'_>,
        address: &str,
        _title: &str,
    ) -> Result<Vec<Value>, InstallError> {
        let key = key(&call)?;
        let params = WebhookParams::parse(call.params).map_err(InstallError::Upstream)?;
        let mut subscriptions = Vec::new();
        for topic in params.topics {
            let req = request(call.net, reqwest::Method::POST, key, "/webhooks.json")
                .json(&json!({"webhook": {"topic": topic, "address": address, "format": "json"}}));
            let what = format!("subscribing to {topic}");
            let res = calls::call(call.net, req, &what, host_field(key)).await?;
            let out = answer(call.net, res, &what).await?;
            subscriptions.push(json!({"topic": topic, "id": out["webhook"]["id"]}));
        }
        Ok(subscriptions)
    }

    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError> {
        let key = key(&call)?;
        let req = request(
            call.net,
            reqwest::Method::DELETE,
            key,
            &format!("/webhooks/{id}.json"),
        );
        let what = format!("removing subscription {id}");
        remove(call.net, req, &what, host_field(key)).await
    }
}
