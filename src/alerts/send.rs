//! Sending notifications: e-mail through `[smtp]`, webhooks signed with the channel's secret.
//! Each try is claimed in the store first (one node sends it), and its outcome recorded.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::{later, SEND_BATCH};
use crate::app::AppState;
use crate::config::{AlertsConfig, SmtpConfig};
use crate::connectors::net::Outbound;
use crate::crypto::MasterKey;
use crate::domain::retry::Verdict;
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::store::{AlertChannel, Notification, Store};

/// The header carrying a webhook notification's signature: `v1,` and the base64 HMAC-SHA256
/// of the body under the channel's secret.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Messages sent at once.
const CONCURRENCY: usize = 16;

/// The signature of `body` under `secret`, as [`SIGNATURE_HEADER`] carries it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// A webhook target as errors show it: its origin only, as chat webhooks carry their token
/// in the path.
fn shown(target: &str) -> String {
    reqwest::Url::parse(target)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "the channel's URL".into())
}

#[derive(Clone)]
pub(super) struct Sender {
    net: Outbound,
    /// `[smtp]` as the fields of an `email` key; `None` when no host is configured.
    smtp: Option<Value>,
    master_key: MasterKey,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

fn smtp_key(smtp: &SmtpConfig) -> Option<Value> {
    let host = smtp.host.as_ref()?;
    let mut key = json!({"host": host, "security": smtp.security.as_deref().unwrap_or("starttls")});
    for (field, v) in [
        ("username", &smtp.username),
        ("password", &smtp.password),
        ("from", &smtp.from),
        ("tls_ca", &smtp.tls_ca),
    ] {
        if let Some(v) = v {
            key[field] = json!(v);
        }
    }
    if let Some(port) = smtp.port {
        key["port"] = json!(port);
    }
    Some(key)
}

impl Sender {
    pub(super) fn new(state: &AppState) -> Sender {
        Sender {
            net: state.outbound.clone(),
            smtp: smtp_key(&state.config.smtp),
            master_key: state.master_key.clone(),
            timeout: Duration::from_secs(state.config.alerts.timeout_seconds),
            metrics: state.metrics.clone(),
        }
    }

    /// Sends what is due at `now`; answers how many were sent and how many failed for good.
    pub(super) async fn send_due(
        &self,
        store: &Store,
        config: &AlertsConfig,
        now: Timestamp,
    ) -> anyhow::Result<(usize, usize)> {
        let due = store.due_notifications(now, SEND_BATCH).await?;
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tries = tokio::task::JoinSet::new();
        for n in due {
            let last = n.tries as usize >= config.retry_seconds.len();
            // Until the outcome is written, the claim holds the try: long enough to finish it.
            let retry_at = if last {
                later(now, self.timeout.as_secs() * 2 + 60)
            } else {
                later(now, config.retry_seconds[n.tries as usize])
            };
            let (sender, store, limit) = (self.clone(), store.clone(), limit.clone());
            tries.spawn(async move {
                let _slot = limit.acquire().await;
                // Claimed only once a slot is free, so the claim covers the send itself.
                match store.claim_notification(n.id, n.tries, retry_at, now).await {
                    Ok(true) => {}
                    Ok(false) => return "taken",
                    Err(e) => {
                        tracing::warn!(error = %e, notification = %n.id, "claiming a notification failed");
                        return "taken";
                    }
                }
                let outcome = sender.deliver(&store, &n).await;
                let (status, error) = match &outcome {
                    Ok(()) => ("sent", None),
                    Err(e) if last => ("failed", Some(e.as_str())),
                    Err(e) => ("pending", Some(e.as_str())),
                };
                let kind = if outcome.is_ok() { "sent" } else { "failed" };
                sender.metrics.record_notification(kind);
                if let Err(e) = store
                    .finish_notification(n.id, status, error, Timestamp::now())
                    .await
                {
                    tracing::warn!(error = %e, notification = %n.id, "recording a notification failed");
                }
                if let Some(e) = error {
                    tracing::warn!(notification = %n.id, error = %e, status, "a notification was not sent");
                }
                status
            });
        }
        let (mut sent, mut failed) = (0, 0);
        while let Some(done) = tries.join_next().await {
            match done {
                Ok("sent") => sent += 1,
                Ok("failed") => failed += 1,
                _ => {}
            }
        }
        Ok((sent, failed))
    }

    async fn deliver(&self, store: &Store, n: &Notification) -> Result<(), String> {
        let channel: AlertChannel = store
            .get(n.org_id, n.channel_id)
            .await
            .map_err(|e| format!("the channel cannot be read: {e}"))?;
        let text = n.body.0.get("text").and_then(Value::as_str).unwrap_or("");
        match channel.kind.as_str() {
            "email" => {
                let key = self.smtp.as_ref().ok_or(
                    "no mail server is configured: set smtp.host (and smtp.from) to send e-mail alerts",
                )?;
                let result = crate::connectors::email::send_text(
                    &self.net,
                    key,
                    &channel.target,
                    &n.subject,
                    text.to_string(),
                    n.id,
                    self.timeout,
                )
                .await;
                match result.verdict {
                    Verdict::Success => Ok(()),
                    _ => Err(result
                        .message
                        .unwrap_or_else(|| "the mail server refused the message".into())),
                }
            }
            _ => {
                let secret = self
                    .master_key
                    .open(channel.id.as_bytes(), &channel.sealed_secret)
                    .and_then(|s| String::from_utf8(s).ok())
                    .ok_or("the channel's secret cannot be opened (was the master key changed?)")?;
                let body = serde_json::to_vec(&n.body.0).unwrap_or_default();
                let req = self
                    .net
                    .request(reqwest::Method::POST, channel.target.as_str())
                    .header("content-type", "application/json")
                    .header("webhook-id", n.id.to_string())
                    .header(
                        "webhook-timestamp",
                        Timestamp::now().0.timestamp().to_string(),
                    )
                    .header(SIGNATURE_HEADER, sign(&secret, &body))
                    .body(body);
                let res = self
                    .net
                    .send(req, Some(self.timeout))
                    .await
                    .map_err(|e| format!("sending to {}: {e}", shown(&channel.target)))?;
                let status = res.status();
                if status.is_success() {
                    return Ok(());
                }
                let excerpt = self.net.read_excerpt(res).await;
                Err(format!(
                    "{} answered {status}{}",
                    shown(&channel.target),
                    if excerpt.is_empty() {
                        String::new()
                    } else {
                        format!(": {excerpt}")
                    }
                ))
            }
        }
    }
}
