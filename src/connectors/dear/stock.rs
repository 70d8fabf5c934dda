//! `dear.stock`: what each product has in stock (`GET /ref/productavailability`), one record per
//! row (product × location × bin × batch), page by page within DEAR's limit. Stock is a
//! snapshot with no change filter, so every run reads it all.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{code_of, explain, request, Dear};
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::judge_status;

/// Most pages in one run: a guard against a count that never ends.
const MAX_PAGES: u64 = 10_000;

/// The quantities of a row, added up when rows are summed.
const QUANTITIES: [&str; 6] = [
    "OnHand",
    "Allocated",
    "Available",
    "OnOrder",
    "StockOnHand",
    "InTransit",
];

crate::params! {
    /// The params of `dear.stock`.
    pub struct StockParams {
        location: Option<String>, "Only this location's stock, by DEAR's location name (e.g. `Main Warehouse`); every location when unset.";
        sku: Option<String>, "Only this SKU's rows; every product when unset.";
        page_size: u64 = 1000, "Rows per page (1 to 1000).";
        sum_by_sku: bool = false, "Add up each SKU's rows per location (its bins and batches) into one record, its quantities summed, `Bin`, `Batch` and `ExpiryDate` null and `Rows` the number of rows added; one record per row when false.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `SKU` when unset.";
    }
}

/// `dear.stock`, sharing DEAR's pacing with the connector's other calls.
pub struct Stock {
    pub dear: Arc<Dear>,
}

