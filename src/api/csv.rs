//! `Accept: text/csv` on lists: every row matching the filters (not one page), streamed a page
//! at a time so memory stays bounded, with a header row and formula-safe cells.

use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::Page;
use crate::error::ApiError;
use crate::store::ListQuery;

/// Rows read per page while exporting.
const EXPORT_PAGE: u32 = 500;

/// Whether the client asked for CSV.
pub fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let mut parts = t.split(';');
            let kind = parts.next().unwrap_or("").trim();
            // `q=0` means "not this".
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            kind.eq_ignore_ascii_case("text/csv") && !refused
        })
}

/// A cell's text: strings as they are (a leading `=`, `+`, `-`, `@`, tab or carriage return
/// gets a `'` so a spreadsheet does not run it as a formula), numbers and booleans as JSON
/// writes them, objects and arrays as JSON, null as empty.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.clone()
            }
        }
        Some(other) => other.to_string(),
    }
}

fn rows<T: Serialize>(columns: &[&str], items: &[T], header_row: bool) -> Bytes {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header_row {
        let _ = w.write_record(columns);
    }
    for item in items {
        let v = serde_json::to_value(item).unwrap_or(Value::Null);
        let _ = w.write_record(columns.iter().map(|c| cell(v.get(*c))));
    }
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// Answers a list: a JSON page, or with `Accept: text/csv`, every row as CSV with `columns`.
/// `page` reads one page for a query; it is called again with each next cursor.
pub async fn list_response<T, F, Fut>(
    headers: &HeaderMap,
    name: &str,
    columns: &'static [&'static str],
    query: ListQuery,
    page: F,
) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    F: Fn(ListQuery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Page<T>, ApiError>> + Send + 'static,
{
    if !wants_csv(headers) {
        return Ok(Json(page(query).await?).into_response());
    }
    let mut query = query;
    query.after = None;
    query.limit = EXPORT_PAGE;
    // The first page is read before answering, so a bad filter is still a problem answer.
    let first = page(query.clone()).await?;
    let head = rows(columns, &first.items, true);
    let next = first.next_cursor.clone();
    let state = (page, query, next);
    let rest = futures_util::stream::unfold(Some(state), move |state| async move {
        let (page, mut query, cursor) = state?;
        let cursor = cursor?;
        query.after = cursor.parse().ok();
        match page(query.clone()).await {
            Ok(p) => {
                let bytes = rows(columns, &p.items, false);
                let next = p.next_cursor.clone();
                Some((Ok::<_, std::io::Error>(bytes), Some((page, query, next))))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a CSV export stopped part way");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok(head) }).chain(rest);
    let mut res = Body::from_stream(body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_asked_for_by_accept_and_cells_are_formula_safe() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            wants_csv(&h)
        };
        assert!(accept("text/csv"));
        assert!(accept("application/json;q=0.5, Text/CSV; charset=utf-8"));
        assert!(!accept("application/json"));
        assert!(!accept("text/csv;q=0, application/json"));
        assert!(!wants_csv(&HeaderMap::new()));
        for (v, shown) in [
            (Value::from("=1+1"), "'=1+1"),
            (Value::from("+44 20"), "'+44 20"),
            (Value::from("-x"), "'-x"),
            (Value::from("@SUM(A1)"), "'@SUM(A1)"),
            (Value::from("plain"), "plain"),
            (Value::from(-5), "-5"),
            (Value::Null, ""),
            (serde_json::json!({"a": 1}), "{\"a\":1}"),
        ] {
            assert_eq!(cell(Some(&v)), shown);
        }
    }
}
