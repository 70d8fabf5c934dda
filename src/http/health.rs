//! Liveness, readiness and metrics: no token needed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

/// How long `/readyz` waits for storage to answer.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Storage answers within a second; otherwise 503 (a load balancer's probe must not hang on a
/// connection wait while storage is down).
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // Postgres: a connection of its own (not a wait for the pool's, which a busy but healthy
    // node may keep for a while); SQLite: a query.
    let ready = match state.store.backend() {
        crate::store::Backend::Postgres => state.store.reachable().await,
        crate::store::Backend::Sqlite => matches!(
            tokio::time::timeout(READY_WITHIN, state.store.ping()).await,
            Ok(Ok(()))
        ),
    };
    if !ready {
        return Err(ApiError::Unavailable);
    }
    Ok((StatusCode::OK, Json(json!({"status": "ready"}))))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    if let Some(placed) = state.store.handoff_placed() {
        text.push_str(&crate::metrics::handoff_text(placed));
    }
    text.push_str(&state.metrics.render_store(&state.store).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
