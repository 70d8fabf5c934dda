//! Where a key's store is, and installing webhook subscriptions through the GraphQL Admin API
//! (`webhookSubscriptionCreate` / `webhookSubscriptionDelete`).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::graphql::{user_errors, Failure, Graph};
use super::{ShopifyWebhook, WebhookParams};
use crate::connectors::net::CallError;
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, InstallError, Installer};

/// The Admin API version when the key names none.
pub(super) const API_VERSION: &str = "2025-01";

/// How long an install may wait for the store's query budget.
const INSTALL_WAIT: Duration = Duration::from_secs(30);

/// The store's address: `base_url` when an admin set one, else `https://<shop_domain>`.
pub(super) fn base(key: &Value) -> String {
    match key.get("base_url").and_then(Value::as_str) {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => format!(
            "https://{}",
            key["shop_domain"].as_str().unwrap_or_default()
        ),
    }
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

/// A failed query as an install error: a refused address is the key's to change.
fn install_error(key: &Value, failure: Failure, what: &str) -> InstallError {
    match failure {
        Failure::Call(e @ CallError::Blocked(_)) => InstallError::Refused {
            field: host_field(key),
            message: format!(
                "{}: {what} {e}. Point the key at the store's public address.",
                e.code().as_str()
            ),
        },
        other => InstallError::Upstream(other.describe(what)),
    }
}

/// The GraphQL topic of a webhook topic as Shopify's admin names it: `orders/create` →
/// `ORDERS_CREATE`.
pub(super) fn topic_enum(topic: &str) -> String {
    topic.trim().replace(['/', '-', '.'], "_").to_uppercase()
}

const SUBSCRIBE: &str = "mutation Subscribe($topic: WebhookSubscriptionTopic!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic }
    userErrors { field message }
  }
}";

const UNSUBSCRIBE: &str = "mutation Unsubscribe($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors { field message }
  }
}";

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
        let mut graph = Graph::new(call.net, key, None, INSTALL_WAIT);
        let mut made: Vec<Value> = Vec::new();
        for topic in params.topics {
            let what = format!("subscribing to {topic}");
            let vars = json!({
                "topic": topic_enum(&topic),
                "webhookSubscription": {"callbackUrl": address, "format": "JSON"},
            });
            let outcome = match graph.run(SUBSCRIBE, vars).await {
                Ok(data) => {
                    let payload = &data["webhookSubscriptionCreate"];
                    match user_errors(payload) {
                        Some((_, message)) => Err(InstallError::Upstream(format!(
                            "{what}: Shopify refused it: {message}"
                        ))),
                        None => match payload
                            .pointer("/webhookSubscription/id")
                            .and_then(Value::as_str)
                        {
                            Some(id) => Ok(id.to_string()),
                            None => Err(InstallError::Upstream(format!(
                                "{what}: Shopify's answer names no subscription id"
                            ))),
                        },
                    }
                }
                Err(f) => Err(install_error(key, f, &what)),
            };
            match outcome {
                Ok(id) => made.push(json!({"topic": topic, "id": id})),
                Err(e) => {
                    // Leave the store as it was: remove what this install made before failing.
                    for sub in &made {
                        let id = sub["id"].as_str().unwrap_or_default();
                        if let Err(undo) = self.uninstall(call, id).await {
                            tracing::warn!(error = %undo, subscription = %id, "removing a subscription after a failed install failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError> {
        let key = key(&call)?;
        let what = format!("removing subscription {id}");
        // Subscriptions installed before the move to GraphQL have numeric REST ids.
        let gid = if id.starts_with("gid://") {
            id.to_string()
        } else {
            format!("gid://shopify/WebhookSubscription/{id}")
        };
        let mut graph = Graph::new(call.net, key, None, INSTALL_WAIT);
        let data = graph
            .run(UNSUBSCRIBE, json!({"id": gid}))
            .await
            .map_err(|f| install_error(key, f, &what))?;
        match user_errors(&data["webhookSubscriptionDelete"]) {
            // One already gone is not an error.
            Some((crate::domain::error_code::ErrorCode::NotFound, _)) | None => Ok(()),
            Some((_, message)) => Err(InstallError::Upstream(format!(
                "{what}: Shopify refused it: {message}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_named_as_graphql_names_them() {
        assert_eq!(topic_enum("orders/create"), "ORDERS_CREATE");
        assert_eq!(topic_enum("app/uninstalled"), "APP_UNINSTALLED");
        assert_eq!(
            topic_enum("inventory_levels/update"),
            "INVENTORY_LEVELS_UPDATE"
        );
    }
}
