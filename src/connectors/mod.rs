//! The system library: every system Wharf talks to, with its key template, its source and
//! destination functions, and how its inbound webhooks are verified. Each system's behaviour
//! lives in its own folder behind the traits of [`registry`]; the [`Registry`] finds it by
//! `system.function`. `net` is the guarded client every connector calls through.

mod catalogue;
pub mod dear;
mod delivery;
pub mod email;
pub mod files;
pub mod ftp;
pub mod http;
mod install;
pub mod magento2;
pub mod naming;
pub mod net;
mod pages;
pub mod params;
pub mod peoplevox;
pub mod registry;
pub mod sftp;
pub mod shopify;
pub mod signature;
mod template;
pub mod woocommerce;

pub use catalogue::{system, SYSTEMS};
pub use registry::{
    Call, DestinationFunction, InstallError, Installer, Outgoing, Push, Reading, Refused, Registry,
    SendResult, Settle, SourceFunction, WebhookSource, WebhookVerifier,
};
pub use template::{
    check_hosts, join_credentials, lookup, merge_patch, split_credentials, url_within, validate,
    MASK,
};

use serde::Serialize;
use utoipa::ToSchema;

/// The type a key field or function parameter must have.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", content = "values")]
pub enum FieldKind {
    String,
    Integer,
    Boolean,
    /// A JSON object of string values (e.g. extra HTTP headers).
    Object,
    /// A list of strings (e.g. webhook topics).
    StringList,
    /// One of the listed strings.
    #[schema(value_type = Vec<String>)]
    Enum(&'static [&'static str]),
}

/// One field of a key template or of a function's parameters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Field {
    /// Dotted path, e.g. `basic.password`.
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: FieldKind,
    pub required: bool,
    /// Secrets are encrypted at rest and never returned (shown as `********`).
    pub secret: bool,
    /// Whether the field says where the key's secrets are sent, and who may set it.
    #[serde(skip_serializing_if = "HostRule::is_none")]
    pub host: HostRule,
    pub description: &'static str,
}

/// A key field that names where the key's secrets go. Changing such a field requires sending
/// the key's secrets again in the same change, so nobody can redirect secrets they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "rule", content = "domain")]
pub enum HostRule {
    /// Not a host.
    None,
    /// The customer's own server (FTP, SMTP, an HTTP API): any role that may write keys sets it.
    Any,
    /// The vendor's domain: only it or its subdomains, over https, unless an admin or owner
    /// sets the field (or an admin-only field of the key overrides where requests go).
    #[schema(value_type = String)]
    Vendor(&'static str),
    /// Only an admin or owner may set, change or remove it.
    AdminOnly,
}

impl HostRule {
    pub fn is_none(&self) -> bool {
        matches!(self, HostRule::None)
    }
}

/// How a source function is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Scheduled,
    Webhook,
}

impl Trigger {
    pub fn parse(s: &str) -> Option<Trigger> {
        match s {
            "manual" => Some(Trigger::Manual),
            "scheduled" => Some(Trigger::Scheduled),
            "webhook" => Some(Trigger::Webhook),
            _ => None,
        }
    }
}

/// A source or destination function of a system.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Function {
    /// `system.function`, e.g. `shopify.webhook`.
    pub name: &'static str,
    pub description: &'static str,
    /// For sources: the triggers it supports. Empty for destinations.
    pub triggers: &'static [Trigger],
    pub params: &'static [Field],
}

/// A kind of external system.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct System {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub key_template: &'static [Field],
    /// Whether a source or destination of this system must name a key.
    pub key_required: bool,
    pub sources: &'static [Function],
    pub destinations: &'static [Function],
    /// How pushes to a webhook source of this system are verified.
    pub webhook_verification: &'static str,
}

impl System {
    pub fn source(&self, name: &str) -> Option<&'static Function> {
        self.sources.iter().find(|f| f.name == name)
    }

    pub fn destination(&self, name: &str) -> Option<&'static Function> {
        self.destinations.iter().find(|f| f.name == name)
    }
}

/// The value at a dotted path (`data.orders`), or the document itself for an empty path.
pub fn at_path<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, part| match v {
        serde_json::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(part),
    })
}

