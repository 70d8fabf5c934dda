//! `magento2.orders` and `magento2.products`: every record updated since the last run (the
//! `updated_at` watermark kept in the source's state), page by page through `searchCriteria`
//! until `total_count` is reached.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::domain::error_code::ErrorCode;

/// Most pages in one run: a guard against a store whose count never ends.
const MAX_PAGES: u64 = 10_000;

crate::params! {
    /// The params of `magento2.orders` and `magento2.products`.
    pub struct PullParams {
        page_size: u64 = 100, "Records per page (1 to 300, Magento's largest when it limits input).";
        since: Option<String>, "The first run reads records updated after this time (`YYYY-MM-DD HH:MM:SS`, UTC); later runs go on from the last record read. All records when unset.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `increment_id` for orders and `sku` for products when unset.";
    }
}

/// A pull of one resource (`orders` or `products`).
pub struct Pull {
    pub resource: &'static str,
}

#[async_trait]
impl SourceFunction for Pull {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        let given = PullParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path);
        Some(given.unwrap_or_else(|| {
            if self.resource == "orders" {
                "increment_id"
            } else {
                "sku"
            }
            .to_string()
        }))
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) = crate::connectors::pages::prepare::<PullParams>(
            &call,
            "Magento",
            "page_size",
            300,
            |p| p.page_size,
        )?;
        let after = state
            .and_then(|s| s.get("updated_after"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(params.since.clone());
        let mut records: Vec<Value> = Vec::new();
        let mut newest: Option<String> = None;
        let mut page = 1u64;
        let mut again = crate::connectors::pages::Again::default();
        loop {
            let mut query: Vec<(String, String)> = vec![
                (
                    "searchCriteria[sortOrders][0][field]".into(),
                    "updated_at".into(),
                ),
                (
                    "searchCriteria[sortOrders][0][direction]".into(),
                    "ASC".into(),
                ),
                // Equal times need a unique column after them, or pages may overlap.
                (
                    "searchCriteria[sortOrders][1][field]".into(),
                    "entity_id".into(),
                ),
                (
                    "searchCriteria[sortOrders][1][direction]".into(),
                    "ASC".into(),
                ),
                (
                    "searchCriteria[pageSize]".into(),
                    params.page_size.to_string(),
                ),
                ("searchCriteria[currentPage]".into(), page.to_string()),
            ];
            if let Some(after) = &after {
                let filter = "searchCriteria[filter_groups][0][filters][0]";
                query.push((format!("{filter}[field]"), "updated_at".into()));
                query.push((format!("{filter}[value]"), after.clone()));
                query.push((format!("{filter}[condition_type]"), "gt".into()));
            }
            let path = format!("/{}", self.resource);
            let req = super::request(call.net, reqwest::Method::GET, key, &path).query(&query);
            let failed = |e: crate::connectors::net::CallError| {
                format!(
                    "{}: reading {} from Magento: {e}",
                    e.code().as_str(),
                    self.resource
                )
            };
            let res = call.net.send(req, None).await.map_err(failed)?;
            let status = res.status();
            if let Some(wait) = again.wait(&res) {
                tracing::info!(
                    resource = self.resource,
                    %status,
                    wait_ms = wait.as_millis() as u64,
                    "Magento asks to try again; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                let body = call.net.read_excerpt(res).await;
                let code = match status.as_u16() {
                    401 | 403 => ErrorCode::Unauthorized,
                    404 => ErrorCode::NotFound,
                    429 => ErrorCode::RateLimited,
                    500..=599 => ErrorCode::ServerError,
                    _ => ErrorCode::InvalidApiResponse,
                };
                return Err(format!(
                    "{}: Magento answered {status} for {}: {}",
                    code.as_str(),
                    self.resource,
                    super::problem(&body)
                ));
            }
            let body = call.net.read_capped(res).await.map_err(failed)?;
            let mut doc: Value = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{}: Magento's {} page {page} is not JSON: {e}",
                    ErrorCode::InvalidApiResponse.as_str(),
                    self.resource
                )
            })?;
            let total = doc.get("total_count").and_then(Value::as_u64);
            let items = match doc.get_mut("items").map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(format!(
                        "{}: Magento's {} page {page} has no `items` list",
                        ErrorCode::InvalidApiResponse.as_str(),
                        self.resource
                    ))
                }
            };
            crate::connectors::pages::check(
                &call,
                "Magento",
                self.resource,
                body.len(),
                records.len(),
                items.len(),
            )?;
            for item in &items {
                if let Some(t) = item.get("updated_at").and_then(Value::as_str) {
                    if newest.as_deref().is_none_or(|n| t > n) {
                        newest = Some(t.to_string());
                    }
                }
            }
            let short = (items.len() as u64) < params.page_size;
            records.extend(items);
            // Magento 2.4 answers a page past the end with no items (2.3 repeated the last
            // page), so the count says when to stop; without one, a short page does.
            let done = total.map_or(short, |t| page * params.page_size >= t);
            if done || short || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        let count = records.len();
        Ok(Reading {
            records,
            state: newest.map(|t| json!({ "updated_after": t })),
            summary: Some(
                json!({ "resource": self.resource, "updated_after": after, "read": count,
                    "waited_out": again.count() }),
            ),
            ..Reading::default()
        })
    }
}
