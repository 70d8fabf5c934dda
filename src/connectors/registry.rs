//! What a connector can do, and the registry that finds the connector for a `system.function`.
//! The engine, ingest and the API choose behaviour by looking a function up here, never by
//! matching its name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::net::Outbound;
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;
use crate::ingest::decode::DecodeLimits;

/// What a call to a system needs: the guarded client, the function's stored params and the
/// key's opened credentials.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub net: &'a Outbound,
    pub params: &'a Value,
    pub key: Option<&'a Value>,
    /// Bounds on what one answer may hold, the same as for a pushed body.
    pub decode: &'a DecodeLimits,
}

/// What one run of a source read.
#[derive(Default)]
pub struct Reading {
    pub records: Vec<Value>,
    /// Where each record came from (a file's path), in the order of `records`; empty when the
    /// source does not say.
    pub origins: Vec<String>,
    /// What the next run starts from (e.g. the files read), stored on the source with this
    /// run's events in one transaction; `None` leaves the stored state as it is.
    pub state: Option<Value>,
    /// What the job is told about the run (`settings.source`): e.g. each file read and how
    /// many records it gave.
    pub summary: Option<Value>,
    /// Done once the events are stored (archive or delete the files read). A failure is
    /// logged; the next run, which knows from the state what was read, does it again.
    pub settle: Option<Box<dyn Settle>>,
}

impl From<Vec<Value>> for Reading {
    fn from(records: Vec<Value>) -> Reading {
        Reading {
            records,
            ..Reading::default()
        }
    }
}

/// The after-commit step of a run (see [`Reading::settle`]).
#[async_trait]
pub trait Settle: Send + Sync {
    /// The error is a message for the log.
    async fn settle(self: Box<Self>, call: Call<'_>) -> Result<(), String>;
}

/// A function that reads records into a stream.
#[async_trait]
pub trait SourceFunction: Send + Sync {
    /// Where this function's records carry their entity id: the one rule for every way a
    /// record arrives (a push, a run, an upload, a hand-made event, a replica).
    fn entity_id_path(&self, params: &Value) -> Option<String>;

    /// Reads the records of one run from the system; `state` is what the last stored run
    /// left (see [`Reading::state`]). The error is a message for the job.
    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String>;
}

/// What one delivery try carries: the output, and what a destination's templates (a file
/// name, an e-mail's subject) may name.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// JSON, or text for text formats.
    pub body: &'a Value,
    pub content_type: &'a str,
    /// Most time the try may take.
    pub timeout: Duration,
    pub job_id: Uuid,
    pub stream_id: Uuid,
    /// The event delivered, with its entity id; `None` for a job's combined delivery.
    pub event: Option<(Uuid, Option<&'a str>)>,
    /// The stream's data type (`order`, `stock`, …).
    pub data_type: &'a str,
}

/// A function that delivers an event's output, or a job's combined outputs, to a system.
#[async_trait]
pub trait DestinationFunction: Send + Sync {
    /// One delivery try of `out.body`, bounded by `out.timeout`.
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult;
}

/// What one delivery try gave.
#[derive(Debug, Clone)]
pub struct SendResult {
    pub verdict: Verdict,
    pub error_code: Option<ErrorCode>,
    pub http_status: Option<u16>,
    pub http_status_name: Option<String>,
    pub excerpt: Option<String>,
    pub retry_after: Option<Duration>,
    pub message: Option<String>,
    pub duration: Duration,
    /// The id the system gave what a successful delivery created or changed (a fulfilment, a
    /// sale, a shipment), kept on the event as `destination_ref`.
    pub reference: Option<String>,
}

impl SendResult {
    /// The result naming `reference` as the id of what it created or changed, when it
    /// succeeded.
    pub fn referring(mut self, reference: impl FnOnce() -> Option<String>) -> SendResult {
        if self.verdict == Verdict::Success {
            self.reference = reference();
        }
        self
    }

