//! `http.fetch`: GET a URL, take the records at `records_path`, follow pagination.

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::LINK;
use serde_json::Value;

use super::with_auth;
use crate::connectors::net::Outbound;
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};
use crate::connectors::{at_path, take_at_path};
use crate::domain::error_code::ErrorCode;
use crate::ingest::decode::DecodeLimits;

/// Most pages followed in one run: a guard against a server that always says "next".
const MAX_PAGES: usize = 10_000;

crate::param_enum! {
    /// How `http.fetch` finds the next page.
    pub enum Pagination { None = "none", Link = "link", Cursor = "cursor" }
}

crate::params! {
    /// The params of `http.fetch`.
    pub struct FetchParams {
        url: String, "The first page's URL.";
        records_path: String = String::new(), "Dotted path of the record array in the response; the body itself when unset.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id.";
        pagination: Pagination = Pagination::Link, "`link` follows `Link: rel=\"next\"`; `cursor` sends `cursor_param`.";
        cursor_param: String = "cursor".into(), "Query parameter that carries the cursor.";
        cursor_path: String = "next_cursor".into(), "Dotted path of the next cursor in the response.";
        headers: Option<BTreeMap<String, String>>, "Extra request headers.";
    }
}

/// `http.fetch` as a source function.
pub struct Fetch;

#[async_trait]
impl SourceFunction for Fetch {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        FetchParams::parse(params).ok()?.entity_id_path
    }

    async fn read(&self, call: Call<'_>, _state: Option<&Value>) -> Result<Reading, String> {
        let params = FetchParams::parse(call.params)?;
        fetch(call.net, call.decode, &params, call.key)
            .await
            .map(Reading::from)
    }
}

/// Reads every record. The error is a message for the job.
async fn fetch(
    net: &Outbound,
    decode: &DecodeLimits,
    params: &FetchParams,
    key: Option<&Value>,
) -> Result<Vec<Value>, String> {
    let url = params.url.as_str();
    let records_path = params.records_path.as_str();
    let cursor_param = params.cursor_param.as_str();
    let cursor_path = params.cursor_path.as_str();

    let mut out = Vec::new();
    let first = reqwest::Url::parse(url).map_err(|e| format!("`url` is not a URL: {e}"))?;
    let mut next = Some(first.clone());
    let mut pages = 0;
    while let Some(page_url) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(format!(
                "stopped after {MAX_PAGES} pages; check the pagination settings"
            ));
        }
        let failed = |e: crate::connectors::net::CallError| {
            format!("{}: GET {page_url}: {e}", e.code().as_str())
        };
        let req = with_auth(
            net.request(reqwest::Method::GET, page_url.clone()),
            key,
            params.headers.as_ref(),
        )
        .header("accept", "application/json");
        let res = net.send(req, None).await.map_err(failed)?;
        let status = res.status();
        let link = res
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            let body = net.read_excerpt(res).await;
            let excerpt: String = body.chars().take(300).collect();
            return Err(format!("GET {page_url} answered {status}: {excerpt}"));
        }
        let body = net.read_capped(res).await.map_err(failed)?;
        let mut doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {page_url} did not answer JSON: {e}"))?;
        let records = match take_at_path(&mut doc, records_path) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None if !records_path.is_empty() => {
                return Err(format!("the answer of {page_url} has no `{records_path}`"))
            }
            Some(other) if records_path.is_empty() => vec![other],
            _ => {
                return Err(format!(
                    "`{records_path}` in the answer of {page_url} is not a list"
                ))
            }
        };
        // A page of many tiny records costs far more stored than it weighs: the same budget
        // as a pushed body of that size.
        decode
            .check_records(body.len(), records.len())
            .map_err(|e| {
                format!(
                    "{}: GET {page_url}: {e}",
                    ErrorCode::InvalidApiResponse.as_str()
                )
            })?;
        if out.len() + records.len() > net.max_records_per_run {
            return Err(format!(
                "{}: the source gave more than {} records in one run \
                 (outbound.max_records_per_run); narrow the query (a filter, or an updated-since \
                 parameter) so each run reads fewer",
                ErrorCode::InvalidApiResponse.as_str(),
                net.max_records_per_run
            ));
        }
        let empty = records.is_empty();
        out.extend(records);
        next = match params.pagination {
            Pagination::Link => match link
                .as_deref()
                .and_then(next_link)
                .and_then(|l| page_url.join(&l).ok())
            {
                // The key's credentials go with every page: a server's answer must not be
                // able to send them to another host.
                Some(u) if u.origin() != first.origin() => {
                    return Err(format!(
                        "{}: the next page of {page_url} is on another host ({u}); Wharf does not \
                         send the key's credentials there. Use a URL on the same host as `url`",
                        ErrorCode::InvalidApiResponse.as_str()
                    ))
                }
                other => other,
            },
            Pagination::Cursor if !empty => match at_path(&doc, cursor_path) {
                Some(Value::String(c)) if !c.is_empty() => {
                    let mut u = reqwest::Url::parse(url).expect("parsed above");
                    let kept: Vec<(String, String)> = u
                        .query_pairs()
                        .filter(|(k, _)| k != cursor_param)
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    u.query_pairs_mut()
                        .clear()
                        .extend_pairs(kept)
                        .append_pair(cursor_param, c);
                    Some(u)
                }
                _ => None,
            },
            _ => None,
        };
    }
    Ok(out)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link() {
        let h = r#"<https://x.myshopify.com/admin/api/2025-01/orders.json?page_info=abc>; rel="previous", <https://x.myshopify.com/admin/api/2025-01/orders.json?page_info=def>; rel="next""#;
        assert_eq!(
            next_link(h).unwrap(),
            "https://x.myshopify.com/admin/api/2025-01/orders.json?page_info=def"
        );
        assert_eq!(next_link(r#"</p?page=1>; rel="prev""#), None);
    }
}
