//! The management API under `/api/v1`, plus health, metrics and docs. One file per resource,
//! each with its request/response types, handlers and routes.

mod destinations;
mod docs;
mod entities;
mod event_log;
mod events;
pub mod extract;
mod health;
pub mod jobs;
mod keys;
mod lookup_tables;
mod organisations;
mod redact;
mod sources;
mod streams;
mod systems;
mod tokens;
mod transformations;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;
use crate::crypto::MasterKey;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::Store;

pub use destinations::{retry_of as destinations_retry, Retry};
pub use extract::{Auth, Page, PageParams};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub master_key: MasterKey,
    pub metrics: Arc<Metrics>,
    /// Wakes this process's workers when work is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// The threads that run transformations.
    pub transformer: Arc<crate::transform::Transformer>,
    /// Lookup-table snapshots transformations read.
    pub lookups: Arc<crate::transform::lookups::LookupCache>,
}

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
        .merge(webhooks::router())
        .merge(event_log::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The whole HTTP application; tests call this directly.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api_routes();
    let openapi = Arc::new(openapi);
    let body_limit = state.config.http.body_limit_bytes;
    Router::new()
        .merge(api)
        .merge(health::router())
        .merge(crate::ingest::router())
        .merge(docs::router(openapi))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %redact::loggable_uri(req.uri()), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Counts every request by route and status, and bounds how long a handler may take.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let limit = Duration::from_secs(state.config.http.request_timeout_seconds);
    let res = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::Unavailable.into_response(),
    };
    let status = res.status();
    state
        .metrics
        .record_http(&method, &route, status.as_u16(), started.elapsed());
    res
}
