//! HTTP plumbing shared by every part that answers requests (the API, webhook ingest, health):
//! body handling, the layers each request passes, and what request logs may show.

pub mod body;
mod health;
pub mod redact;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;

/// The HTTP application: health and metrics, plus the `routes` of the parts this process
/// serves, under the layers every request passes (ids, tracing, body limit, timeout, metrics).
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.http.body_limit_bytes;
    Router::new()
        .merge(routes)
        .merge(health::router())
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        // Outside the panic catcher, so its answer carries the headers too.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(SecurityHeaders::new(state.config.public_base_url.as_deref())),
            secure,
        ))
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

/// How long a request waits before it asks whether storage is failing; if it is, the
/// request is answered 503 (within about a further second: see `Store::reachable`).
const STORAGE_WAIT: Duration = Duration::from_millis(1000);

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
    let limit_of_bodies = body::BodyLimit(state.config.http.body_limit_bytes);
    req.extensions_mut().insert(limit_of_bodies);
    let gate = Arc::new(crate::store::CommitGate::default());
    req.extensions_mut().insert(gate.clone());
    let handler = next.run(req);
    tokio::pin!(handler);
    let store = state.store.clone();
    // A webhook push still waiting after `STORAGE_WAIT` while the database cannot be reached
    // gives up (if nothing of it can commit any more) instead of waiting out a connection
    // wait: the sender is told 503 within its own deadline and sends again later.
    let push = route.starts_with("/hooks/");
    let storage_down = async {
        if !push {
            return std::future::pending().await;
        }
        tokio::time::sleep(STORAGE_WAIT.min(limit)).await;
        loop {
            // A request that waited this long asks whether the database can be reached at
            // all (one probe a second for all of them): the first requests of an outage are
            // answered as soon as those that follow.
            if !store.reachable().await && gate.abandon() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let res = tokio::select! {
        res = &mut handler => res,
        _ = storage_down => ApiError::Busy {
            detail: "The database cannot be reached, so the push was stopped and nothing of it \
                     was stored. Send it again after the time in Retry-After."
                .into(),
            retry_after_seconds: 5,
        }
        .into_response(),
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
        body::too_large(Some(limit_of_bodies)).into_response()
    } else {
        res
    };
    let status = res.status();
    state
        .metrics
        .record_http(method, &route, status.as_u16(), started.elapsed());
    res
}

/// The policy of every response: nothing is loaded from elsewhere, nothing inline runs, no
/// page frames ours, no referrer leaves, content types are not guessed; HSTS when served over
/// https. A handler that sets a header itself (the API docs page) keeps its own.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct SecurityHeaders {
    fixed: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
}

impl SecurityHeaders {
    fn new(public_base_url: Option<&str>) -> SecurityHeaders {
        use axum::http::{header, HeaderValue};
        let mut fixed = vec![
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ];
        if public_base_url.is_some_and(|u| u.starts_with("https://")) {
            fixed.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        SecurityHeaders { fixed }
    }
}

async fn secure(State(headers): State<Arc<SecurityHeaders>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    for (name, value) in &headers.fixed {
        if !res.headers().contains_key(name) {
            res.headers_mut().insert(name.clone(), value.clone());
        }
    }
    res
}

fn is_problem(res: &Response) -> bool {
    res.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}
