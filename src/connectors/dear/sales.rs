//! `dear.sales`: the sales changed since the last run (`saleList` with `UpdatedSince`, the
//! newest `Updated` kept in the source's state), page by page, paced within DEAR's limit;
//! each sale in full (`GET /sale`) when asked.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};

use super::{fetch_sale, request, Dear};
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::domain::error_code::ErrorCode;

/// Most pages in one run: a guard against a count that never ends.
const MAX_PAGES: u64 = 10_000;

crate::params! {
    /// The params of `dear.sales`.
    pub struct SalesParams {
        status: Option<String>, "Only sales of this status (e.g. `ORDERED`, `INVOICED`); all when unset.";
        limit: u64 = 100, "Sales per page (1 to 1000).";
        since: Option<String>, "The first run reads sales updated after this time (ISO 8601, UTC); later runs go on from the last sale read. All sales when unset.";
        full: bool = false, "Read each sale in full (`GET /sale`: lines, fulfilments, invoices), one call more per sale within DEAR's 60 a minute; the list's summary when false.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `SaleID` when unset (the id `dear.webhook` knows a sale by, so both sources share its history).";
    }
}

/// `dear.sales`, sharing DEAR's pacing with the connector's other reads.
pub struct Sales {
    pub dear: Arc<Dear>,
}

/// A DEAR time (`2017-09-29T03:03:13.913Z`, or without the zone: UTC) as an instant.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

/// As DEAR's date parameters are written: `yyyy-MM-ddTHH:mm:ss.fff`, UTC.
fn param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

#[async_trait]
impl SourceFunction for Sales {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        let given = SalesParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path);
        Some(given.unwrap_or_else(|| "SaleID".into()))
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) =
            crate::connectors::pages::prepare::<SalesParams>(&call, "DEAR", "limit", 1000, |p| {
                p.limit
            })?;
        let account = super::account(key);
        let after =
            match state
                .and_then(|s| s.get("updated_since"))
                .and_then(Value::as_str)
                .or(params.since.as_deref())
            {
                Some(t) => Some(instant(t).ok_or_else(|| {
                    format!("invalid params: `since` ({t}) is not an ISO 8601 time")
                })?),
                None => None,
            };
        let mut sales: Vec<Value> = Vec::new();
        let mut newest: Option<DateTime<Utc>> = None;
        let mut page = 1u64;
        // The limit is answered 429 or (in older accounts) 503, often without Retry-After; a
        // server error is tried again after a pause (the pages read stay good).
        let mut again = crate::connectors::pages::Again::waiting(60);
        loop {
            self.dear.limiter.turn(&account).await;
            let mut query = vec![
                ("Page".to_string(), page.to_string()),
                ("Limit".to_string(), params.limit.to_string()),
            ];
            if let Some(after) = after {
                query.push(("UpdatedSince".into(), param(after)));
            }
            if let Some(status) = &params.status {
                query.push(("Status".into(), status.clone()));
            }
            let req = request(call.net, reqwest::Method::GET, key, "/saleList").query(&query);
            let failed = |e: crate::connectors::net::CallError| {
                format!("{}: reading DEAR's sale list: {e}", e.code().as_str())
            };
            let res = call.net.send(req, None).await.map_err(failed)?;
            let status = res.status();
            if let Some(wait) = again.wait(&res) {
                tracing::info!(%status, page, wait_s = wait.as_secs(), "DEAR asks to try the sale list again; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                let body = call.net.read_excerpt(res).await;
                let code = match status.as_u16() {
                    401 | 403 => ErrorCode::Unauthorized,
                    429 | 503 => ErrorCode::RateLimited,
                    _ => ErrorCode::InvalidApiResponse,
                };
                let excerpt: String = body.chars().take(300).collect();
                return Err(format!(
                    "{}: DEAR answered {status} for the sale list: {excerpt}",
                    code.as_str()
                ));
            }
            let body = call.net.read_capped(res).await.map_err(failed)?;
            let mut doc: Value = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{}: DEAR's sale list page {page} is not JSON: {e}",
                    ErrorCode::InvalidApiResponse.as_str()
                )
            })?;
            let total = doc.get("Total").and_then(Value::as_u64);
            let items = match doc.get_mut("SaleList").map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(format!(
                        "{}: DEAR's sale list page {page} has no `SaleList`",
                        ErrorCode::InvalidApiResponse.as_str()
                    ))
                }
            };
            crate::connectors::pages::check(
                &call,
                "DEAR",
                "sales",
                body.len(),
                sales.len(),
                items.len(),
            )?;
            for item in &items {
                if let Some(t) = item
                    .get("Updated")
                    .and_then(Value::as_str)
                    .and_then(instant)
                {
                    newest = newest.max(Some(t));
                }
            }
            let short = (items.len() as u64) < params.limit;
            sales.extend(items);
            // The count says when to stop; without one, a short page does.
            let done = total.map_or(short, |t| page * params.limit >= t);
            if done || short || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        if params.full {
            for sale in sales.iter_mut() {
                if let Some(id) = sale
                    .get("SaleID")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    let full = fetch_sale(call.net, &self.dear.limiter, key, &id).await?;
                    let Value::Object(mut full) = full else {
                        return Err(format!(
                            "{}: DEAR's sale {id} is not a sale: {}",
                            ErrorCode::InvalidApiResponse.as_str(),
                            full.to_string().chars().take(300).collect::<String>()
                        ));
                    };
                    // The list's sale id and order number stay beside the sale's own fields.
                    for field in ["SaleID", "OrderNumber"] {
                        if !full.contains_key(field) {
                            full.insert(field.into(), sale[field].clone());
                        }
                    }
                    *sale = Value::Object(full);
                }
            }
        }
        let count = sales.len();
        Ok(Reading {
            records: sales,
            state: newest.map(|t| json!({ "updated_since": param(t) })),
            summary: Some(json!({ "updated_since": after.map(param), "read": count })),
            ..Reading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dear_times_are_read_with_or_without_zone_and_written_as_dear_wants() {
        let a = instant("2017-09-29T03:03:13.91Z").unwrap();
        let b = instant("2017-09-29T03:03:13.913").unwrap();
        assert!(a < b, "fractions compare as numbers, not text");
        assert_eq!(param(b), "2017-09-29T03:03:13.913");
        assert!(instant("yesterday").is_none());
    }
}
