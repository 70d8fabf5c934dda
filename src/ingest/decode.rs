//! CSV bodies (webhook pushes and uploads) decoded into records, within limits. Every record
//! names every column, so a small body of many long column names and empty rows would become
//! records hundreds of times its size: the header row is bounded, and the records' size is
//! reckoned as they are read, so a body is refused before it grows past its budget.

use serde_json::{Map, Value};

use crate::config::IngestConfig;
use crate::error::ApiError;

/// What one body may decode to.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_columns: usize,
    pub max_header_bytes: usize,
    pub max_ratio: u64,
    pub max_bytes: u64,
}

impl From<&IngestConfig> for DecodeLimits {
    fn from(c: &IngestConfig) -> Self {
        DecodeLimits {
            max_columns: c.csv_max_columns,
            max_header_bytes: c.csv_max_header_bytes,
            max_ratio: c.max_decoded_ratio,
            max_bytes: c.max_decoded_bytes,
        }
    }
}

/// What one record costs beyond its JSON text: its event row (ids, statuses, timestamps, index
/// entries) and its bookkeeping while it is stored. A list of empty records is cheap to send and
/// costly to store.
pub const RECORD_OVERHEAD: u64 = 128;

/// What any body's records may take, however small the body: a ping of `{}` is no threat.
const BUDGET_FLOOR: u64 = 64 * 1024;

impl DecodeLimits {
    /// Most bytes the records of a body of `body_len` bytes may take.
    pub fn budget(&self, body_len: usize) -> u64 {
        (body_len as u64)
            .saturating_mul(self.max_ratio)
            .max(BUDGET_FLOOR)
            .min(self.max_bytes)
    }

    /// Refuses `count` records decoded from a body of `body_len` bytes (JSON: each record is part
    /// of the body's text) when, with what each record costs, they would take past the budget.
    pub fn check_records(&self, body_len: usize, count: usize) -> Result<(), ApiError> {
        let size = (body_len as u64).saturating_add((count as u64).saturating_mul(RECORD_OVERHEAD));
        if size > self.budget(body_len) {
            return Err(self.too_large(body_len, &format!("the body's {count} records")));
        }
        Ok(())
    }

    fn too_large(&self, body_len: usize, what: &str) -> ApiError {
        ApiError::PayloadTooLarge(format!(
            "Stored, {what} would take more than {} bytes (about {RECORD_OVERHEAD} bytes a record besides its data; at most {} times the body's {body_len} bytes and at most {} bytes: ingest.max_decoded_ratio, ingest.max_decoded_bytes). Send fewer, larger records per request, or split the body.",
            self.budget(body_len),
            self.max_ratio,
            self.max_bytes
        ))
    }
}

/// A CSV row as a record keyed by column name, and the bytes it takes: its JSON text (the
/// braces, and per cell its quoted name, the colon, its quoted value and a comma; escapes not
/// counted, so this never overstates) and what any record costs.
pub fn csv_row<'a>(names: impl Iterator<Item = &'a str>, row: &csv::StringRecord) -> (Value, u64) {
    let mut size = 2 + RECORD_OVERHEAD;
    let record: Map<String, Value> = names
        .zip(row.iter())
        .map(|(n, v)| {
            size += (n.len() + v.len() + 6) as u64;
            (n.to_string(), Value::String(v.to_string()))
        })
        .collect();
    (Value::Object(record), size)
}

/// The records of a CSV body: one object per row after the header row, keyed by column name.
pub fn csv_records(body: &[u8], limits: &DecodeLimits) -> Result<Vec<Value>, ApiError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let names = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("The CSV header row cannot be read: {e}")))?
        .clone();
    if names.len() > limits.max_columns {
        return Err(ApiError::invalid(
            "body",
            format!(
                "the CSV has {} columns; at most {} are accepted (ingest.csv_max_columns). Drop the columns you do not need.",
                names.len(),
                limits.max_columns
            ),
        ));
    }
    if let Some((i, name)) = names
        .iter()
        .enumerate()
        .find(|(_, n)| n.len() > limits.max_header_bytes)
    {
        return Err(ApiError::invalid(
            "body",
            format!(
                "the CSV's column {} has a name of {} bytes; at most {} are accepted (ingest.csv_max_header_bytes). Shorten the column names.",
                i + 1,
                name.len(),
                limits.max_header_bytes
            ),
        ));
    }
    let budget = limits.budget(body.len());
    let mut size = 0u64;
    let mut out = Vec::new();
    let mut row = csv::StringRecord::new();
    let mut line = 1;
    loop {
        line += 1;
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(ApiError::BadRequest(format!(
                    "CSV line {line}: {e}; every row needs as many columns as the header."
                )))
            }
        }
        let (record, bytes) = csv_row(names.iter(), &row);
        size += bytes;
        if size > budget {
            return Err(limits.too_large(
                body.len(),
                "the CSV's rows (each repeating every column name)",
            ));
        }
        out.push(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::from(&IngestConfig::default())
    }

    #[test]
    fn rows_become_objects_by_column_name() {
        let out = csv_records(b"sku,qty\nA-1,2\nB-2,\n", &limits()).unwrap();
        assert_eq!(
            out,
            vec![
                serde_json::json!({"sku": "A-1", "qty": "2"}),
                serde_json::json!({"sku": "B-2", "qty": ""})
            ]
        );
    }

    #[test]
    fn wide_or_long_headers_are_refused() {
        let wide = (0..501)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let e = csv_records(format!("{wide}\n").as_bytes(), &limits()).unwrap_err();
        assert!(
            e.problem().errors[0].message.contains("csv_max_columns"),
            "{e:?}"
        );
        let long = format!("id,{}\n1,2\n", "n".repeat(257));
        let e = csv_records(long.as_bytes(), &limits()).unwrap_err();
        assert!(e.problem().errors[0].message.contains("column 2"), "{e:?}");
    }

    #[test]
    fn records_past_the_ratio_are_refused_before_they_are_built() {
        let header = (0..100)
            .map(|i| format!("{i:0>200}"))
            .collect::<Vec<_>>()
            .join(",");
        let empty = ",".repeat(99);
        let body = format!("{header}\n{}", format!("{empty}\n").repeat(1000));
        let e = csv_records(body.as_bytes(), &limits()).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.to_string().contains("max_decoded_ratio"), "{e}");
        let rows = "a,b\n".to_string() + &"1,2\n".repeat(200);
        assert!(csv_records(rows.as_bytes(), &limits()).is_ok());
        let tight = DecodeLimits {
            max_bytes: 1024,
            ..limits()
        };
        let e = csv_records(rows.as_bytes(), &tight).unwrap_err();
        assert!(e.to_string().contains("max_decoded_bytes"), "{e}");
        // Ten thousand rows of small cells are ordinary.
        let rows = "sku,qty\n".to_string() + &"AB-1234,12\n".repeat(10_000);
        assert!(csv_records(rows.as_bytes(), &limits()).is_ok());
    }

    #[test]
    fn many_empty_records_cost_more_than_their_bytes() {
        let l = limits();
        assert!(l.check_records(2, 1).is_ok(), "a ping of {{}}");
        let body = format!("[{}{{}}]", "{},".repeat(99_999));
        let e = l.check_records(body.len(), 100_000).unwrap_err();
        assert!(e.to_string().contains("100000 records"), "{e}");
        let orders = 2_000 * 400;
        assert!(l.check_records(orders, 2_000).is_ok());
    }
}
