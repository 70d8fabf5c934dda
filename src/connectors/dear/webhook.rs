//! `dear.webhook`: DEAR's pushes, authenticated as the key's `webhook_auth` says, completed
//! from the API, and the subscriptions that make DEAR send them.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

use super::{fetch_sale, request, Dear};
use crate::connectors::install::{self as calls, answer, remove};
use crate::connectors::params::Params;
use crate::connectors::registry::{
    Call, InstallError, Installer, Push, Refused, WebhookSource, WebhookVerifier,
};
use crate::connectors::signature::same;

crate::params! {
    /// The params of `dear.webhook`.
    pub struct WebhookParams {
        topics: Vec<String> = vec!["Sale/OrderAuthorised".into()], "Webhook types, e.g. `Sale/OrderAuthorised`.";
    }
}

/// A text field of the key's `webhook_auth`, empty when unset.
fn auth_text(auth: &Value, name: &str) -> String {
    auth.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl WebhookVerifier for Dear {
    /// The Basic or Bearer credentials, or the custom header, set in the key's
    /// `webhook_auth`. Without `webhook_auth`, the URL token alone.
    fn verify(&self, push: Push<'_>) -> Result<(), Refused> {
        let Some(auth) = push.key.and_then(|k| k.get("webhook_auth")) else {
            return Ok(());
        };
        let text = |name: &str| auth_text(auth, name);
        let authorization = push.header(AUTHORIZATION.as_str()).unwrap_or_default();
        match text("type").as_str() {
            "basic" => {
                let expected = format!(
                    "Basic {}",
                    STANDARD.encode(format!("{}:{}", text("username"), text("password")))
                );
                if same(authorization.as_bytes(), expected.as_bytes()) {
                    Ok(())
                } else {
                    Err(Refused(
                        "Basic credentials do not match the key's webhook_auth".into(),
                    ))
                }
            }
            "bearer" => {
                let expected = format!("Bearer {}", text("token"));
                if same(authorization.as_bytes(), expected.as_bytes()) {
                    Ok(())
                } else {
                    Err(Refused(
                        "the Bearer token does not match the key's webhook_auth".into(),
                    ))
                }
            }
            "header" => {
                let name = text("header_name");
                let given = push.header(&name).unwrap_or_default();
                if !name.is_empty() && same(given.as_bytes(), text("header_value").as_bytes()) {
                    Ok(())
                } else {
                    Err(Refused(format!(
                        "header `{name}` does not match the key's webhook_auth"
                    )))
                }
            }
            _ => Ok(()),
        }
    }

    fn thin(&self) -> bool {
        true
    }

    /// A push names the sale (`SaleID`); the event carries the full sale from the API.
    async fn expand(&self, call: Call<'_>, mut records: Vec<Value>) -> Result<Vec<Value>, String> {
        let key = call
            .key
            .ok_or_else(|| "the DEAR source has no usable key".to_string())?;
        for record in records.iter_mut() {
            if let Some(id) = record
                .get("SaleID")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                *record = fetch_sale(call.net, &self.limiter, key, &id).await?;
            }
        }
        Ok(records)
    }
}

impl WebhookSource for Dear {
    /// The event holds the sale read from the API, which names itself by `ID`.
    fn entity_id_path(&self, _params: &Value) -> Option<String> {
        Some("ID".into())
    }
}

/// DEAR's fields for how it should authenticate to Wharf, from the key's `webhook_auth`.
fn auth_fields(key: &Value, body: &mut Value) {
    let auth = &key["webhook_auth"];
    let text = |n: &str| auth_text(auth, n);
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

/// The key field that says where the API is, for a refused address.
const HOST_FIELD: &str = "credentials.base_url";

fn key<'a>(call: &Call<'a>) -> Result<&'a Value, InstallError> {
    call.key
        .ok_or_else(|| InstallError::Upstream("the source has no key".into()))
}

#[async_trait]
impl Installer for Dear {
    async fn install(
        &self,
        call: Call<'_>,
        address: &str,
        title: &str,
    ) -> Result<Vec<Value>, InstallError> {
        let key = key(&call)?;
        let params = WebhookParams::parse(call.params).map_err(InstallError::Upstream)?;
        let mut subscriptions = Vec::new();
        for topic in params.topics {
            let mut body = json!({"Type": topic, "IsActive": true, "ExternalURL": address,
                "Name": format!("Wharf: {title}")});
            auth_fields(key, &mut body);
            let req = request(call.net, reqwest::Method::POST, key, "/webhooks").json(&body);
            let what = format!("subscribing to {topic}");
            let res = calls::call(call.net, req, &what, HOST_FIELD).await?;
            let out = answer(call.net, res, &what).await?;
            subscriptions.push(json!({"topic": topic, "id": out["ID"]}));
        }
        Ok(subscriptions)
    }

    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError> {
        let key = key(&call)?;
        let req = request(call.net, reqwest::Method::DELETE, key, "/webhooks").query(&[("ID", id)]);
        let what = format!("removing subscription {id}");
        remove(call.net, req, &what, HOST_FIELD).await
    }
}
