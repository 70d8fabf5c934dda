//! DEAR Systems / Cin7 Core: the External API v2. Pushes carry ids only (`SaleID`); the full
//! record is read from the API, within its limit of 60 requests a minute per account.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::net::Outbound;

/// The API's base when the key names none.
pub const DEFAULT_BASE: &str = "https://inventory.dearsystems.com/ExternalApi/v2";
/// Requests a minute the API allows per account.
const PER_MINUTE: u32 = 60;
/// How often a 429 is waited out before the read fails.
const MAX_RATE_LIMITED: u32 = 5;

/// Spaces requests per account so none exceeds the API's rate.
#[derive(Default)]
pub struct RateLimiter {
    next: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// Waits until `account` may send its next request.
    pub async fn turn(&self, account: &str) {
        let gap = Duration::from_secs(60) / PER_MINUTE;
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = next
                .get(account)
                .copied()
                .filter(|t| *t > now)
                .unwrap_or(now);
            next.insert(account.to_string(), slot + gap);
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

fn base(key: &Value) -> String {
    key.get("base_url")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_BASE)
        .trim_end_matches('/')
        .to_string()
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
pub async fn fetch_sale(
    net: &Outbound,
    limiter: &RateLimiter,
    key: &Value,
    sale_id: &str,
) -> Result<Value, String> {
    let account = key
        .get("account_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
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
            let wait = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(10)
                .min(120);
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
