//! `GET /event-log`: the append-only feed of job and event status changes, oldest first, with
//! a cursor a client can follow forever without gaps or repeats.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiQuery;
use super::{AppState, Auth};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::LogPosition;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// The previous page's `next_cursor`; from the beginning when unset.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; 100 when unset.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogEntryOut {
    /// Position in the feed.
    pub id: String,
    /// JOB_STATUS_CHANGE or EVENT_STATUS_CHANGE.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the entry was recorded.
    pub created_at: Timestamp,
    /// When the change took effect.
    pub event_at: Timestamp,
    /// `from`, `to`, `stream_id`, `job_id`, `event_id` and what else the change carries.
    pub details: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub items: Vec<LogEntryOut>,
    /// Pass as `cursor` next time. Always set: at the end of the feed it is where new entries
    /// will start, so a follower keeps polling with it.
    pub next_cursor: String,
}

#[utoipa::path(get, path = "/event-log", tag = "event-log", params(LogParams),
    responses((status = 200, body = LogPage), (status = 422, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Json<LogPage>, ApiError> {
    auth.require(Permission::ReadEventLog)?;
    let after: LogPosition = match p.cursor.as_deref() {
        None | Some("") => LogPosition::default(),
        Some(c) => c.parse().map_err(|()| {
            ApiError::invalid(
                "cursor",
                "is not a cursor this API returned; start without one",
            )
        })?,
    };
    let limit = match p.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(_) => return Err(ApiError::invalid("limit", "must be between 1 and 1000")),
    };
    let rows = state.store.event_log(auth.org_id, after, limit).await?;
    let next = rows.last().map(|r| r.position).unwrap_or(after);
    let items = rows
        .into_iter()
        .map(|r| {
            let mut details = json!({
                "from": r.from_status,
                "to": r.to_status,
                "stream_id": r.stream_id,
                "job_id": r.job_id,
            });
            if let Some(e) = r.event_id {
                details["event_id"] = json!(e);
            }
            if let Value::Object(extra) = r.details {
                for (k, v) in extra {
                    if !v.is_null() {
                        details[k] = v;
                    }
                }
            }
            LogEntryOut {
                id: r.position.to_string(),
                kind: r.kind,
                created_at: r.created_at,
                event_at: r.event_at,
                details,
            }
        })
        .collect();
    Ok(Json(LogPage {
        items,
        next_cursor: next.to_string(),
    }))
}
