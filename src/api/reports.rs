//! `/reports/summary`: what each stream and data type received and what became of it.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::ApiQuery;
use super::{AppState, Auth};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::reports::{self, Report};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// Start of the range (jobs and events created at or after it); default: a day before `to`.
    pub from: Option<Timestamp>,
    /// End of the range (created before it); default: now.
    pub to: Option<Timestamp>,
    /// Only this stream.
    pub stream_id: Option<Uuid>,
}

#[utoipa::path(get, path = "/reports/summary", tag = "monitoring", params(SummaryParams),
    responses((status = 200, body = Report), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn summary(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<SummaryParams>,
) -> Result<Json<Report>, ApiError> {
    auth.require(Permission::Read)?;
    let to = p.to.unwrap_or_else(Timestamp::now);
    let from = p
        .from
        .unwrap_or_else(|| Timestamp::from_datetime(to.0 - chrono::Duration::days(1)));
    if from >= to {
        return Err(ApiError::invalid("from", "must be before `to`"));
    }
    if let Some(id) = p.stream_id {
        state
            .store
            .get::<crate::store::Stream>(auth.org_id, id)
            .await?;
    }
    Ok(Json(
        reports::summary(&state.store, auth.org_id, from, to, p.stream_id).await?,
    ))
}