    /// A try that failed before anything was sent and will fail the same way again.
    pub fn refused(code: ErrorCode, message: String) -> SendResult {
        SendResult {
            verdict: Verdict::Final,
            error_code: Some(code),
            http_status: None,
            http_status_name: None,
            excerpt: None,
            retry_after: None,
            message: Some(message),
            reference: None,
            duration: Duration::ZERO,
        }
    }
}

/// One push to a webhook source, as received.
#[derive(Clone, Copy)]
pub struct Push<'a> {
    pub params: &'a Value,
    pub key: Option<&'a Value>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The raw parameters of a callback that carries its record in them (see
    /// [`WebhookVerifier::query_callbacks`]): a GET's query string, or a POST's form body;
    /// `None` for a push whose body is read as the source's format.
    pub query: Option<&'a str>,
}

impl Push<'_> {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a push was refused (logged; the sender gets a plain 401).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// How a pushed body is read into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    #[default]
    Json,
    Csv,
    /// XML or plain text: the body is one record, a string.
    Text,
}

/// The body format and, for JSON, the dotted path of the record list (the body when empty).
#[derive(Debug, Clone, Default)]
pub struct Decoding {
    pub format: BodyFormat,
    pub records_path: String,
}

/// How a system's pushes are checked and described.
#[async_trait]
pub trait WebhookVerifier: Send + Sync {
    /// Whether the push comes from the system (signature, credentials).
    fn verify(&self, push: Push<'_>) -> Result<(), Refused>;

    /// Whether the push is the system's test delivery, which carries no record and is
    /// answered 200 without being stored (or verified: such pings are not signed).
    fn is_ping(&self, _push: Push<'_>) -> bool {
        false
    }

    /// Whether the system calls back with parameters: GET with the record in the query string
    /// (one JSON object of the decoded parameters), or POST with them as a form. Only such
    /// sources answer GET at their webhook URL.
    fn query_callbacks(&self, _params: &Value) -> bool {
        false
    }

    /// The sender's id of this delivery, by which a redelivery is recognised.
    fn delivery_id(&self, push: Push<'_>) -> Option<String> {
        push.header("idempotency-key").map(str::to_string)
    }

    /// Adds what the sender told about the push to the job's `settings.webhook`.
    fn metadata(&self, _push: Push<'_>, _meta: &mut Map<String, Value>) {}

    /// How the body is read into records.
    fn decoding(&self, _params: &Value) -> Decoding {
        Decoding::default()
    }

    /// Whether pushes carry ids only, kept on the job for a worker to [`expand`](Self::expand).
    fn thin(&self) -> bool {
        false
    }

    /// Completes records the job carries (pushed, uploaded or replicated) into full records.
    /// The error is a message for the job.
    async fn expand(&self, _call: Call<'_>, records: Vec<Value>) -> Result<Vec<Value>, String> {
        Ok(records)
    }
}

/// Why installing or removing subscriptions failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The key points somewhere calls may not go: the key's `field` must change.
    #[error("{message}")]
    Refused {
        field: &'static str,
        message: String,
    },
    /// The system failed or refused the call.
    #[error("{0}")]
    Upstream(String),
}

/// Registers and removes a webhook source's subscriptions at its system.
#[async_trait]
pub trait Installer: Send + Sync {
    /// Subscribes `address` to the source's topics; the subscriptions as stored on the source
    /// (`{"topic", "id"}` each).
    async fn install(
        &self,
        call: Call<'_>,
        address: &str,
        title: &str,
    ) -> Result<Vec<Value>, InstallError>;

