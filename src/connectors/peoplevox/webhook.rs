//! `peoplevox.webhook`: Peoplevox's event callbacks, and the subscriptions (`SubscribeEvent`,
//! `UnsubscribeEvent`) that make Peoplevox send them.
//!
//! A subscription names a callback URL whose query string holds `{Field}` placeholders;
//! Peoplevox fills them with the event's values (URL-encoded) and calls the URL with GET. The
//! record is that query string's parameters, decoded, as one JSON object.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use sha2::Digest;

use super::soap::{operation, Account, SoapError};
use super::Peoplevox;
use crate::connectors::http::Format;
use crate::connectors::params::Params;
use crate::connectors::registry::{
    Call, Decoding, InstallError, Installer, Push, Refused, WebhookSource, WebhookVerifier,
};
use crate::domain::error_code::ErrorCode;

crate::params! {
    /// The params of `peoplevox.webhook`.
    pub struct WebhookParams {
        event_type: String = "TrackingNumberReceived".into(), "Event subscribed to: `TrackingNumberReceived` (the default), `DespatchPackageTrackingNumberReceived`, `DespatchPackageDespatched`, `SalesOrderStatusChanges`, `AvailabilityChanges`, `GoodsReceived`, `IncrementalChanges`, `Returns` or `OnDespatchOrderReceived`.";
        callback_fields: Option<BTreeMap<String, String>>, "The callback's query parameters: name → Peoplevox field path, e.g. `{\"SalesOrderNumber\": \"Picks.SalesOrder.SalesOrderNumber\"}`; each record holds these names. A default set per event type when unset (needed for `Returns` and `OnDespatchOrderReceived`).";
        filter: Option<String>, "Only events matching this Peoplevox filter expression, e.g. `site == \"PrimarySite\"`; all when unset.";
        entity_id_path: Option<String>, "The parameter holding each record's entity id, e.g. `SalesOrderNumber`.";
        format: Format = Format::Json, "Body format of callbacks pushed with POST (a GET callback's record is its query string).";
    }
}

/// The event types Peoplevox can subscribe to.
pub const EVENT_TYPES: [&str; 9] = [
    "AvailabilityChanges",
    "SalesOrderStatusChanges",
    "GoodsReceived",
    "TrackingNumberReceived",
    "IncrementalChanges",
    "Returns",
    "DespatchPackageTrackingNumberReceived",
    "OnDespatchOrderReceived",
    "DespatchPackageDespatched",
];

/// What a despatch's callback carries by default: the sales order, the despatch, its tracking
/// number, carrier and service, and the customer's e-mail.
const DESPATCH_FIELDS: &[(&str, &str)] = &[
    ("SalesOrderNumber", "Picks.SalesOrder.SalesOrderNumber"),
    ("DespatchNumber", "DespatchNumber"),
    ("TrackingNumber", "TrackingNumber"),
    ("Carrier", "Carrier.Number"),
    ("Service", "ServiceType.Name"),
    ("ServiceCode", "ServiceType.Code"),
    ("Email", "Picks.SalesOrder.Email"),
];

/// The callback parameters an event type carries when the source names none: the fields
/// Peoplevox's subscriptions are known to fill for it.
pub fn default_fields(event_type: &str) -> Option<&'static [(&'static str, &'static str)]> {
    Some(match event_type {
        "TrackingNumberReceived"
        | "DespatchPackageTrackingNumberReceived"
        | "DespatchPackageDespatched" => DESPATCH_FIELDS,
        "AvailabilityChanges" => &[("ItemCode", "ItemCode"), ("Available", "Available")],
        "SalesOrderStatusChanges" => &[
            ("SalesOrderNumber", "SalesOrderNumber"),
            ("Status", "SalesOrderStatus.Name"),
            ("LastModificationTime", "LastModificationTime"),
        ],
        "GoodsReceived" => &[
            ("GoodsInId", "GoodsInId"),
            ("Reference", "Reference"),
            ("ReconciledDateTime", "ReconciledDateTime"),
            (
                "ItemCode",
                "Consignments.ConsignmentItemTypes.ItemType.ItemCode",
            ),
            ("Quantity", "Consignments.ConsignmentItemTypes.Quantity"),
        ],
        "IncrementalChanges" => &[
            ("ItemCode", "ItemType.ItemCode"),
            ("ItemName", "ItemType.Name"),
            ("QuantityChanged", "QuantityChanged"),
            ("UpdatedBy", "UpdatedBy"),
            ("UpdateTimestamp", "UpdateTimestamp"),
            ("Reason", "Reason"),
        ],
        _ => return None,
    })
}