/// One record per SKU and location, its quantities added up (to DEAR's four places), in the
/// order the rows came.
fn summed(rows: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    let mut sums: Vec<[f64; QUANTITIES.len()]> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    for row in rows {
        let Value::Object(row) = row else { continue };
        let field = |f: &str| {
            row.get(f)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let place = (field("SKU"), field("Location"));
        let i = *at.entry(place).or_insert_with(|| {
            let mut first = row.clone();
            for f in ["Bin", "Batch", "ExpiryDate"] {
                first.insert(f.into(), Value::Null);
            }
            out.push(first);
            sums.push([0.0; QUANTITIES.len()]);
            counts.push(0);
            out.len() - 1
        });
        for (k, f) in QUANTITIES.iter().enumerate() {
            sums[i][k] += row.get(*f).and_then(Value::as_f64).unwrap_or(0.0);
        }
        counts[i] += 1;
    }
    out.into_iter()
        .zip(sums)
        .zip(counts)
        .map(|((mut record, sums), count)| {
            for (f, sum) in QUANTITIES.iter().zip(sums) {
                record.insert((*f).into(), number(sum));
            }
            record.insert("Rows".into(), json!(count));
            Value::Object(record)
        })
        .collect()
}

/// A sum as DEAR writes quantities: whole numbers without a fraction, others to four places.
fn number(sum: f64) -> Value {
    let rounded = (sum * 10_000.0).round() / 10_000.0;
    if rounded.fract() == 0.0 && rounded.abs() < 9.0e15 {
        json!(rounded as i64)
    } else {
        json!(rounded)
    }
}

#[async_trait]
impl SourceFunction for Stock {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        let given = StockParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path);
        Some(given.unwrap_or_else(|| "SKU".into()))
    }

    async fn read(&self, call: Call<'_>, _state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) = crate::connectors::pages::prepare::<StockParams>(
            &call,
            "DEAR",
            "page_size",
            1000,
            |p| p.page_size,
        )?;
        let account = super::account(key);
        let mut rows: Vec<Value> = Vec::new();
        let mut page = 1u64;
        // The limit is answered 429 or (in older accounts) 503, with `Retry-After: 60 Seconds`
        // or none; a server error is tried again after a pause (the pages read stay good).
        let mut again = crate::connectors::pages::Again::waiting(60);
        loop {
            self.dear.limiter.turn(&account).await;
            let mut query = vec![
                ("Page", page.to_string()),
                ("Limit", params.page_size.to_string()),
            ];
            if let Some(location) = &params.location {
                query.push(("Location", location.clone()));
            }
            if let Some(sku) = &params.sku {
                query.push(("Sku", sku.clone()));
            }
            let req = request(
                call.net,
                reqwest::Method::GET,
                key,
                "/ref/productavailability",
            )
            .query(&query);
            let failed = |e: crate::connectors::net::CallError| {
                format!("{}: reading DEAR's stock: {e}", e.code().as_str())
            };
            let res = call.net.send(req, None).await.map_err(failed)?;
            let status = res.status();
            if let Some(wait) = again.wait(&res) {
                tracing::info!(%status, page, wait_s = wait.as_secs(), "DEAR asks to try the stock page again; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                let body = call.net.read_excerpt(res).await;
                let code = code_of(status.as_u16(), &body)
                    .or(judge_status(status.as_u16()).1)
                    .unwrap_or(ErrorCode::InvalidApiResponse);
                return Err(format!(
                    "{}: DEAR answered {status} for stock page {page}: {}",
                    code.as_str(),
                    explain(&body)
                ));
            }
            let body = call.net.read_capped(res).await.map_err(failed)?;
            let mut doc: Value = serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{}: DEAR's stock page {page} is not JSON: {e}",
                    ErrorCode::InvalidApiResponse.as_str()
                )
            })?;
            if let Some(e) = super::error_model(&doc) {
                let code = code_of(400, &doc.to_string()).unwrap_or(ErrorCode::InvalidApiResponse);
                return Err(format!(
                    "{}: DEAR refused stock page {page}: {e}",
                    code.as_str()
                ));
            }
            let total = doc.get("Total").and_then(Value::as_u64);
            let items = match doc.get_mut("ProductAvailabilityList").map(Value::take) {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None if total == Some(0) => Vec::new(),
                _ => {
                    return Err(format!(
                        "{}: DEAR's stock page {page} has no `ProductAvailabilityList`",
                        ErrorCode::InvalidApiResponse.as_str()
                    ))
                }
            };
            crate::connectors::pages::check(
                &call,
                "DEAR",
                "stock rows",
                body.len(),
                rows.len(),
                items.len(),
            )?;
            let short = (items.len() as u64) < params.page_size;
            // The filters are checked here too: DEAR's are documented, not promised.
            rows.extend(items.into_iter().filter(|row| {
                let is = |field: &str, want: &Option<String>| {
                    want.as_deref()
                        .is_none_or(|w| row.get(field).and_then(Value::as_str) == Some(w))
                };
                is("SKU", &params.sku) && is("Location", &params.location)
            }));
            let done = total.map_or(short, |t| page * params.page_size >= t);
            if done || short || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        let read = rows.len();
        let records = if params.sum_by_sku {
            summed(rows)
        } else {
            rows
        };
        Ok(Reading {
            summary: Some(json!({
                "rows": read,
                "records": records.len(),
                "location": params.location,
                "sku": params.sku,
            })),
            records,
            ..Reading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_sku_are_summed_per_location() {
        let rows = vec![
            json!({"SKU": "A", "Location": "Main", "Bin": "B1", "Batch": null, "OnHand": 2, "Allocated": 1, "Available": 1.1, "OnOrder": 0, "StockOnHand": 2, "InTransit": 0}),
            json!({"SKU": "B", "Location": "Main", "Bin": null, "Batch": "L7", "OnHand": 5, "Allocated": 0, "Available": 5, "OnOrder": 0, "StockOnHand": 5, "InTransit": 0}),
            json!({"SKU": "A", "Location": "Main", "Bin": "B2", "Batch": null, "OnHand": 3, "Allocated": 0, "Available": 2.2, "OnOrder": 4, "StockOnHand": 3, "InTransit": 1}),
            json!({"SKU": "A", "Location": "Shop", "Bin": null, "Batch": null, "OnHand": 1, "Allocated": 0, "Available": 1, "OnOrder": 0, "StockOnHand": 1, "InTransit": 0}),
        ];
        assert_eq!(
            summed(rows),
            vec![
                json!({"SKU": "A", "Location": "Main", "Bin": null, "Batch": null, "ExpiryDate": null, "OnHand": 5, "Allocated": 1, "Available": 3.3, "OnOrder": 4, "StockOnHand": 5, "InTransit": 1, "Rows": 2}),
                json!({"SKU": "B", "Location": "Main", "Bin": null, "Batch": null, "ExpiryDate": null, "OnHand": 5, "Allocated": 0, "Available": 5, "OnOrder": 0, "StockOnHand": 5, "InTransit": 0, "Rows": 1}),
                json!({"SKU": "A", "Location": "Shop", "Bin": null, "Batch": null, "ExpiryDate": null, "OnHand": 1, "Allocated": 0, "Available": 1, "OnOrder": 0, "StockOnHand": 1, "InTransit": 0, "Rows": 1}),
            ]
        );
    }
}
