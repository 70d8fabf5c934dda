//! The GraphQL Admin API: one endpoint (`/admin/api/<version>/graphql.json`), a query-cost
//! budget per store (a leaky bucket: `extensions.cost.throttleStatus`), and errors in the
//! body of a 200 answer. A [`Graph`] runs queries for one function call, waiting when the
//! bucket is low and retrying a `THROTTLED` answer within its allowance.

use std::time::Duration;

use serde_json::{json, Value};

use crate::connectors::net::{CallError, Outbound};
use crate::domain::error_code::ErrorCode;

/// Most tries of one query that the store answers `THROTTLED`.
const MOST_TRIES: u32 = 10;

/// Why a query has no data.
#[derive(Debug)]
pub enum Failure {
    /// No answer: the address was refused, the connection failed or timed out.
    Call(CallError),
    /// An answer other than 200: the status, the start of the body, and `Retry-After`.
    Status {
        status: reqwest::StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
    /// A 200 answer whose `errors` say the query was not run.
    Errors { code: ErrorCode, message: String },
    /// Still throttled when the allowance for waiting ran out; `wait` is what the bucket needs.
    Throttled { wait: Duration },
    /// The query asks for more than one query may cost (`MAX_COST_EXCEEDED`): ask for less.
    TooCostly { message: String },
}

impl Failure {
    /// The error code the failure stands for.
    pub fn code(&self) -> ErrorCode {
        match self {
            Failure::Call(e) => e.code(),
            Failure::Status { status, .. } => status_code(status.as_u16()),
            Failure::Errors { code, .. } => *code,
            Failure::Throttled { .. } => ErrorCode::RateLimited,
            Failure::TooCostly { .. } => ErrorCode::InvalidApiResponse,
        }
    }

    /// Whether trying again later may succeed.
    pub fn passing(&self) -> bool {
        match self {
            Failure::Call(e) => !matches!(e, CallError::Blocked(_) | CallError::Invalid(_)),
            Failure::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500..=599)
            }
            Failure::Errors { code, .. } => {
                matches!(code, ErrorCode::ServerError | ErrorCode::RateLimited)
            }
            Failure::Throttled { .. } => true,
            Failure::TooCostly { .. } => false,
        }
    }

    /// What went wrong, in Shopify's words where it gave some, for `what` (e.g. "reading orders").
    pub fn describe(&self, what: &str) -> String {
        match self {
            Failure::Call(e) => format!("{what}: {e}"),
            Failure::Status { status, body, .. } => {
                format!("Shopify answered {status} to {what}: {}", explain(body))
            }
            Failure::Errors { message, .. } | Failure::TooCostly { message } => {
                format!("Shopify refused {what}: {message}")
            }
            Failure::Throttled { wait } => format!(
                "Shopify's query budget stayed too low for {what} (it needs about {} s more)",
                wait.as_secs().max(1)
            ),
        }
    }
}

/// The error code of a status other than 200 from the Admin API.
fn status_code(status: u16) -> ErrorCode {
    match status {
        // 402: the store is frozen (unpaid); 423: locked. Both are the account's, not ours.
        401 | 402 | 403 | 423 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        408 => ErrorCode::Timeout,
        429 => ErrorCode::RateLimited,
        500..=599 => ErrorCode::ServerError,
        400 | 422 => ErrorCode::InvalidSchema,
        _ => ErrorCode::InvalidApiResponse,
    }
}

/// Shopify's explanation in an error body: `{"errors": "…"}`, `{"errors": [{"message": …}]}`,
/// or the start of the text.
pub fn explain(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match v.get("errors") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) if !list.is_empty() => messages(list),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join("; "),
        _ => body.chars().take(300).collect(),
    }
}

fn messages(list: &[Value]) -> String {
    list.iter()
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_string)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error code of a 200 answer's `errors` (by their `extensions.code`).
fn errors_code(errors: &[Value]) -> ErrorCode {
    let codes: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str))
        .collect();
    if codes.contains(&"ACCESS_DENIED") {
        ErrorCode::Unauthorized
    } else if codes.contains(&"INTERNAL_SERVER_ERROR") {
        ErrorCode::ServerError
    } else if codes.contains(&"NOT_FOUND") || codes.contains(&"RESOURCE_NOT_FOUND") {
        ErrorCode::NotFound
    } else if codes.contains(&"INVALID_VARIABLE") || codes.contains(&"BAD_USER_INPUT") {
        // A value from the output Shopify cannot take (an id of the wrong form).
        ErrorCode::InvalidSchema
    } else {
        // A query Shopify does not accept (a field unknown to the key's API version, a cost
        // over the most one query may have) is ours to change, not the data's.
        ErrorCode::InvalidApiResponse
    }
}

