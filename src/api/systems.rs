//! `/systems`: the read-only system library.

use axum::extract::{Path, State};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Auth, Page};
use crate::connectors::{self, System};
use crate::domain::Permission;
use crate::error::{ApiError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}

#[utoipa::path(get, path = "/systems", tag = "systems",
    responses((status = 200, body = Page<System>), (status = 401, body = Problem)))]
async fn list(State(_): State<AppState>, auth: Auth) -> Result<Json<Page<System>>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(Page {
        items: connectors::SYSTEMS.to_vec(),
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/systems/{name}", tag = "systems",
    responses((status = 200, body = System), (status = 404, body = Problem)))]
async fn get(
    State(_): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<Json<System>, ApiError> {
    auth.require(Permission::Read)?;
    connectors::system(&name)
        .cloned()
        .map(Json)
        .ok_or(ApiError::NotFound("system"))
}
