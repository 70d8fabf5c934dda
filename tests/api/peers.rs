//! Local HTTP peers for engine tests: a paginated JSON source, a broken one, and (from the
//! shared test kit) a sink that records every delivery and answers as a test scripts it.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use wharf_testkit::serve;

// The recording sink is shared with the benchmark.
pub use wharf_testkit::sink::Sink;

/// Serves `total` records `{"id": "<n>", …}` at `/orders`, `per_page` a page, linked with
/// `Link: rel="next"` like Shopify's Admin API.
pub async fn paginated_source(total: usize, per_page: usize) -> SocketAddr {
    let app = Router::new().route(
        "/orders",
        get(move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| async move {
            let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let host = headers["host"].to_str().unwrap().to_string();
            let start = page * per_page;
            let end = (start + per_page).min(total);
            let orders: Vec<Value> = (start..end)
                .map(|i| json!({"id": format!("{}", 1000 + i), "name": format!("#{}", 1000 + i), "total_price": "10.00"}))
                .collect();
            let mut res = axum::Json(json!({"orders": orders})).into_response();
            if end < total {
                let link = format!("<http://{host}/orders?page={}>; rel=\"next\"", page + 1);
                res.headers_mut().insert("link", link.parse().unwrap());
            }
            res
        }),
    );
    serve(app).await
}

/// A source that always fails.
pub async fn broken_source() -> SocketAddr {
    serve(Router::new().route(
        "/orders",
        get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database on fire") }),
    ))
    .await
}