/// `userErrors` of a mutation as a message, and their code: a missing record is
/// `NOT_FOUND`, anything else the data's fault (`INVALID_SCHEMA`).
pub fn user_errors(payload: &Value) -> Option<(ErrorCode, String)> {
    let list = payload.get("userErrors")?.as_array()?;
    if list.is_empty() {
        return None;
    }
    let message = list
        .iter()
        .map(|e| {
            let text = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("refused");
            match e.get("field").and_then(Value::as_array) {
                Some(path) if !path.is_empty() => {
                    let path: Vec<String> = path
                        .iter()
                        .map(|p| p.as_str().map_or(p.to_string(), str::to_string))
                        .collect();
                    format!("{} ({})", text, path.join("."))
                }
                _ => text.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let not_found = list.iter().any(|e| {
        matches!(
            e.get("code").and_then(Value::as_str),
            Some("NOT_FOUND" | "INVALID_INVENTORY_ITEM" | "INVALID_LOCATION")
        ) || e.get("message").and_then(Value::as_str).is_some_and(|m| {
            let m = m.to_lowercase();
            m.contains("not found") || m.contains("does not exist")
        })
    });
    let code = if not_found {
        ErrorCode::NotFound
    } else {
        ErrorCode::InvalidSchema
    };
    Some((code, message))
}

/// The GraphQL endpoint of the key's store.
fn endpoint(key: &Value) -> String {
    let version = key
        .get("api_version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(super::admin::API_VERSION);
    format!(
        "{}/admin/api/{version}/graphql.json",
        super::admin::base(key)
    )
}

/// Queries for one function call against one store, paced by the store's cost budget.
pub struct Graph<'a> {
    net: &'a Outbound,
    key: &'a Value,
    /// Each request's timeout; the outbound default when `None`.
    timeout: Option<Duration>,
    /// How long this call may spend waiting for the budget, in all.
    allowance: Duration,
    /// A wait the last answer asked for before the next query (its bucket was low).
    owed: Duration,
    /// Times the budget made this call wait, and for how long in all.
    pub waits: u32,
    pub waited: Duration,
    /// The size of the last answer's body, for a pull's budget checks.
    pub last_bytes: usize,
    /// Server errors (500, 502, 504) still to be tried again after, with a short wait; none
    /// for a delivery, whose tries are the destination's retry schedule.
    server_retries: u32,
}

impl<'a> Graph<'a> {
    pub fn new(
        net: &'a Outbound,
        key: &'a Value,
        timeout: Option<Duration>,
        allowance: Duration,
    ) -> Graph<'a> {
        Graph {
            net,
            key,
            timeout,
            allowance,
            owed: Duration::ZERO,
            waits: 0,
            waited: Duration::ZERO,
            last_bytes: 0,
            server_retries: 0,
        }
    }

    /// Tries a query again after up to `n` server errors (for pulls).
    pub fn retrying_server_errors(mut self, n: u32) -> Graph<'a> {
        self.server_retries = n;
        self
    }

    /// Waits `d` (within the allowance), counting it; false when the allowance would run out.
    async fn wait(&mut self, d: Duration) -> bool {
        if self.waited + d > self.allowance {
            return false;
        }
        tokio::time::sleep(d).await;
        self.waits += 1;
        self.waited += d;
        true
    }

    /// Runs `query` with `variables`; its `data`, or why there is none.
    pub async fn run(&mut self, query: &str, variables: Value) -> Result<Value, Failure> {
        let body = json!({"query": query, "variables": variables});
        let mut tries = 0;
        loop {
            tries += 1;
            if !self.owed.is_zero() {
                let owed = std::mem::take(&mut self.owed);
                // A wait the allowance cannot cover is left to Shopify: it answers THROTTLED.
                self.wait(owed).await;
            }
            let req = self
                .net
                .request(reqwest::Method::POST, endpoint(self.key))
                .header(
                    "X-Shopify-Access-Token",
                    self.key["access_token"].as_str().unwrap_or_default(),
                )
                .json(&body);
            let res = self
                .net
                .send(req, self.timeout)
                .await
                .map_err(Failure::Call)?;
            let status = res.status();
            if status.as_u16() == 429 && tries < MOST_TRIES {
                let d = crate::connectors::pages::busy_wait(&res, 1);
                if self.wait(d).await {
                    continue;
                }
                return Err(Failure::Throttled { wait: d });
            }
            if matches!(status.as_u16(), 500 | 502 | 504) && self.server_retries > 0 {
                self.server_retries -= 1;
                if self.wait(Duration::from_secs(1)).await {
                    continue;
                }
            }
            if status != reqwest::StatusCode::OK {
                let retry_after = crate::connectors::pages::retry_after(&res);
                let body = self.net.read_excerpt(res).await;
                return Err(Failure::Status {
                    status,
                    body,
                    retry_after,
                });
            }
            let bytes = self.net.read_capped(res).await.map_err(Failure::Call)?;
            self.last_bytes = bytes.len();
            let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| Failure::Errors {
                code: ErrorCode::InvalidApiResponse,
                message: format!("the answer is not JSON: {e}"),
            })?;
            let cost = doc.pointer("/extensions/cost").cloned();
            let need = cost.as_ref().and_then(budget_wait);
            let errors = doc
                .get("errors")
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty())
                .cloned();
            if let Some(errors) = errors {
                let throttled = errors.iter().any(|e| {
                    e.pointer("/extensions/code").and_then(Value::as_str) == Some("THROTTLED")
                });
                let costly = errors.iter().any(|e| {
                    e.pointer("/extensions/code").and_then(Value::as_str)
                        == Some("MAX_COST_EXCEEDED")
                });
                if costly {
                    return Err(Failure::TooCostly {
                        message: messages(&errors),
                    });
                }
                if throttled {
                    let d = need.unwrap_or(Duration::from_secs(1));
                    if tries < MOST_TRIES && self.wait(d).await {
                        continue;
                    }
                    return Err(Failure::Throttled { wait: d });
                }
                return Err(Failure::Errors {
                    code: errors_code(&errors),
                    message: messages(&errors),
                });
            }
            // What is left may not pay for the same query again: wait before the next.
            self.owed = need.unwrap_or_default();
            return match doc.get_mut("data").map(Value::take) {
                Some(data) if data.is_object() => Ok(data),
                _ => Err(Failure::Errors {
                    code: ErrorCode::InvalidApiResponse,
                    message: "the answer has no `data`".into(),
                }),
            };
        }
    }
}

