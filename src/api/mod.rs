//! The management API under `/api/v1` and its documentation. One file per resource, each with
//! its request/response types, handlers and routes.

mod alerts;
pub mod audit;
pub mod csv;
mod destinations;
mod docs;
mod entities;
mod error_codes;
mod event_log;
mod events;
pub mod extract;
mod jobs;
mod keys;
mod lookup_tables;
mod openapi_doc;
mod organisations;
mod reports;
pub mod session;
mod sources;
mod streams;
mod systems;
mod tokens;
mod transformations;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use extract::{Auth, Page, PageParams};

pub use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wharf API",
        description = "Self-hosted integration platform: systems, keys, sources, transformations, destinations and streams.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api/v1` routes and their OpenAPI document, built together so they cannot disagree.
pub fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(systems::router())
        .merge(keys::router())
        .merge(sources::router())
        .merge(destinations::router())
        .merge(transformations::router())
        .merge(lookup_tables::router())
        .merge(streams::router())
        .merge(tokens::router())
        .merge(users::router())
        .merge(organisations::router())
        .merge(jobs::router())
        .merge(events::router())
        .merge(entities::router())
        .merge(error_codes::router())
        .merge(webhooks::router())
        .merge(event_log::router())
        .merge(alerts::router())
        .merge(reports::router())
        .merge(session::router())
        .merge(audit::router());
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    openapi_doc::complete(&mut doc);
    (router, doc)
}

/// The management API and its documentation, for the composition root to mount.
pub fn router() -> Router<AppState> {
    let (api, openapi) = api_routes();
    Router::new()
        .merge(api.layer(axum::middleware::from_fn(audit_guard)))
        .merge(docs::router(Arc::new(openapi)))
}

/// Writes that change nothing (a dry run), so they have no audit entry.
const UNAUDITED: [(&str, &str); 1] = [("POST", "/api/v1/transformations/{id}/test")];

/// Gives each request its audit slot, and after a change answered 2xx checks that exactly
/// one entry was written with it (a handler that forgot is a bug, logged loudly).
async fn audit_guard(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let slot = Arc::new(crate::store::AuditSlot::default());
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let res = next.run(req).await;
    let change = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if change
        && res.status().is_success()
        && !UNAUDITED.contains(&(method.as_str(), route.as_str()))
    {
        let written = slot.written();
        if written != 1 {
            tracing::error!(%method, %route, written, "a change was answered without exactly one audit entry");
        }
    }
    res
}