/// The value at `path` (as [`at_path`] reads it) taken out of `value`, leaving null there.
pub fn take_at_path(value: &mut serde_json::Value, path: &str) -> Option<serde_json::Value> {
    let mut at = value;
    if !path.is_empty() {
        for part in path.split('.') {
            at = match at {
                serde_json::Value::Array(items) => items.get_mut(part.parse::<usize>().ok()?)?,
                _ => at.get_mut(part)?,
            };
        }
    }
    Some(at.take())
}

/// An entity id read from a record: strings as they are, numbers as text. An id is a name to
/// find the record by, kept as text: U+0000 in it, which Postgres cannot keep in text, is
/// U+FFFD on every store (the record's data keeps it, see `store::nul`).
pub fn entity_id(record: &serde_json::Value, path: Option<&str>) -> Option<String> {
    match at_path(record, path?)? {
        serde_json::Value::String(s) => Some(crate::store::printable_ref(s).into_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A text field of a key's opened credentials.
pub fn key_text(key: &serde_json::Value, name: &str) -> Option<String> {
    key.get(name)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// A key's `port`, or `default` when it has none.
pub fn key_port(key: &serde_json::Value, default: u16) -> Result<u16, String> {
    match key.get("port").and_then(serde_json::Value::as_u64) {
        Some(p) => u16::try_from(p).map_err(|_| format!("the key's `port` {p} is not a port")),
        None => Ok(default),
    }
}

/// A key's credentials as connectors use them: the shown fields with the sealed secrets opened,
/// and `secret_headers` folded into `headers` (a secret header is sent like any other).
/// `None` when the secrets do not open under this master key (a different key was configured).
pub fn open_key(
    master: &crate::crypto::MasterKey,
    key: &crate::store::Key,
) -> Option<serde_json::Value> {
    let mut full = open_stored_credentials(master, key)?;
    if let Some(serde_json::Value::Object(secret)) = full
        .as_object_mut()
        .and_then(|m| m.remove("secret_headers"))
    {
        let headers = full
            .as_object_mut()
            .expect("credentials are an object")
            .entry("headers")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(headers) = headers.as_object_mut() {
            headers.extend(secret);
        }
    }
    Some(full)
}

/// A key's credentials as stored: the shown fields with the sealed secrets opened, in the
/// key template's shape (for changing the key and sealing it again).
pub fn open_stored_credentials(
    master: &crate::crypto::MasterKey,
    key: &crate::store::Key,
) -> Option<serde_json::Value> {
    let plain = master.open(key.id.as_bytes(), &key.sealed_secrets)?;
    let secrets: serde_json::Value = serde_json::from_slice(&plain).ok()?;
    let template = system(&key.system).map(|s| s.key_template).unwrap_or(&[]);
    let full = join_credentials(&key.credentials.0, &secrets, template);
    full.is_object().then_some(full)
}

/// Keys' credentials as opened (see [`open_key`]), each kept with the stored key it was
/// opened from, for as long as the store's cache serves that same record: opening them
/// (decrypting the secrets, joining them to the shown fields) for every push verified and
/// every delivery cost about 2 % of the server's time under load. That cache serves a record
/// for at most a second after reading it, and forgets it on any configuration write here, so
/// a key in use is opened about once a second, and a changed key anew. Credentials opened
/// longer ago than that can never be served again: they are dropped at the next opening, so
/// plain secrets stay in memory only while their key is in use.
pub struct OpenedKeys {
    master: crate::crypto::MasterKey,
    opened: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, OpenedKey>>,
}

/// A key's credentials as opened, the stored key they were opened from, and when.
type OpenedKey = (
    std::sync::Arc<crate::store::Key>,
    Option<std::sync::Arc<serde_json::Value>>,
    std::time::Instant,
);

/// Most keys whose opened credentials are kept; past it the kept ones are forgotten.
const MOST_OPENED: usize = 1024;

impl OpenedKeys {
    pub fn new(master: crate::crypto::MasterKey) -> Self {
        OpenedKeys {
            master,
            opened: Default::default(),
        }
    }

    /// The full credentials of the key `id` of `org` (`None` when its secrets do not open
    /// under this master key).
    pub async fn open(
        &self,
        store: &crate::store::Store,
        org: uuid::Uuid,
        id: uuid::Uuid,
    ) -> crate::store::StoreResult<Option<std::sync::Arc<serde_json::Value>>> {
        let key = store.get_cached::<crate::store::Key>(org, id).await?;
        Ok(self.opened(key))
    }

    fn opened(
        &self,
        key: std::sync::Arc<crate::store::Key>,
    ) -> Option<std::sync::Arc<serde_json::Value>> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((from, credentials, _)) = opened.get(&key.id) {
            if std::sync::Arc::ptr_eq(from, &key) {
                return credentials.clone();
            }
        }
        let credentials = open_key(&self.master, &key).map(std::sync::Arc::new);
        // The store's cache no longer serves what was read before its freshness ran out.
        opened.retain(|_, (_, _, at)| at.elapsed() <= crate::store::FRESH);
        if opened.len() >= MOST_OPENED {
            opened.clear();
        }
        opened.insert(
            key.id,
            (key, credentials.clone(), std::time::Instant::now()),
        );
        credentials
    }
}

#[cfg(test)]
mod opened_keys_tests {
    use std::sync::Arc;

    use serde_json::json;
    use sqlx::types::Json;
    use uuid::Uuid;

    use super::OpenedKeys;
    use crate::crypto::MasterKey;
    use crate::domain::Timestamp;
    use crate::store::Key;

    fn key(master: &MasterKey, id: Uuid, secret: &str) -> Arc<Key> {
        let secrets = json!({"secret_headers": {"X-Api-Key": secret}});
        Arc::new(Key {
            id,
            org_id: Uuid::nil(),
            system: "http".into(),
            title: "ERP".into(),
            credentials: Json(json!({"headers": {"X-Tenant": "7"}})),
            sealed_secrets: master.seal(id.as_bytes(), secrets.to_string().as_bytes()),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        })
    }

    #[test]
    fn a_key_is_opened_once_per_stored_record_and_anew_when_it_changes() {
        let master = MasterKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect("a master key");
        let keys = OpenedKeys::new(master.clone());
        let id = Uuid::now_v7();
        let first = key(&master, id, "one");
        let a = keys.opened(first.clone()).expect("opens");
        assert_eq!(
            *a,
            json!({"headers": {"X-Tenant": "7", "X-Api-Key": "one"}})
        );
        let again = keys.opened(first.clone()).expect("opens");
        assert!(
            Arc::ptr_eq(&a, &again),
            "the same record is not opened again"
        );
        // The key changed: the store's cache serves a new record, opened anew.
        let changed = keys.opened(key(&master, id, "two")).expect("opens");
        assert_eq!(changed["headers"]["X-Api-Key"], "two");
        assert_eq!(keys.opened.lock().unwrap().len(), 1, "one per key");
        // Once no longer served by the store's cache, opened credentials are dropped at the
        // next opening of any key.
        keys.opened.lock().unwrap().get_mut(&id).expect("kept").2 -=
            crate::store::FRESH + std::time::Duration::from_millis(1);
        let another = Uuid::now_v7();
        keys.opened(key(&master, another, "x")).expect("opens");
        assert!(!keys.opened.lock().unwrap().contains_key(&id), "dropped");
        // Secrets sealed under another master key do not open, and say so each time.
        let other = MasterKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
            .expect("a master key");
        assert!(keys.opened(key(&other, id, "three")).is_none());
    }
}

#[cfg(test)]
mod path_tests {
    use super::{at_path, take_at_path};
    use serde_json::json;

    #[test]
    fn taking_at_a_path_takes_what_reading_at_it_reads() {
        let doc = json!({"orders": [{"id": 1}, {"id": 2}], "meta": {"page": {"n": 3}}, "7": "x"});
        for path in [
            "",
            "orders",
            "orders.1",
            "orders.1.id",
            "meta.page",
            "7",
            "none",
            "orders.9",
            "meta.page.n.deeper",
        ] {
            let mut owned = doc.clone();
            assert_eq!(
                take_at_path(&mut owned, path),
                at_path(&doc, path).cloned(),
                "{path}"
            );
        }
        let mut owned = doc.clone();
        assert_eq!(
            take_at_path(&mut owned, "orders"),
            Some(json!([{"id": 1}, {"id": 2}]))
        );
        assert_eq!(owned["orders"], json!(null), "taken, not copied");
    }
}
