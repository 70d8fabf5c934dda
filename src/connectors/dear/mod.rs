//! DEAR Systems / Cin7 Core: the External API v2. Pushes carry ids only (`SaleID`); the full
//! record is read from the API, within its limit of 60 requests a minute per account. Sales
//! and stock are pulled (`dear.sales`, `dear.stock`); sales are made (`dear.sale`) and
//! fulfilled (`dear.fulfilment`) through the same pacing.

mod fulfilment;
mod limiter;
mod sale;
mod sales;
mod stock;
mod webhook;

use std::time::Duration;

use serde_json::Value;

pub use fulfilment::{FulfilmentParams, FulfilmentWrite};
pub use limiter::RateLimiter;
pub use sale::{SaleParams, SaleWrite};
pub use sales::{Sales, SalesParams};
pub use stock::{Stock, StockParams};
pub use webhook::WebhookParams;

use super::net::Outbound;
use crate::domain::error_code::ErrorCode;

/// The DEAR connector. It owns the per-account pacing of API calls, shared by every source
/// and destination that calls DEAR.
#[derive(Default)]
pub struct Dear {
    limiter: RateLimiter,
}

impl Dear {
    /// Waits for the account's turn within a delivery's try (`timeout` from `started`): the
    /// time left for the call, or the result that retries the delivery later.
    pub(super) async fn turn_within(
        &self,
        account: &str,
        started: std::time::Instant,
        timeout: std::time::Duration,
    ) -> Result<std::time::Duration, crate::connectors::registry::SendResult> {
        use crate::connectors::delivery::later;
        let left = timeout.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, self.limiter.turn(account))
            .await
            .is_err()
        {
            return Err(later(
                started,
                ErrorCode::RateLimited,
                "DEAR's limit of 60 calls a minute left no turn within the try's time".into(),
            ));
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(later(
                started,
                ErrorCode::Timeout,
                "the try's time ran out waiting for DEAR's limit".into(),
            ));
        }
        Ok(left)
    }
}

/// The API's base when the key names none.
pub const DEFAULT_BASE: &str = "https://inventory.dearsystems.com/ExternalApi/v2";
/// How often a 429 is waited out before the read fails.
const MAX_RATE_LIMITED: u32 = 5;

fn base(key: &Value) -> String {
    key.get("base_url")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_BASE)
        .trim_end_matches('/')
        .to_string()
}

/// The account a key is for: DEAR's limit, and so its pacing, is per account.
fn account(key: &Value) -> String {
    key.get("account_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// DEAR's errors: `[{"ErrorCode": 400, "Exception": "…"}]` (or one such object), or text.
fn explain(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match first(&v)
        .and_then(|e| e.get("Exception"))
        .and_then(Value::as_str)
    {
        Some(e) => e.to_string(),
        None => body.chars().take(300).collect(),
    }
}

fn first(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(list) => list.first(),
        Value::Object(_) => Some(v),
        _ => None,
    }
}

/// The `Exception` of DEAR's error model in an answer that is otherwise a success: some
/// answers carry it with a 200.
fn error_model(v: &Value) -> Option<String> {
    let e = first(v)?;
    e.get("ErrorCode")?;
    Some(
        e.get("Exception")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string(),
    )
}

/// The error code DEAR's answer means where its status alone would mislead: its rate limit
/// is also answered 503 or 400, and an unknown id is a 400.
fn code_of(status: u16, body: &str) -> Option<ErrorCode> {
    let text = explain(body);
    if text.contains("API limit") {
        return Some(ErrorCode::RateLimited);
    }
    match status {
        403 => Some(ErrorCode::Unauthorized),
        400 if text.to_lowercase().contains("not found") => Some(ErrorCode::NotFound),
        400 => Some(ErrorCode::InvalidSchema),
        _ => None,
    }
}

/// A request with the key's account headers; send it with [`Outbound::send`].
pub fn request(
    net: &Outbound,
    method: reqwest::Method,
    key: &Value,
    path: &str,
) -> reqwest::RequestBuilder {
    let text = |n: &str| {
        key.get(n)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    net.request(method, format!("{}{path}", base(key)))
        .header("api-auth-accountid", text("account_id"))
        .header("api-auth-applicationkey", text("application_key"))
        .header("accept", "application/json")
}

/// Reads the full sale a push named. The error is a message for the job.
async fn fetch_sale(
    net: &Outbound,
    limiter: &RateLimiter,
    key: &Value,
    sale_id: &str,
) -> Result<Value, String> {
    let account = account(key);
    let mut limited = 0;
    loop {
        limiter.turn(&account).await;
        let req = request(net, reqwest::Method::GET, key, "/sale").query(&[("ID", sale_id)]);
        let failed = |e: super::net::CallError| {
            format!(
                "{}: reading sale {sale_id} from DEAR: {e}",
                e.code().as_str()
            )
        };
        let res = net.send(req, None).await.map_err(failed)?;
        let status = res.status();
        if status.as_u16() == 429 && limited < MAX_RATE_LIMITED {
            limited += 1;
            let wait = super::pages::busy_wait(&res, 10).as_secs();
            tracing::info!(sale = sale_id, wait, "DEAR rate limit reached; backing off");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        if !status.is_success() {
            let body = net.read_excerpt(res).await;
            let excerpt: String = body.chars().take(300).collect();
            return Err(format!(
                "DEAR answered {status} for sale {sale_id}: {excerpt}"
            ));
        }
        let body = net.read_capped(res).await.map_err(failed)?;
        return serde_json::from_slice(&body)
            .map_err(|e| format!("DEAR's sale {sale_id} is not JSON: {e}"));
    }
}
