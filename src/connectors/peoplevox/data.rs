//! `peoplevox.data`: a template's rows (`GetData`), page by page (`PageNo` from 1 while
//! `PageNo × ItemsPerPage < TotalCount`), each CSV row one record keyed by the header's column
//! names. With `since_field`, each run reads only rows whose date column is later than the
//! newest the last run saw (kept on the source), added to the search clause.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{json, Map, Value};

use super::soap::{operation, Account, SoapError};
use super::Peoplevox;
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::domain::error_code::ErrorCode;

/// Most pages in one run: a guard against a count that never ends.
const MAX_PAGES: u64 = 10_000;
/// How often a busy or failed answer is waited out before the run fails.
const MAX_BUSY: u32 = 5;

crate::params! {
    /// The params of `peoplevox.data`.
    pub struct DataParams {
        template: String, "The integration template to read, e.g. `Sales orders`, `Item types`, `Despatches`.";
        search_clause: Option<String>, "Only rows matching this Peoplevox search clause, e.g. `SalesOrderNumber.StartsWith(\"WEB\")` or `Status == \"Despatched\"`; all rows when unset.";
        page_size: u64 = 100, "Rows per page (`ItemsPerPage`, 1 to 1000).";
        since_field: Option<String>, "A date column of the template (e.g. `LastUpdated`): each run reads only rows later than the newest value the last run read, so scheduled runs pick up changes only.";
        since: Option<String>, "With `since_field`: the first run reads rows later than this time (`yyyy-MM-dd HH:mm:ss`); all rows when unset.";
        entity_id_path: Option<String>, "Column (or dotted path) holding each record's entity id, e.g. `SalesOrderNumber`.";
    }
}

/// `peoplevox.data`, sharing the connector's sessions and pacing.
pub struct Data {
    pub pvx: Arc<Peoplevox>,
}

