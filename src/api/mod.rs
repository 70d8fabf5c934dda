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
mod openapi_doc;
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
    /// The connectors, by `system.function`.
    pub connectors: Arc<crate::connectors::Registry>,
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
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts();
    openapi_doc::complete(&mut doc);
    (router, doc)
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
///
/// A request that times out is answered 503 only if nothing it wrote can still commit: a
/// handler that passes the request's [`crate::store::CommitGate`] to a write whose COMMIT is
/// already under way is answered by that commit instead.
async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = crate::metrics::method_label(req.method());
    let started = Instant::now();
    let limit = Duration::from_secs(state.config.http.request_timeout_seconds);
    let limit_of_bodies = extract::BodyLimit(state.config.http.body_limit_bytes);
    req.extensions_mut().insert(limit_of_bodies);
    let gate = Arc::new(crate::store::CommitGate::default());
    req.extensions_mut().insert(gate.clone());
    let handler = next.run(req);
    tokio::pin!(handler);
    let res = tokio::select! {
        res = &mut handler => res,
        _ = tokio::time::sleep(limit) => {
            if gate.abandon() {
                ApiError::Busy {
                    detail: format!(
                        "The request was not finished within {} s (http.request_timeout_seconds) \
                         and was stopped. A webhook push answered this way was not stored: send \
                         it again. For other changes, check whether it was applied before \
                         sending it again.",
                        limit.as_secs()
                    ),
                    retry_after_seconds: 5,
                }
                .into_response()
            } else {
                handler.await
            }
        }
    };
    // Body limits are enforced by extractors that answer in plain text; every 413 is a problem.
    let res = if res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE && !is_problem(&res) {
        extract::too_large(Some(limit_of_bodies)).into_response()
    } else {
        res
    };
    let status = res.status();
    state
        .metrics
        .record_http(method, &route, status.as_u16(), started.elapsed());
    res
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}
