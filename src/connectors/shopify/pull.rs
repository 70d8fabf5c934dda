//! `shopify.orders` and `shopify.products`: every record updated since the last run, read
//! through the GraphQL Admin API sorted by `UPDATED_AT`, page by page with cursors, within the
//! store's query budget. The watermark is inclusive (`updated_at:>=`) and remembers the ids
//! read at its instant, so a record saved in the same second as the last one read is neither
//! missed nor read twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::graphql::{Failure, Graph};
use crate::connectors::params::Params;
use crate::connectors::registry::{Call, Reading, SourceFunction};

/// Most pages in one run: a guard against a cursor that never ends.
const MAX_PAGES: u64 = 10_000;
/// Nested records (an order's lines, a product's variants) read with each record: each
/// multiplies the page's cost, so few; the rest are read record by record.
const NESTED_FIRST: u64 = 10;
/// Nested records per request when reading the rest of one record's.
const NESTED_PAGE: u64 = 50;
/// Most nested records one record may have (Shopify's own limit on an order's lines is far
/// below it).
const MAX_NESTED: usize = 100_000;
/// How long one run may wait for the store's query budget, in all.
const PULL_WAIT: Duration = Duration::from_secs(120);

crate::params! {
    /// The params of `shopify.orders` and `shopify.products`.
    pub struct PullParams {
        page_size: u64 = 5, "Records per page (1 to 250). Each record costs its fields and first lines or variants in Shopify's query budget (at most 1,000 a query): a page too costly is halved until it fits.";
        since: Option<String>, "The first run reads records updated at or after this time (ISO 8601, e.g. `2025-01-01T00:00:00Z`); later runs go on from the last record read. All records when unset.";
        query: Option<String>, "More of Shopify's search syntax, joined with AND, e.g. `financial_status:paid` or `status:active`.";
        entity_id_path: Option<String>, "Dotted path of each record's entity id; `name` (`#1001`) for orders and `handle` for products when unset.";
    }
}

/// What is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resource {
    Orders,
    Products,
}

const MONEY: &str = "shopMoney { amount currencyCode }";

fn address() -> &'static str {
    "name firstName lastName company address1 address2 city province provinceCode zip country countryCodeV2 phone"
}

impl Resource {
    fn plural(self) -> &'static str {
        match self {
            Resource::Orders => "orders",
            Resource::Products => "products",
        }
    }

    fn single(self) -> &'static str {
        match self {
            Resource::Orders => "order",
            Resource::Products => "product",
        }
    }

    /// The nested connection read in full with each record.
    fn nested(self) -> &'static str {
        match self {
            Resource::Orders => "lineItems",
            Resource::Products => "variants",
        }
    }

    fn fields(self) -> String {
        match self {
            Resource::Orders => format!(
                "id legacyResourceId name email phone createdAt updatedAt processedAt cancelledAt \
                 cancelReason closedAt displayFinancialStatus displayFulfillmentStatus currencyCode \
                 note tags \
                 subtotalPriceSet {{ {MONEY} }} totalPriceSet {{ {MONEY} }} \
                 totalTaxSet {{ {MONEY} }} totalShippingPriceSet {{ {MONEY} }} \
                 totalDiscountsSet {{ {MONEY} }} \
                 customer {{ id email firstName lastName phone }} \
                 shippingAddress {{ {a} }} billingAddress {{ {a} }} \
                 shippingLines(first: 5) {{ nodes {{ title code source originalPriceSet {{ {MONEY} }} }} }}",
                a = address()
            ),
            Resource::Products => "id legacyResourceId title handle status vendor productType tags \
                 createdAt updatedAt publishedAt"
                .to_string(),
        }
    }

    fn nested_fields(self) -> String {
        match self {
            Resource::Orders => format!(
                "id sku name title variantTitle quantity currentQuantity vendor requiresShipping \
                 originalUnitPriceSet {{ {MONEY} }} discountedUnitPriceSet {{ {MONEY} }} \
                 variant {{ id }} product {{ id }}"
            ),
            Resource::Products => {
                "id sku title price barcode inventoryQuantity inventoryItem { id }".to_string()
            }
        }
    }

    fn list_query(self) -> String {
        format!(
            "query Pull($first: Int!, $after: String, $query: String) {{\n  {root}(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{\n    pageInfo {{ hasNextPage endCursor }}\n    nodes {{ {fields} {nested}(first: {NESTED_FIRST}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {nested_fields} }} }} }}\n  }}\n}}",
            root = self.plural(),
            fields = self.fields(),
            nested = self.nested(),
            nested_fields = self.nested_fields(),
        )
    }

    fn more_query(self) -> String {
        format!(
            "query More($id: ID!, $first: Int!, $after: String) {{\n  {single}(id: $id) {{\n    {nested}(first: $first, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {nested_fields} }} }}\n  }}\n}}",
            single = self.single(),
            nested = self.nested(),
            nested_fields = self.nested_fields(),
        )
    }
}