/// The callback URL of a subscription: Wharf's address for the source, then a query string
/// of `name={Field}` placeholders, which Peoplevox fills in.
pub fn callback_url(address: &str, params: &WebhookParams) -> Result<String, String> {
    let event = params.event_type.as_str();
    if !EVENT_TYPES.contains(&event) {
        return Err(format!(
            "Peoplevox has no event type `{event}`; use one of {}",
            EVENT_TYPES.join(", ")
        ));
    }
    let fields: Vec<(String, String)> = match &params.callback_fields {
        Some(given) if !given.is_empty() => given
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => default_fields(event)
            .ok_or_else(|| {
                format!("Peoplevox does not say which fields a {event} event has: name them in `callback_fields` (parameter name → field path)")
            })?
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut query = Vec::with_capacity(fields.len());
    for (name, path) in &fields {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !plain(name) || !plain(path) {
            return Err(format!(
                "`callback_fields` maps `{name}` to `{path}`: names and field paths are letters, digits, `_`, `-` and `.`"
            ));
        }
        query.push(format!("{name}={{{path}}}"));
    }
    let join = if address.contains('?') { '&' } else { '?' };
    Ok(format!("{address}{join}{}", query.join("&")))
}

/// `peoplevox.webhook`, sharing the connector's sessions and pacing for its subscriptions.
pub struct Webhook {
    pub pvx: Arc<Peoplevox>,
}

impl WebhookVerifier for Webhook {
    /// Peoplevox callbacks carry no signature: the URL token alone.
    fn verify(&self, _push: Push<'_>) -> Result<(), Refused> {
        Ok(())
    }

    /// Peoplevox calls back with GET, the values in the query string (or, subscribed with
    /// `SubscribePostEvent`, with POST and the values as a form).
    fn query_callbacks(&self, _params: &Value) -> bool {
        true
    }

    /// A callback has no delivery id of its own: the same values called again are the same
    /// delivery. Not for `AvailabilityChanges`, whose callbacks carry a stock level and no
    /// time: a level seen before (5, then 4, then 5 again) is news, and a repeat of one is
    /// harmless, where dropping it would leave the stock wrong.
    fn delivery_id(&self, push: Push<'_>) -> Option<String> {
        let event = WebhookParams::parse(push.params).map(|p| p.event_type);
        match push.query {
            Some(_) if event.as_deref() == Ok("AvailabilityChanges") => None,
            Some(q) => {
                let hash = sha2::Sha256::digest(q.as_bytes());
                let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
                Some(format!("query:{hex}"))
            }
            None => push.header("idempotency-key").map(str::to_string),
        }
    }

    fn metadata(&self, push: Push<'_>, meta: &mut Map<String, Value>) {
        if push.query.is_some() {
            let how = if push.body.is_empty() {
                "query"
            } else {
                "form"
            };
            meta.insert("parameters".into(), json!(how));
        }
        if let Ok(p) = WebhookParams::parse(push.params) {
            meta.insert("event_type".into(), json!(p.event_type));
        }
    }

    fn decoding(&self, params: &Value) -> Decoding {
        let format = WebhookParams::parse(params).map_or(Format::Json, |p| p.format);
        Decoding {
            format: format.body_format(),
            records_path: String::new(),
        }
    }
}

impl WebhookSource for Webhook {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        WebhookParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path)
    }
}

/// The key field that says where Peoplevox is, for a refused address.
const HOST_FIELD: &str = "credentials.base_url";

fn install_error(e: SoapError, what: &str) -> InstallError {
    match e {
        SoapError::Call(crate::connectors::net::CallError::Blocked(b)) => InstallError::Refused {
            field: HOST_FIELD,
            message: format!(
                "{}: {what}: refused: {b}. Point the key at Peoplevox's public address.",
                ErrorCode::BlockedAddress.as_str()
            ),
        },
        other => InstallError::Upstream(format!("{what}: {}: {other}", other.code().as_str())),
    }
}

impl Webhook {
    async fn unsubscribe(
        &self,
        call: Call<'_>,
        account: &Account,
        id: &str,
    ) -> Result<(), InstallError> {
        let what = format!("removing Peoplevox subscription {id}");
        let id = id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InstallError::Upstream(format!(
                "{what}: a subscription id is a number"
            )));
        }
        let body = operation("UnsubscribeEvent", None, &[("subscriptionId", id)])
            .map_err(InstallError::Upstream)?;
        let reply = self
            .pvx
            .client
            .call(call.net, account, "UnsubscribeEvent", &body, None)
            .await
            .map_err(|e| install_error(e, &what))?;
        let o = &reply.outcome;
        if o.response_id == 0 {
            return Ok(());
        }
        // Peoplevox has no list of subscriptions to check against; its refusal of an id it
        // does not know is taken as "already gone".
        let detail = o.detail.to_ascii_lowercase();
        if detail.contains("not found")
            || detail.contains("does not exist")
            || detail.contains("no subscription")
        {
            return Ok(());
        }
        Err(InstallError::Upstream(format!(
            "{what}: Peoplevox answered: {}",
            o.detail.trim()
        )))
    }
}

