//! `peoplevox.import`: imports an output through Peoplevox's integration templates
//! (`SaveData`), one call per template in the order the output gives them, so sales orders go
//! before their items. The output is `{"template", "rows": [{column: value}]}` (written as CSV
//! with a header row) or `{"template", "csv"}` (sent as it is); several are sent in order from
//! `{"imports": [...]}` (or a list, when the output is one).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::soap::{operation, Account, SoapError};
use super::Peoplevox;
use crate::connectors::delivery::{self, refused, Steps};
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

crate::params! {
    /// The params of `peoplevox.import`.
    pub struct ImportParams {
        action: u64 = 0, "SaveData's `Action`: 0 inserts or updates by the template's key (the default), 1 imports without allocating stock, 2 deletes.";
    }
}

/// `peoplevox.import`, sharing the connector's sessions and pacing.
pub struct Import {
    pub pvx: Arc<Peoplevox>,
}

/// One template's import: its name and the CSV sent.
#[derive(Debug, PartialEq)]
pub struct Batch {
    pub template: String,
    pub csv: String,
    pub rows: usize,
}

/// A cell as Peoplevox reads it: text as it is, numbers and booleans written out, null empty.
fn cell(value: &Value, row: usize, column: &str) -> Result<String, String> {
    match value {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "row {row}'s `{column}` is a list or an object; a template's columns take text, numbers and booleans"
        )),
    }
}

/// The CSV of `rows`: a header of every column any row names (in the order first named),
/// each row under it, quoted as CSV needs.
pub fn rows_csv(rows: &[Value]) -> Result<String, String> {
    let mut columns: Vec<&str> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(row) = row.as_object() else {
            return Err(format!(
                "row {} is not an object of column names and values",
                i + 1
            ));
        };
        for name in row.keys() {
            if !columns.contains(&name.as_str()) {
                columns.push(name);
            }
        }
    }
    if columns.is_empty() {
        return Err("the rows name no column".into());
    }
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let failed = |e: csv::Error| format!("the CSV could not be written: {e}");
    out.write_record(&columns).map_err(failed)?;
    for (i, row) in rows.iter().enumerate() {
        let cells = columns
            .iter()
            .map(|c| cell(row.get(*c).unwrap_or(&Value::Null), i + 1, c))
            .collect::<Result<Vec<_>, _>>()?;
        out.write_record(&cells).map_err(failed)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| format!("the CSV could not be written: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("the CSV is not UTF-8: {e}"))
}

/// The imports an output asks for, in order; the error says what is wrong with it.
pub fn batches(body: &Value) -> Result<Vec<Batch>, String> {
    // A transformation that returns a list splits its record into events delivered apart, in
    // no set order; `{"imports": [...]}` keeps several templates in one delivery, in order.
    let items = match body.get("imports") {
        Some(Value::Array(list)) if body.get("template").is_none() => list.iter().collect(),
        Some(_) if body.get("template").is_none() => {
            return Err("the output's `imports` is not a list of template imports".into())
        }
        _ => delivery::items(body),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = if items.len() > 1 {
            format!("item {} of the output", i + 1)
        } else {
            "the output".to_string()
        };
        let template = item
            .get("template")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("{at} names no `template` (e.g. \"Sales orders\")"))?;
        let (csv, rows) = match (item.get("rows"), item.get("csv")) {
            (Some(Value::Array(rows)), None) if !rows.is_empty() => (
                rows_csv(rows).map_err(|e| format!("{at}: {e}"))?,
                rows.len(),
            ),
            (Some(Value::Array(_)), None) => {
                return Err(format!("{at} has no rows to import"));
            }
            (None, Some(Value::String(csv))) => {
                let rows = csv.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
                if rows == 0 {
                    return Err(format!("{at}'s `csv` has a header and no rows"));
                }
                (csv.clone(), rows)
            }
            _ => {
                return Err(format!(
                    "{at} needs either `rows` (a list of objects) or `csv` (text with a header row)"
                ))
            }
        };
        out.push(Batch {
            template: template.to_string(),
            csv,
            rows,
        });
    }
    Ok(out)
}

/// A call's error as the try's result.
fn failed(started: Instant, e: SoapError) -> SendResult {
    let verdict = if e.retry() {
        Verdict::Retry
    } else {
        Verdict::Final
    };
    let (status, excerpt) = match &e {
        SoapError::Answered {
            status, excerpt, ..
        } => (*status, excerpt.clone()),
        _ => (None, None),
    };
    SendResult {
        verdict,
        error_code: Some(e.code()),
        http_status: status,
        http_status_name: status
            .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
            .and_then(|s| s.canonical_reason().map(str::to_string)),
        excerpt,
        retry_after: e.retry_after(),
        message: Some(e.to_string()),
        duration: started.elapsed(),
        reference: None,
    }
}