/// A pull of one resource.
pub struct Pull {
    pub resource: Resource,
}

/// Shopify's search filter for a run: the watermark, and the params' own terms.
fn search(after: Option<&str>, extra: Option<&str>) -> Option<String> {
    let mut terms = Vec::new();
    if let Some(t) = after {
        terms.push(format!("updated_at:>='{}'", t.replace('\'', "")));
    }
    if let Some(q) = extra.map(str::trim).filter(|q| !q.is_empty()) {
        terms.push(format!("({q})"));
    }
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

fn failed(f: &Failure, what: &str) -> String {
    format!("{}: {}", f.code().as_str(), f.describe(what))
}

/// The `nodes` and `pageInfo` of a connection in `data`.
fn connection(
    data: &mut Value,
    path: &str,
    what: &str,
) -> Result<(Vec<Value>, Option<String>), String> {
    let invalid = crate::domain::error_code::ErrorCode::InvalidApiResponse.as_str();
    let conn = data
        .pointer_mut(path)
        .ok_or_else(|| format!("{invalid}: Shopify's answer to {what} has no `{path}`"))?;
    let next = (conn.pointer("/pageInfo/hasNextPage") == Some(&Value::Bool(true)))
        .then(|| {
            conn.pointer("/pageInfo/endCursor")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten();
    match conn.get_mut("nodes").map(Value::take) {
        Some(Value::Array(nodes)) => Ok((nodes, next)),
        _ => Err(format!(
            "{invalid}: Shopify's answer to {what} has no `nodes` list"
        )),
    }
}

#[async_trait]
impl SourceFunction for Pull {
    fn entity_id_path(&self, params: &Value) -> Option<String> {
        let given = PullParams::parse(params)
            .ok()
            .and_then(|p| p.entity_id_path);
        Some(given.unwrap_or_else(|| {
            match self.resource {
                Resource::Orders => "name",
                Resource::Products => "handle",
            }
            .to_string()
        }))
    }

    async fn read(&self, call: Call<'_>, state: Option<&Value>) -> Result<Reading, String> {
        let (params, key) = crate::connectors::pages::prepare::<PullParams>(
            &call,
            "Shopify",
            "page_size",
            250,
            |p| p.page_size,
        )?;
        let mark = state
            .and_then(|s| s.get("updated_at_min"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let seen: HashSet<String> = state
            .and_then(|s| s.get("ids"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let after = mark.clone().or(params.since.clone());
        let filter = search(after.as_deref(), params.query.as_deref());
        let resource = self.resource.plural();
        let mut graph = Graph::new(call.net, key, None, PULL_WAIT).retrying_server_errors(3);
        let mut records: Vec<Value> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0u64;
        let mut first = params.page_size;
        // Why the run stopped before the end, when it did: the rest is read by the next run,
        // from the watermark of what this one read (records come oldest first).
        let mut cut_short: Option<String> = None;
        loop {
            pages += 1;
            let what = format!("reading {resource} (page {pages})");
            let vars = json!({"first": first, "after": cursor, "query": filter});
            let mut data = match graph.run(&self.resource.list_query(), vars).await {
                Ok(data) => data,
                Err(Failure::TooCostly { .. }) if first > 1 => {
                    first = first.div_ceil(2);
                    pages -= 1;
                    continue;
                }
                Err(f @ Failure::Throttled { .. }) if !records.is_empty() => {
                    cut_short = Some(f.describe(&what));
                    break;
                }
                Err(f) => return Err(failed(&f, &what)),
            };
            let (nodes, next) = connection(&mut data, &format!("/{resource}"), &what)?;
            if !records.is_empty() && records.len() + nodes.len() > call.net.max_records_per_run {
                cut_short = Some(format!(
                    "more than {} {resource} changed (outbound.max_records_per_run)",
                    call.net.max_records_per_run
                ));
                break;
            }
            crate::connectors::pages::check(
                &call,
                "Shopify",
                resource,
                graph.last_bytes,
                records.len(),
                nodes.len(),
            )?;
            for mut node in nodes {
                self.complete(&mut graph, &mut node).await?;
                let id = node
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let updated = node
                    .get("updatedAt")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if mark.as_deref() == Some(updated) && seen.contains(&id) {
                    continue;
                }
                // A record saved again while the run pages moves to the end: keep its latest.
                match at.get(&id) {
                    Some(&i) => records[i] = node,
                    None => {
                        at.insert(id, records.len());
                        records.push(node);
                    }
                }
            }
            match next {
                Some(c) if pages < MAX_PAGES => cursor = Some(c),
                _ => break,
            }
        }
        let newest = records
            .iter()
            .filter_map(|r| r.get("updatedAt").and_then(Value::as_str))
            .max()
            .map(str::to_string);
        let next_state = newest.map(|t| {
            let mut ids: Vec<String> = records
                .iter()
                .filter(|r| r.get("updatedAt").and_then(Value::as_str) == Some(t.as_str()))
                .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_string))
                .collect();
            if mark.as_deref() == Some(t.as_str()) {
                ids.extend(seen.iter().cloned());
                ids.sort();
                ids.dedup();
            }
            json!({"updated_at_min": t, "ids": ids})
        });
        let count = records.len();
        Ok(Reading {
            records,
            state: next_state,
            summary: Some(json!({
                "resource": resource,
                "updated_at_min": after,
                "read": count,
                "pages": pages,
                "page_size": first,
                "more": cut_short,
                "throttled": graph.waits,
                "throttled_ms": graph.waited.as_millis() as u64,
            })),
            ..Reading::default()
        })
    }
}

impl Pull {
    /// Reads the rest of a record's nested connection (lines past the first page) and puts it
    /// in the record as a list.
    async fn complete(&self, graph: &mut Graph<'_>, node: &mut Value) -> Result<(), String> {
        let nested = self.resource.nested();
        let id = node
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let what = format!("reading the {nested} of {id}");
        let Some(conn) = node.get_mut(nested) else {
            return Ok(());
        };
        let mut holder = json!({ nested: conn.take() });
        let (mut all, mut next) = connection(&mut holder, &format!("/{nested}"), &what)?;
        while let Some(cursor) = next {
            if all.len() > MAX_NESTED {
                return Err(format!(
                    "{}: {id} has more than {} {nested}",
                    crate::domain::error_code::ErrorCode::InvalidApiResponse.as_str(),
                    MAX_NESTED
                ));
            }
            let vars = json!({"id": id, "first": NESTED_PAGE, "after": cursor});
            let mut data = graph
                .run(&self.resource.more_query(), vars)
                .await
                .map_err(|f| failed(&f, &what))?;
            let (more, after) = connection(
                &mut data,
                &format!("/{}/{nested}", self.resource.single()),
                &what,
            )?;
            all.extend(more);
            next = after;
        }
        node[nested] = Value::Array(all);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_joins_the_watermark_and_the_params_terms() {
        assert_eq!(
            search(Some("2025-01-01T00:00:00Z"), Some("financial_status:paid")).as_deref(),
            Some("updated_at:>='2025-01-01T00:00:00Z' AND (financial_status:paid)")
        );
        assert_eq!(search(None, Some("  ")), None);
        assert_eq!(
            search(Some("x'y"), None).as_deref(),
            Some("updated_at:>='xy'")
        );
    }

    #[test]
    fn queries_ask_for_the_nested_records_and_page_info() {
        let q = Resource::Orders.list_query();
        assert!(
            q.contains("orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT)")
        );
        assert!(q.contains("lineItems(first: 10) { pageInfo { hasNextPage endCursor }"));
        let q = Resource::Products.more_query();
        assert!(q.contains("product(id: $id)"));
        assert!(q.contains("variants(first: $first, after: $after)"));
    }
}