/// A date as Peoplevox writes it in its templates: `yyyy-MM-dd HH:mm:ss` (imports), ISO 8601,
/// or `dd/MM/yyyy HH:mm` (reports); a date alone is its midnight.
pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.fZ",
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(d);
        }
    }
    for f in ["%Y-%m-%d", "%d/%m/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

/// A row's fingerprint: the SHA-256 of its JSON (its columns in the template's order).
fn fingerprint(row: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(row.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The search clause of a run: the source's own, and the date bound when there is one.
pub fn clause(own: Option<&str>, field: Option<&str>, after: Option<NaiveDateTime>) -> String {
    let own = own.map(str::trim).filter(|c| !c.is_empty());
    let bound = match (field, after) {
        // Inclusive: a row saved in the same second (or minute) as the last one read is read;
        // the rows read before at that instant are known by their fingerprints.
        (Some(f), Some(t)) => Some(format!(
            "{f} >= DateTime({})",
            t.format("%Y,%m,%d,%H,%M,%S")
        )),
        _ => None,
    };
    match (own, bound) {
        (Some(c), Some(b)) => format!("({c}) AND {b}"),
        (Some(c), None) => c.to_string(),
        (None, Some(b)) => b,
        (None, None) => String::new(),
    }
}

/// The rows of a page's CSV as records keyed by the header's names; an empty page (no text,
/// or a header alone) has none.
pub fn records(csv_text: &str) -> Result<Vec<Value>, String> {
    let text = csv_text.trim_start_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| format!("its header row cannot be read: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("row {} cannot be read: {e}", i + 1))?;
        let record: Map<String, Value> = names
            .iter()
            .zip(row.iter())
            .map(|(n, v)| (n.clone(), Value::String(v.to_string())))
            .collect();
        out.push(Value::Object(record));
    }
    Ok(out)
}

#[async_trait]
impl SourceFunction for Data {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        DataParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path)
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) = crate::connectors::pages::prepare::<DataParams>(
            &call,
            "Peoplevox",
            "page_size",
            1000,
            |p| p.page_size,
        )?;
        let account = Account::from_key(key)
            .map_err(|e| format!("{}: {e}", ErrorCode::Unauthorized.as_str()))?;
        let field = params
            .since_field
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        let after = match (
            field,
            state.and_then(|s| s.get("after")).and_then(Value::as_str),
        ) {
            (None, _) => None,
            (Some(_), Some(stored)) => parse_time(stored),
            (Some(_), None) => match params.since.as_deref() {
                Some(t) => Some(parse_time(t).ok_or_else(|| {
                    format!("invalid params: `since` ({t}) is not a time like 2026-11-30 08:00:00")
                })?),
                None => None,
            },
        };
        let search = clause(params.search_clause.as_deref(), field, after);
        // Rows read by the last run at its newest instant, by fingerprint: read again by the
        // inclusive bound, they are left out unless they changed.
        let seen: std::collections::HashSet<String> = state
            .and_then(|s| s.get("seen"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let size = params.page_size.to_string();
        let mut rows: Vec<Value> = Vec::new();
        let mut newest = after;
        let mut page = 1u64;
        let mut busy = 0;
        loop {
            let page_no = page.to_string();
            let body = operation(
                "GetData",
                Some("getRequest"),
                &[
                    ("TemplateName", &params.template),
                    ("PageNo", &page_no),
                    ("ItemsPerPage", &size),
                    ("SearchClause", &search),
                ],
            )
            .map_err(|e| format!("invalid params: {e}"))?;
            let reply = match self
                .pvx
                .client
                .call(call.net, &account, "GetData", &body, None)
                .await
            {
                Ok(r) => r,
                // Busy answers and the server's own failures are waited out a few times
                // within the run: the pages read so far are not lost to a passing fault.
                Err(e @ SoapError::Answered { .. }) if e.retry() && busy < MAX_BUSY => {
                    busy += 1;
                    let default = if e.code() == ErrorCode::RateLimited {
                        Duration::from_secs(15)
                    } else {
                        Duration::from_secs(2 * u64::from(busy))
                    };
                    let wait = e.retry_after().unwrap_or(default);
                    let wait = wait.min(Duration::from_secs(120));
                    tracing::info!(wait = wait.as_secs(), error = %e, "Peoplevox busy or failing; trying the page again");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    return Err(format!(
                        "{}: reading template {} page {page}: {e}",
                        e.code().as_str(),
                        params.template
                    ))
                }
            };
            let o = &reply.outcome;
            if o.response_id != 0 {
                return Err(format!(
                    "{}: Peoplevox refused to read template {}: {}",
                    ErrorCode::InvalidSchema.as_str(),
                    params.template,
                    o.detail.trim()
                ));
            }
            let items = records(&o.detail).map_err(|e| {
                format!(
                    "{}: page {page} of template {} is not CSV: {e}",
                    ErrorCode::InvalidApiResponse.as_str(),
                    params.template
                )
            })?;
            crate::connectors::pages::check(
                &call,
                "Peoplevox",
                "rows",
                o.detail.len(),
                rows.len(),
                items.len(),
            )?;
            if let Some(f) = field {
                for item in &items {
                    if let Some(t) = item.get(f).and_then(Value::as_str).and_then(parse_time) {
                        newest = newest.max(Some(t));
                    }
                }
            }
            let empty = items.is_empty();
            rows.extend(items);
            if empty || page * params.page_size >= o.total_count || page >= MAX_PAGES {
                break;
            }
            page += 1;
        }
        let time_of = |row: &Value| {
            field
                .and_then(|f| row.get(f))
                .and_then(Value::as_str)
                .and_then(parse_time)
        };
        if let Some(at) = after {
            rows.retain(|r| !(time_of(r) == Some(at) && seen.contains(&fingerprint(r))));
        }
        let mut newest_seen: Vec<String> = rows
            .iter()
            .filter(|r| newest.is_some() && time_of(r) == newest)
            .map(fingerprint)
            .collect();
        if newest == after {
            newest_seen.extend(seen.iter().cloned());
        }
        newest_seen.sort();
        newest_seen.dedup();
        let count = rows.len();
        let write = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        Ok(Reading {
            records: rows,
            state: field
                .and(newest)
                .map(|t| json!({ "after": write(t), "seen": newest_seen })),
            summary: Some(json!({
                "template": params.template,
                "search_clause": search,
                "pages": page,
                "read": count,
            })),
            ..Reading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_become_records_by_header() {
        let out = records("SalesOrderNumber,Customer\r\nSO-1,\"Doe, Jane\"\r\nSO-2,\r\n").unwrap();
        assert_eq!(
            out,
            vec![
                json!({"SalesOrderNumber": "SO-1", "Customer": "Doe, Jane"}),
                json!({"SalesOrderNumber": "SO-2", "Customer": ""})
            ]
        );
        assert!(records("").unwrap().is_empty());
        assert!(records("A,B\n").unwrap().is_empty());
        assert!(records("A,B\n1,2,3\n").is_err());
    }

    #[test]
    fn the_clause_adds_the_date_bound() {
        let t = parse_time("2026-11-30 08:05:09").unwrap();
        assert_eq!(
            clause(Some("Status == \"Open\""), Some("LastUpdated"), Some(t)),
            "(Status == \"Open\") AND LastUpdated >= DateTime(2026,11,30,08,05,09)"
        );
        assert_eq!(clause(None, Some("LastUpdated"), None), "");
        assert_eq!(clause(Some(" "), None, Some(t)), "");
        assert_eq!(
            parse_time("03/07/2017 06:03"),
            parse_time("2017-07-03 06:03:00")
        );
        assert!(parse_time("yesterday").is_none());
    }
}