    /// Removes the subscription with this id; one already gone is not an error.
    async fn uninstall(&self, call: Call<'_>, id: &str) -> Result<(), InstallError>;
}

/// A webhook source function: how its records carry entity ids, and how its pushes are checked.
pub trait WebhookSource: WebhookVerifier {
    /// See [`SourceFunction::entity_id_path`].
    fn entity_id_path(&self, params: &Value) -> Option<String>;
}

/// Every runnable function, by `system.function`. Built once at start; `Registry::default()`
/// holds every connector Wharf has built.
pub struct Registry {
    sources: HashMap<&'static str, Arc<dyn SourceFunction>>,
    webhooks: HashMap<&'static str, Arc<dyn WebhookSource>>,
    destinations: HashMap<&'static str, Arc<dyn DestinationFunction>>,
    installers: HashMap<&'static str, Arc<dyn Installer>>,
}

impl Default for Registry {
    /// Every connector Wharf has built, each with its own state (e.g. DEAR's rate limit).
    fn default() -> Registry {
        let dear = Arc::new(super::dear::Dear::default());
        let shopify = Arc::new(super::shopify::ShopifyWebhook);
        let pvx = Arc::new(super::peoplevox::Peoplevox::default());
        let pvx_hook = Arc::new(super::peoplevox::Webhook { pvx: pvx.clone() });
        Registry::new()
            .with_source("http.fetch", Arc::new(super::http::Fetch))
            .with_webhook("http.webhook", Arc::new(super::http::Webhook))
            .with_destination("http.send", Arc::new(super::http::Send))
            .with_webhook("shopify.webhook", shopify.clone())
            .with_installer("shopify.webhook", shopify)
            .with_source(
                "shopify.orders",
                Arc::new(super::shopify::Pull {
                    resource: super::shopify::Resource::Orders,
                }),
            )
            .with_source(
                "shopify.products",
                Arc::new(super::shopify::Pull {
                    resource: super::shopify::Resource::Products,
                }),
            )
            .with_destination("shopify.fulfillment", Arc::new(super::shopify::Fulfillment))
            .with_destination("shopify.inventory", Arc::new(super::shopify::Inventory))
            .with_source(
                "dear.sales",
                Arc::new(super::dear::Sales { dear: dear.clone() }),
            )
            .with_source(
                "dear.stock",
                Arc::new(super::dear::Stock { dear: dear.clone() }),
            )
            .with_destination(
                "dear.sale",
                Arc::new(super::dear::SaleWrite { dear: dear.clone() }),
            )
            .with_destination(
                "dear.fulfilment",
                Arc::new(super::dear::FulfilmentWrite { dear: dear.clone() }),
            )
            .with_webhook("dear.webhook", dear.clone())
            .with_installer("dear.webhook", dear)
            .with_source(
                "peoplevox.data",
                Arc::new(super::peoplevox::Data { pvx: pvx.clone() }),
            )
            .with_destination(
                "peoplevox.import",
                Arc::new(super::peoplevox::Import { pvx: pvx.clone() }),
            )
            .with_webhook("peoplevox.webhook", pvx_hook.clone())
            .with_installer("peoplevox.webhook", pvx_hook)
            .with_destination("email.send", Arc::new(super::email::Send))
            .with_source("ftp.files", Arc::new(super::ftp::Files))
            .with_destination("ftp.upload", Arc::new(super::ftp::Upload))
            .with_source("sftp.files", Arc::new(super::sftp::Files))
            .with_destination("sftp.upload", Arc::new(super::sftp::Upload))
            .with_source(
                "woocommerce.orders",
                Arc::new(super::woocommerce::Pull { resource: "orders" }),
            )
            .with_source(
                "woocommerce.products",
                Arc::new(super::woocommerce::Pull {
                    resource: "products",
                }),
            )
            .with_webhook("woocommerce.webhook", Arc::new(super::woocommerce::Webhook))
            .with_installer("woocommerce.webhook", Arc::new(super::woocommerce::Webhook))
            .with_destination(
                "woocommerce.order_update",
                Arc::new(super::woocommerce::OrderUpdate),
            )
            .with_destination("woocommerce.stock", Arc::new(super::woocommerce::Stock))
            .with_source(
                "magento2.orders",
                Arc::new(super::magento2::Pull { resource: "orders" }),
            )
            .with_source(
                "magento2.products",
                Arc::new(super::magento2::Pull {
                    resource: "products",
                }),
            )
            .with_destination("magento2.shipment", Arc::new(super::magento2::Shipment))
            .with_destination("magento2.stock", Arc::new(super::magento2::Stock))
    }
}

impl Registry {
    /// An empty registry; add connectors with the `with_…` methods.
    pub fn new() -> Registry {
        Registry {
            sources: HashMap::new(),
            webhooks: HashMap::new(),
            destinations: HashMap::new(),
            installers: HashMap::new(),
        }
    }

