//! `/error-codes`: the catalogue of codes an ERROR/FAILED event or a failed attempt carries,
//! each with its level, what it means and what to do.

use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Auth};
use crate::domain::error_code::{ErrorCode, ErrorCodeInfo};
use crate::domain::Permission;
use crate::error::{ApiError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[utoipa::path(get, path = "/error-codes", tag = "monitoring",
    responses((status = 200, body = Vec<ErrorCodeInfo>), (status = 401, body = Problem)))]
async fn list(State(_): State<AppState>, auth: Auth) -> Result<Json<Vec<ErrorCodeInfo>>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(ErrorCode::ALL.iter().map(|c| c.info()).collect()))
}
