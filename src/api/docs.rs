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
  <script>
    window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#swagger-ui" });
  </script>
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
        .route("/docs", get(|| async { Html(PAGE) }))
        .route("/docs/", get(|| async { Html(PAGE) }))
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