    /// Adds a source function that reads on demand.
    pub fn with_source(mut self, name: &'static str, f: Arc<dyn SourceFunction>) -> Registry {
        self.sources.insert(name, f);
        self
    }

    /// Adds a source function that receives pushes.
    pub fn with_webhook(mut self, name: &'static str, f: Arc<dyn WebhookSource>) -> Registry {
        self.webhooks.insert(name, f);
        self
    }

    /// Adds a destination function.
    pub fn with_destination(
        mut self,
        name: &'static str,
        f: Arc<dyn DestinationFunction>,
    ) -> Registry {
        self.destinations.insert(name, f);
        self
    }

    /// Adds the installer of a webhook source function's subscriptions.
    pub fn with_installer(mut self, name: &'static str, f: Arc<dyn Installer>) -> Registry {
        self.installers.insert(name, f);
        self
    }

    /// The source function that reads on demand.
    pub fn source(&self, name: &str) -> Option<&dyn SourceFunction> {
        self.sources.get(name).map(|f| &**f)
    }

    /// The webhook source function.
    pub fn webhook(&self, name: &str) -> Option<&dyn WebhookSource> {
        self.webhooks.get(name).map(|f| &**f)
    }

    /// The destination function.
    pub fn destination(&self, name: &str) -> Option<&dyn DestinationFunction> {
        self.destinations.get(name).map(|f| &**f)
    }

    /// The installer of a webhook source function's subscriptions.
    pub fn installer(&self, name: &str) -> Option<&dyn Installer> {
        self.installers.get(name).map(|f| &**f)
    }

    /// Whether a source or destination function of this name can run.
    pub fn runs(&self, name: &str) -> bool {
        self.sources.contains_key(name)
            || self.webhooks.contains_key(name)
            || self.destinations.contains_key(name)
    }

    /// Where a source function's records carry their entity id (see
    /// [`SourceFunction::entity_id_path`]); `None` for a function that is not registered.
    pub fn entity_id_path(&self, function: &str, params: &Value) -> Option<String> {
        match (self.source(function), self.webhook(function)) {
            (Some(f), _) => f.entity_id_path(params),
            (None, Some(f)) => f.entity_id_path(params),
            (None, None) => None,
        }
    }
}

impl Registry {
    /// The names of every runnable function, sorted.
    pub fn functions(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self
            .sources
            .keys()
            .chain(self.webhooks.keys())
            .chain(self.destinations.keys())
            .copied()
            .collect();
        names.sort();
        names
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("functions", &self.functions())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entity_ids_follow_each_source_functions_rule() {
        let r = Registry::default();
        let id = |f: &str, p: Value| r.entity_id_path(f, &p);
        assert_eq!(
            id("shopify.webhook", json!({"topics": ["orders/create"]})).as_deref(),
            Some("name")
        );
        assert_eq!(id("dear.webhook", json!({})).as_deref(), Some("ID"));
        assert_eq!(id("peoplevox.webhook", json!({})), None);
        let fetch = json!({"url": "http://x", "entity_id_path": "order.id"});
        assert_eq!(id("http.fetch", fetch).as_deref(), Some("order.id"));
        assert_eq!(id("http.fetch", json!({"url": "http://x"})), None);
        let hook = json!({"entity_id_path": "sku"});
        assert_eq!(id("http.webhook", hook).as_deref(), Some("sku"));
        assert_eq!(id("ftp.download", json!({})), None);
    }

    #[test]
    fn an_empty_registry_runs_nothing() {
        let r = Registry::new();
        assert!(r.functions().is_empty());
        assert!(!r.runs("http.fetch"));
        let r = r.with_destination("http.send", Arc::new(crate::connectors::http::Send));
        assert_eq!(r.functions(), ["http.send"]);
        assert!(r.destination("http.send").is_some() && r.source("http.send").is_none());
    }
}