/// How long until the bucket holds the query's requested cost again, from
/// `extensions.cost`; `None` when it holds enough already (or the answer does not say).
fn budget_wait(cost: &Value) -> Option<Duration> {
    let requested = cost.get("requestedQueryCost").and_then(Value::as_f64)?;
    let status = cost.get("throttleStatus")?;
    let available = status.get("currentlyAvailable").and_then(Value::as_f64)?;
    let rate = status
        .get("restoreRate")
        .and_then(Value::as_f64)
        .filter(|r| *r > 0.0)?;
    let maximum = status
        .get("maximumAvailable")
        .and_then(Value::as_f64)
        .unwrap_or(f64::MAX);
    // A query that costs more than the bucket holds can never run; waiting will not help.
    let requested = requested.min(maximum);
    (available < requested).then(|| {
        let seconds = ((requested - available) / rate).clamp(0.1, 60.0);
        Duration::from_millis((seconds * 1000.0).ceil() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_says_how_long_to_wait() {
        let cost = json!({"requestedQueryCost": 102, "actualQueryCost": null,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 2, "restoreRate": 50.0}});
        assert_eq!(budget_wait(&cost), Some(Duration::from_secs(2)));
        let cost = json!({"requestedQueryCost": 10, "actualQueryCost": 4,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 996, "restoreRate": 50.0}});
        assert_eq!(budget_wait(&cost), None);
        assert_eq!(budget_wait(&json!({})), None);
    }

    #[test]
    fn errors_are_explained_in_shopifys_words() {
        assert_eq!(
            explain(
                r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#
            ),
            "[API] Invalid API key or access token (unrecognized login or wrong password)"
        );
        assert_eq!(
            explain(r#"{"errors":[{"message":"Throttled"},{"message":"Again"}]}"#),
            "Throttled; Again"
        );
        let payload = json!({"userErrors": [{"field": ["fulfillment", "trackingInfo"], "message": "Tracking number is invalid"}]});
        assert_eq!(
            user_errors(&payload),
            Some((
                ErrorCode::InvalidSchema,
                "Tracking number is invalid (fulfillment.trackingInfo)".into()
            ))
        );
        let payload = json!({"userErrors": [{"field": ["id"], "message": "Fulfillment order does not exist."}]});
        assert_eq!(user_errors(&payload).unwrap().0, ErrorCode::NotFound);
        assert_eq!(user_errors(&json!({"userErrors": []})), None);
    }
}
