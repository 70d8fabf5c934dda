//! `woocommerce.webhook`: pushes from the store's webhooks, each signed in
//! `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body with the webhook's secret).

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::connectors::install::{self as calls, answer, remove};
use crate::connectors::params::Params;
use crate::connectors::registry::{
    Call, InstallError, Installer, Push, Refused, WebhookSource, WebhookVerifier,
};
use crate::connectors::signature::check_hmac;

crate::params! {
    /// The params of `woocommerce.webhook`.
    pub struct WebhookParams {
        topics: Vec<String> = Vec::new(), "Topics to subscribe to when installing from Wharf, e.g. `order.created`, `order.updated`, `product.updated`.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `number` (an order's) when unset.";
    }
}

/// The key field that says where the store is.
const HOST_FIELD: &str = "credentials.base_url";

/// Receives WooCommerce webhooks.
pub struct Webhook;

impl WebhookVerifier for Webhook {
    fn verify(&self, push: Push<'_>) -> Result<(), Refused> {
        let secret = push
            .key
            .and_then(|k| k.get("webhook_secret"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Refused(
                    "the source's key has no webhook_secret to verify WooCommerce pushes".into(),
                )
            })?;
        let given = push
            .header("x-wc-webhook-signature")
            .ok_or_else(|| Refused("no X-WC-Webhook-Signature header".into()))?;
        if check_hmac("sha256", "base64", secret.as_bytes(), push.body, given) {
            Ok(())
        } else {
            Err(Refused(
                "X-WC-Webhook-Signature does not match the body".into(),
            ))
        }
    }

    /// When a webhook is made, WooCommerce posts `webhook_id=<id>` as a form, unsigned and
    /// without its `X-WC-Webhook-*` headers, and counts it as delivered only on a 200.
    fn is_ping(&self, push: Push<'_>) -> bool {
        push.header("x-wc-webhook-signature").is_none()
            && push.body.len() <= 40
            && std::str::from_utf8(push.body)
                .ok()
                .and_then(|b| b.trim().strip_prefix("webhook_id="))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit()))
    }

    /// WooCommerce makes a delivery id from the webhook id and the second it was sent, so
    /// two deliveries of one webhook in one second share it: the body's hash is part of the
    /// key, and only a redelivery of the same body is a duplicate.
    fn delivery_id(&self, push: Push<'_>) -> Option<String> {
        use sha2::Digest;
        push.header("x-wc-webhook-delivery-id").map(|d| {
            let body = sha2::Sha256::digest(push.body);
            let hex: String = body.iter().take(12).map(|b| format!("{b:02x}")).collect();
            format!(
                "{}:{d}:{hex}",
                push.header("x-wc-webhook-id").unwrap_or("-")
            )
        })
    }

    fn metadata(&self, push: Push<'_>, meta: &mut Map<String, Value>) {
        for (field, name) in [
            ("topic", "x-wc-webhook-topic"),
            ("resource", "x-wc-webhook-resource"),
            ("event", "x-wc-webhook-event"),
            ("source", "x-wc-webhook-source"),
            ("webhook_id", "x-wc-webhook-id"),
        ] {
            meta.insert(field.into(), json!(push.header(name)));
        }
    }
}

impl WebhookSource for Webhook {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        let given = WebhookParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path);
        Some(given.unwrap_or_else(|| "number".into()))
    }
}

#[async_trait]
impl Installer for Webhook {
    /// One store webhook per topic, delivering to `address`, signed with the key's
    /// `webhook_secret` (so its pushes verify).
    async fn install(
        &self,
        call: Call<'_>,
        address: &str,
        title: &str,
    ) -> Result<Vec<Value>, InstallError> {
        let key = call
            .key
            .ok_or_else(|| InstallError::Upstream("the source has no key".into()))?;
        let params = WebhookParams::parse(call.params).map_err(InstallError::Upstream)?;
        let secret = key
            .get("webhook_secret")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                InstallError::Upstream(
                    "the key has no webhook_secret: the store's webhooks would be signed with a secret Wharf does not know".into(),
                )
            })?;
        if params.topics.is_empty() {
            return Err(InstallError::Upstream(
                "the source names no `topics` to subscribe to (e.g. `order.created`)".into(),
            ));
        }
        let mut subscriptions = Vec::new();
        for topic in params.topics {
            let body = json!({"name": format!("Wharf: {title}"), "topic": topic,
                "delivery_url": address, "secret": secret, "status": "active"});
            let req =
                super::request(call.net, reqwest::Method::POST, key, "/webhooks", &[]).json(&body);
            let what = format!("subscribing to {topic}");
            let made = match calls::call(call.net, req, &what, HOST_FIELD).await {
                Ok(res) => answer(call.net, res, &what).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(out) => subscriptions.push(json!({"topic": topic, "id": out["id"]})),
                Err(e) => {
                    // Nothing is recorded when an install fails: the store's webhooks made
                    // before it would deliver unseen, so they are removed again.
                    for made in &subscriptions {
                        let id = made["id"].to_string().trim_matches('"').to_string();
                        if let Err(undo) = self.uninstall(call, &id).await {
                            tracing::warn!(error = %undo, webhook = %id, "removing a webhook after a failed install failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(subscriptions)
    }

    /// WooCommerce deletes a webhook only with `force=true` (it has no trash for them).
    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError> {
        let key = call
            .key
            .ok_or_else(|| InstallError::Upstream("the source has no key".into()))?;
        let query = vec![("force".to_string(), "true".to_string())];
        let req = super::request(
            call.net,
            reqwest::Method::DELETE,
            key,
            &format!("/webhooks/{id}"),
            &query,
        );
        remove(call.net, req, &format!("removing webhook {id}"), HOST_FIELD).await
    }
}