#[async_trait]
impl Installer for Webhook {
    async fn install(
        &self,
        call: Call<'_>,
        address: &str,
        _title: &str,
    ) -> Result<Vec<Value>, InstallError> {
        let key = call
            .key
            .ok_or_else(|| InstallError::Upstream("the source has no key".into()))?;
        let account = Account::from_key(key).map_err(InstallError::Upstream)?;
        let params = WebhookParams::parse(call.params).map_err(InstallError::Upstream)?;
        let url = callback_url(address, &params).map_err(InstallError::Upstream)?;
        let event = params.event_type.clone();
        let filter = params.filter.clone().unwrap_or_default();
        let body = operation(
            "SubscribeEvent",
            None,
            &[
                ("eventType", &event),
                ("filter", &filter),
                ("callbackUrl", &url),
                ("encodeParameterData", "true"),
            ],
        )
        .map_err(InstallError::Upstream)?;
        let what = format!("subscribing to {event}");
        let reply = self
            .pvx
            .client
            .call(call.net, &account, "SubscribeEvent", &body, None)
            .await
            .map_err(|e| install_error(e, &what))?;
        let o = &reply.outcome;
        let id = o.detail.trim();
        if o.response_id != 0 {
            return Err(InstallError::Upstream(format!(
                "{what}: Peoplevox answered: {id}"
            )));
        }
        let Ok(id) = id.parse::<u64>() else {
            return Err(InstallError::Upstream(format!(
                "{what}: Peoplevox's answer names no subscription id: {id}"
            )));
        };
        Ok(vec![json!({"topic": event, "id": id, "callback_url": url})])
    }

    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError> {
        let key = call
            .key
            .ok_or_else(|| InstallError::Upstream("the source has no key".into()))?;
        let account = Account::from_key(key).map_err(InstallError::Upstream)?;
        self.unsubscribe(call, &account, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> WebhookParams {
        WebhookParams::parse(&v).unwrap()
    }

    #[test]
    fn a_repeated_callback_is_one_delivery_but_stock_levels_are_never_dropped() {
        let headers = reqwest::header::HeaderMap::new();
        let hook = Webhook {
            pvx: Arc::default(),
        };
        let id = |params: Value, query: Option<&str>| {
            hook.delivery_id(Push {
                params: &params,
                key: None,
                headers: &headers,
                body: b"",
                query,
            })
        };
        let a = id(json!({}), Some("SalesOrderNumber=1&TrackingNumber=X"));
        assert!(a.as_deref().is_some_and(|d| d.starts_with("query:")));
        assert_eq!(
            a,
            id(json!({}), Some("SalesOrderNumber=1&TrackingNumber=X"))
        );
        assert_ne!(
            a,
            id(json!({}), Some("SalesOrderNumber=2&TrackingNumber=X"))
        );
        let stock = json!({"event_type": "AvailabilityChanges"});
        assert_eq!(id(stock, Some("ItemCode=A&Available=5")), None);
        assert_eq!(id(json!({}), None), None);
    }

    #[test]
    fn callback_urls_carry_each_event_types_fields() {
        let url = callback_url("https://wharf.example.com/hooks/t0k", &params(json!({}))).unwrap();
        assert_eq!(
            url,
            "https://wharf.example.com/hooks/t0k?SalesOrderNumber={Picks.SalesOrder.SalesOrderNumber}&DespatchNumber={DespatchNumber}&TrackingNumber={TrackingNumber}&Carrier={Carrier.Number}&Service={ServiceType.Name}&ServiceCode={ServiceType.Code}&Email={Picks.SalesOrder.Email}"
        );
        let url = callback_url(
            "https://w/hooks/t",
            &params(json!({"event_type": "AvailabilityChanges"})),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://w/hooks/t?ItemCode={ItemCode}&Available={Available}"
        );
        let url = callback_url(
            "https://w/hooks/t",
            &params(json!({"event_type": "Returns", "callback_fields": {"so": "SalesOrder.SalesOrderNumber"}})),
        )
        .unwrap();
        assert_eq!(url, "https://w/hooks/t?so={SalesOrder.SalesOrderNumber}");
        let e = callback_url(
            "https://w/hooks/t",
            &params(json!({"event_type": "Returns"})),
        )
        .unwrap_err();
        assert!(e.contains("callback_fields"), "{e}");
        let e = callback_url(
            "https://w/hooks/t",
            &params(json!({"event_type": "Exploded"})),
        )
        .unwrap_err();
        assert!(e.contains("no event type `Exploded`"), "{e}");
        let e = callback_url(
            "https://w/hooks/t",
            &params(json!({"callback_fields": {"a&b": "X"}})),
        )
        .unwrap_err();
        assert!(e.contains("`a&b`"), "{e}");
    }
}
