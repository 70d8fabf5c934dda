//! Shopify: webhooks signed with the app's secret, and the GraphQL Admin API that reads orders
//! and products, fulfils orders, sets stock and subscribes to webhooks.

mod admin;
mod graphql;
mod pull;
mod push;

pub use pull::{Pull, PullParams, Resource};
pub use push::{Fulfillment, FulfillmentParams, Inventory, InventoryParams};

use serde_json::{json, Map, Value};

use crate::connectors::registry::{Push, Refused, WebhookSource, WebhookVerifier};
use crate::connectors::signature::check_hmac;

crate::params! {
    /// The params of `shopify.webhook`.
    pub struct WebhookParams {
        topics: Vec<String>, "Webhook topics, e.g. `orders/create`.";
    }
}

/// `shopify.webhook`: receives Shopify webhooks and installs their subscriptions.
pub struct ShopifyWebhook;

impl WebhookVerifier for ShopifyWebhook {
    /// `X-Shopify-Hmac-Sha256` is base64 HMAC-SHA256 of the raw body with the app's secret
    /// (the key's `webhook_secret`).
    fn verify(&self, push: Push<'_>) -> Result<(), Refused> {
        let secret = push
            .key
            .and_then(|k| k.get("webhook_secret"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Refused("the source's key has no webhook_secret to verify Shopify pushes".into())
            })?;
        let given = push
            .header("x-shopify-hmac-sha256")
            .ok_or_else(|| Refused("no X-Shopify-Hmac-Sha256 header".into()))?;
        if check_hmac("sha256", "base64", secret.as_bytes(), push.body, given) {
            Ok(())
        } else {
            Err(Refused(
                "X-Shopify-Hmac-Sha256 does not match the body".into(),
            ))
        }
    }

    fn delivery_id(&self, push: Push<'_>) -> Option<String> {
        push.header("x-shopify-webhook-id").map(str::to_string)
    }

    fn metadata(&self, push: Push<'_>, meta: &mut Map<String, Value>) {
        for (field, name) in [
            ("topic", "x-shopify-topic"),
            ("shop_domain", "x-shopify-shop-domain"),
            ("webhook_id", "x-shopify-webhook-id"),
            ("event_id", "x-shopify-event-id"),
            ("triggered_at", "x-shopify-triggered-at"),
            ("api_version", "x-shopify-api-version"),
        ] {
            meta.insert(field.into(), json!(push.header(name)));
        }
    }
}

impl WebhookSource for ShopifyWebhook {
    /// An order names itself by `name` (`#1001`), the id people search for.
    fn entity_id_path(&self, _params: &Value) -> Option<String> {
        Some("name".into())
    }
}
