//! `woocommerce.orders` and `woocommerce.products`: every record changed since the last run
//! (the `modified_after` watermark kept in the source's state), page by page as
//! `X-WP-TotalPages` says.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::domain::error_code::ErrorCode;

/// Most pages in one run: a guard against a store that never says it is done.
const MAX_PAGES: u64 = 10_000;

crate::params! {
    /// The params of `woocommerce.orders` and `woocommerce.products`.
    pub struct PullParams {
        status: Option<String>, "Only records of this status (orders: e.g. `processing`; products: e.g. `publish`); all when unset.";
        per_page: u64 = 100, "Records per page (1 to 100).";
        since: Option<String>, "The first run reads records modified after this time (ISO 8601, UTC); later runs go on from the last record read. All records when unset.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `number` for orders and `sku` for products when unset.";
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
                "number"
            } else {
                "sku"
            }
            .to_string()
        }))
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) = crate::connectors::pages::prepare::<PullParams>(
            &call,
            "WooCommerce",
            "per_page",
            100,
            |p| p.per_page,
        )?;
        let after = state
            .and_then(|s| s.get("modified_after"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(params.since.clone());
        let mut records: Vec<Value> = Vec::new();
        let mut newest: Option<String> = None;
        let mut page = 1u64;
        let mut again = crate::connectors::pages::Again::default();
        loop {
            let mut query = vec![
                ("per_page".to_string(), params.per_page.to_string()),
                ("page".to_string(), page.to_string()),
                // By modification time (WooCommerce adds the id after it for a stable order).
                ("orderby".to_string(), "modified".to_string()),
                ("order".to_string(), "asc".to_string()),
            ];
            if let Some(after) = &after {
                query.push(("modified_after".into(), after.clone()));
                query.push(("dates_are_gmt".into(), "true".into()));
            }
            if let Some(status) = &params.status {
                query.push(("status".into(), status.clone()));
            }
            let path = format!("/{}", self.resource);
            let req = super::request(call.net, reqwest::Method::GET, key, &path, &query);
            let failed = |e: crate::connectors::net::CallError| {
                format!(
                    "{}: reading {} from WooCommerce: {e}",
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
                    "WooCommerce asks to try again; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                let body = call.net.read_excerpt(res).await;
                let code = match status.as_u16() {
                    401 | 403 => ErrorCode::Unauthorized,
                    404 => ErrorCode::NotFound,
                    _ => ErrorCode::InvalidApiResponse,
                };
                return Err(format!(
                    "{}: WooCommerce answered {status} for {}: {}",
                    code.as_str(),
                    self.resource,
                    super::problem(&body)
                ));
            }
            let pages = res
                .headers()
                .get("x-wp-totalpages")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = call.net.read_capped(res).await.map_err(failed)?;
            let items = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(items)) => items,
                Ok(_) => {
                    return Err(format!(
                        "{}: WooCommerce's {} page {page} is not a list",
                        ErrorCode::InvalidApiResponse.as_str(),
                        self.resource
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{}: WooCommerce's {} page {page} is not JSON: {e}",
                        ErrorCode::InvalidApiResponse.as_str(),
                        self.resource
                    ))
                }
            };
            crate::connectors::pages::check(
                &call,
                "WooCommerce",
                self.resource,
                body.len(),
                records.len(),
                items.len(),
            )?;
            for item in &items {
                if let Some(t) = item.get("date_modified_gmt").and_then(Value::as_str) {
                    if newest.as_deref().is_none_or(|n| t > n) {
                        newest = Some(t.to_string());
                    }
                }
            }
            let short = (items.len() as u64) < params.per_page;
            records.extend(items);
            // `X-WP-TotalPages` says when to stop; without it (a proxy may drop it), a short
            // page does.
            let done = pages.map_or(short, |p| page >= p);
            if done || short || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        let count = records.len();
        Ok(Reading {
            records,
            state: newest.map(|t| json!({ "modified_after": t })),
            summary: Some(
                json!({ "resource": self.resource, "modified_after": after, "read": count,
                    "waited_out": again.count() }),
            ),
            ..Reading::default()
        })
    }
}