#[async_trait]
impl DestinationFunction for Import {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<ImportParams>(started, &call, "Peoplevox") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        if params.action > 2 {
            return refused(
                started,
                ErrorCode::Unknown,
                format!(
                    "the destination's `action` is {}; Peoplevox takes 0 (insert or update), 1 (do not allocate) or 2 (delete)",
                    params.action
                ),
            );
        }
        let account = match Account::from_key(key) {
            Ok(a) => a,
            Err(e) => return refused(started, ErrorCode::Unauthorized, e),
        };
        let batches = match batches(out.body) {
            Ok(b) => b,
            Err(e) => return refused(started, ErrorCode::InvalidSchema, e),
        };
        let action = params.action.to_string();
        let mut steps = Steps::new(started);
        for batch in batches {
            let body = match operation(
                "SaveData",
                Some("saveRequest"),
                &[
                    ("TemplateName", &batch.template),
                    ("CsvData", &batch.csv),
                    ("Action", &action),
                ],
            ) {
                Ok(b) => b,
                Err(e) => {
                    return refused(
                        started,
                        ErrorCode::InvalidSchema,
                        format!("template {}: {e}", batch.template),
                    )
                }
            };
            let reply = match self
                .pvx
                .client
                .call(call.net, &account, "SaveData", &body, Some(out.timeout))
                .await
            {
                Ok(r) => r,
                Err(e) => return failed(started, e),
            };
            let o = &reply.outcome;
            let ok = o.response_id == 0;
            // A refused import is Peoplevox's judgement of the rows: the same rows would be
            // refused again. Rows it took before the failure are said, not hidden.
            let message = (!ok).then(|| {
                format!(
                    "Peoplevox imported {} of {} rows of template {}: {}",
                    o.total_count,
                    batch.rows,
                    batch.template,
                    o.detail.trim()
                )
            });
            let r = SendResult {
                verdict: if ok { Verdict::Success } else { Verdict::Final },
                error_code: (!ok).then_some(ErrorCode::InvalidSchema),
                http_status: Some(reply.status),
                http_status_name: reqwest::StatusCode::from_u16(reply.status)
                    .ok()
                    .and_then(|s| s.canonical_reason().map(str::to_string)),
                excerpt: (!reply.excerpt.is_empty()).then(|| reply.excerpt.clone()),
                retry_after: None,
                message,
                duration: started.elapsed(),
                // SaveData names no record it made: the rows carry their own numbers.
                reference: None,
            };
            if let Some(stop) = steps.step(r) {
                return stop;
            }
        }
        steps.finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_become_csv_with_a_header_quoted_as_needed() {
        let csv = rows_csv(&[
            json!({"SalesOrderNumber": "1001", "Customer": "Doe, Jane", "TotalSale": 12.5}),
            json!({"SalesOrderNumber": "1002", "Email": "a\"b@example.com", "IsPartialShipment": false}),
        ])
        .unwrap();
        assert_eq!(
            csv,
            "Customer,SalesOrderNumber,TotalSale,Email,IsPartialShipment\n\
             \"Doe, Jane\",1001,12.5,,\n\
             ,1002,,\"a\"\"b@example.com\",false\n"
        );
        let e = rows_csv(&[json!({"A": {"b": 1}})]).unwrap_err();
        assert!(e.contains("row 1's `A`"), "{e}");
    }

    #[test]
    fn imports_keep_their_order_in_one_output() {
        let out = batches(&json!({"imports": [
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "1"}]},
            {"template": "Sales order items", "rows": [{"SalesOrderNumber": "1", "ItemCode": "A"}]}
        ]}))
        .unwrap();
        let names: Vec<&str> = out.iter().map(|b| b.template.as_str()).collect();
        assert_eq!(names, ["Sales orders", "Sales order items"]);
        assert!(batches(&json!({"imports": "x"}))
            .unwrap_err()
            .contains("not a list"));
    }

    #[test]
    fn outputs_name_their_templates_in_order() {
        let out = batches(&json!([
            {"template": "Sales orders", "rows": [{"SalesOrderNumber": "1"}]},
            {"template": "Sales order items", "csv": "SalesOrderNumber,ItemCode\n1,A\n1,B\n"}
        ]))
        .unwrap();
        assert_eq!(out[0].template, "Sales orders");
        assert_eq!(out[0].csv, "SalesOrderNumber\n1\n");
        assert_eq!(out[1].rows, 2);
        for (bad, says) in [
            (json!({"rows": [{"A": 1}]}), "names no `template`"),
            (json!({"template": "X", "rows": []}), "no rows"),
            (json!({"template": "X"}), "either `rows`"),
            (
                json!({"template": "X", "csv": "A,B\n"}),
                "header and no rows",
            ),
            (
                json!([{"template": "X", "rows": [1]}]),
                "row 1 is not an object",
            ),
        ] {
            let e = batches(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
