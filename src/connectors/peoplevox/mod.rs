//! Descartes Peoplevox: event callbacks (despatches, goods in, stock), and the
//! IntegrationServiceV4 SOAP client ([`soap`]).

pub mod soap;

use serde_json::Value;

use crate::connectors::http::Format;
use crate::connectors::params::Params;
use crate::connectors::registry::{Decoding, Push, Refused, WebhookSource, WebhookVerifier};

crate::params! {
    /// The params of `peoplevox.webhook`.
    pub struct WebhookParams {
        event_type: Option<String>, "Event subscribed to, e.g. `AvailabilityChanges` or `SalesOrderStatusChanges`.";
        format: Format = Format::Json, "Callback body format.";
    }
}

/// `peoplevox.webhook`: callbacks as Peoplevox sends them.
pub struct Webhook;

impl WebhookVerifier for Webhook {
    /// Peoplevox callbacks carry no signature: the URL token alone.
    fn verify(&self, _push: Push<'_>) -> Result<(), Refused> {
        Ok(())
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
    fn entity_id_path(&self, _params: &Value) -> Option<String> {
        None
    }
}
