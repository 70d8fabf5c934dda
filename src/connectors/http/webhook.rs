//! `http.webhook`: pushes from any sender, optionally signed with an HMAC of the raw body.

use serde_json::Value;

use crate::connectors::params::Params;
use crate::connectors::registry::{
    BodyFormat, Decoding, Push, Refused, WebhookSource, WebhookVerifier,
};
use crate::connectors::signature::check_hmac;

crate::param_enum! {
    /// How a pushed body is written.
    pub enum Format { Json = "json", Xml = "xml", Csv = "csv", Text = "text" }
}

impl Format {
    /// How a body of this format is read into records.
    pub fn body_format(self) -> BodyFormat {
        match self {
            Format::Json => BodyFormat::Json,
            Format::Csv => BodyFormat::Csv,
            Format::Xml | Format::Text => BodyFormat::Text,
        }
    }
}

crate::param_enum! {
    /// The hash of a push's HMAC.
    pub enum HmacAlgorithm { Sha256 = "sha256", Sha1 = "sha1", Sha512 = "sha512" }
}

crate::param_enum! {
    /// How a push's HMAC is written.
    pub enum HmacEncoding { Base64 = "base64", Hex = "hex" }
}

crate::params! {
    /// The params of `http.webhook`.
    pub struct WebhookParams {
        format: Format = Format::Json, "Body format; json when unset.";
        records_path: String = String::new(), "Dotted path of the record array in a JSON body.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id.";
        hmac_header: Option<String>, "Header carrying an HMAC of the raw body (key `hmac_secret`).";
        hmac_algorithm: HmacAlgorithm = HmacAlgorithm::Sha256, "HMAC hash; sha256 when unset.";
        hmac_encoding: HmacEncoding = HmacEncoding::Base64, "HMAC encoding; base64 when unset.";
        dedup_header: String = "idempotency-key".into(), "Header carrying the sender's delivery id; `Idempotency-Key` when unset.";
    }
}

/// `http.webhook` as a webhook source.
pub struct Webhook;

fn params(value: &Value) -> Result<WebhookParams, Refused> {
    WebhookParams::parse(value).map_err(|e| Refused(format!("the source has {e}")))
}

impl WebhookVerifier for Webhook {
    /// An HMAC header when the source names one (secret: the key's `hmac_secret`); otherwise
    /// the URL token alone.
    fn verify(&self, push: Push<'_>) -> Result<(), Refused> {
        let params = params(push.params)?;
        let Some(name) = params.hmac_header.as_deref() else {
            return Ok(());
        };
        let secret = push
            .key
            .and_then(|k| k.get("hmac_secret"))
            .and_then(Value::as_str)
            .ok_or_else(|| Refused("the source's key has no hmac_secret".into()))?;
        let given = push
            .header(name)
            .ok_or_else(|| Refused(format!("no `{name}` header")))?;
        // Common forms carry a prefix such as `sha256=`.
        let given = given
            .split_once('=')
            .filter(|(p, _)| p.starts_with("sha"))
            .map(|(_, v)| v)
            .unwrap_or(given);
        let (algorithm, encoding) = (params.hmac_algorithm, params.hmac_encoding);
        if check_hmac(
            algorithm.as_str(),
            encoding.as_str(),
            secret.as_bytes(),
            push.body,
            given,
        ) {
            Ok(())
        } else {
            Err(Refused(format!("`{name}` does not match the body")))
        }
    }

    fn delivery_id(&self, push: Push<'_>) -> Option<String> {
        let name = params(push.params).ok()?.dedup_header;
        push.header(&name).map(str::to_string)
    }

    fn decoding(&self, params: &Value) -> Decoding {
        let Ok(params) = WebhookParams::parse(params) else {
            return Decoding::default();
        };
        Decoding {
            format: params.format.body_format(),
            records_path: params.records_path,
        }
    }
}

impl WebhookSource for Webhook {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        WebhookParams::parse(params).ok()?.entity_id_path
    }
}
