//! The OpenAPI document and a Swagger UI that works offline (its files are vendored in
//! `assets/swagger-ui` and compiled into the binary).

use std::sync::Arc;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

const BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Starts Swagger UI: a file of its own, as the security policy runs no inline script.
const INIT: &str =
    "window.ui = SwaggerUIBundle({ url: \"/api/v1/openapi.json\", dom_id: \"#swagger-ui\" });\n";

/// The docs page's policy: the site's, but Swagger UI sets inline styles.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page() -> axum::response::Response {
    ([(header::CONTENT_SECURITY_POLICY, DOCS_POLICY)], Html(PAGE)).into_response()
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Wharf API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"##;

pub fn router(openapi: Arc<utoipa::openapi::OpenApi>) -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/docs", get(|| async { page() }))
        .route("/docs/", get(|| async { page() }))
        .route(
            "/docs/init.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/javascript")], INIT).into_response()
            }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/javascript")], BUNDLE).into_response()
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], CSS).into_response() }),
        )
}
