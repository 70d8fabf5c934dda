//! Descartes Peoplevox: the IntegrationServiceV4 SOAP API. Imports through integration
//! templates (`peoplevox.import`), template reads (`peoplevox.data`), and event callbacks with
//! the subscriptions that make Peoplevox send them (`peoplevox.webhook`).

mod data;
mod import;
pub mod soap;
mod webhook;

pub use data::{Data, DataParams};
pub use import::{Import, ImportParams};
pub use webhook::{Webhook, WebhookParams, EVENT_TYPES};

/// The Peoplevox connector. It owns the sessions and the pacing of requests per login,
/// shared by every Peoplevox function.
#[derive(Default)]
pub struct Peoplevox {
    pub client: soap::Client,
}
