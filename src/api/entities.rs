//! `/entities`: the business objects events are about, each with its last status (the
//! outcome of the latest event about it that finished) and the history of every event about
//! it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::csv::list_response;
use super::events::EventOut;
use super::extract::{ApiQuery, IdPath};
use super::jobs::{descending, sort_by};
use super::{AppState, Auth, Page, PageParams};
use crate::domain::{EventStatus, Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Entity, Event, ListQuery, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntityOut {
    pub id: Uuid,
    pub data_type: String,
    /// The object's own id, e.g. an order name `#1001`.
    pub entity_id: String,
    /// The outcome of the latest event about it that finished (an entity is listed once an
    /// event about it has finished; open events are in `/events`).
    #[schema(schema_with = super::openapi_doc::lists::event_status)]
    pub last_status: String,
    /// success, warning or error.
    pub level: &'static str,
    pub last_event_id: Option<Uuid>,
    pub last_error_code: Option<String>,
    pub last_message: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Every event about the entity, newest first (only on `GET /entities/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<EventOut>>,
}

impl From<Entity> for EntityOut {
    fn from(e: Entity) -> Self {
        EntityOut {
            level: EventStatus::parse(&e.last_status)
                .map(EventStatus::level)
                .unwrap_or("warning"),
            id: e.id,
            data_type: e.data_type,
            entity_id: e.entity_id,
            last_status: e.last_status,
            last_event_id: e.last_event_id,
            last_error_code: e.last_error_code,
            last_message: e.last_message,
            created_at: e.created_at,
            updated_at: e.updated_at,
            history: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntityFilter {
    pub data_type: Option<String>,
    pub entity_id: Option<String>,
    /// Entities whose last message contains this text (any case).
    pub message: Option<String>,
    /// Last status, e.g. FAILED.
    #[param(schema_with = super::openapi_doc::lists::event_status)]
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub updated_after: Option<Timestamp>,
    pub updated_before: Option<Timestamp>,
    /// `desc` (newest first, default) or `asc`.
    #[param(schema_with = super::openapi_doc::lists::sort_order)]
    pub order: Option<String>,
    /// `created` (default) or `updated`.
    pub sort: Option<String>,
}

#[utoipa::path(get, path = "/entities", tag = "entities", params(PageParams, EntityFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching entity as CSV",
        content((Page<EntityOut> = "application/json"), (String = "text/csv"))),
        (status = 422, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<EntityFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = f.data_type {
        filters.push(("data_type", Val::from(v)));
    }
    if let Some(v) = f.entity_id {
        filters.push(("entity_id", Val::from(v)));
    }
    if let Some(v) = f.status {
        filters.push(("last_status", Val::from(v)));
    }
    if let Some(v) = f.error_code {
        filters.push(("last_error_code", Val::from(v)));
    }
    if let Some(v) = f.message {
        filters.push((
            "LOWER(last_message) LIKE",
            Val::from(format!("%{}%", v.to_lowercase())),
        ));
    }
    if let Some(v) = f.updated_after {
        filters.push(("updated_at >=", Val::from(v)));
    }
    if let Some(v) = f.updated_before {
        filters.push(("updated_at <", Val::from(v)));
    }
    let mut q = page.query(filters)?;
    q.desc = descending(f.order.as_deref())?;
    sort_by(&mut q, f.sort.as_deref(), &[("updated", "updated_at")])?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "entities", ENTITY_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Entity>(org, &q).await?;
            Ok(Page::from_store(result, EntityOut::from))
        }
    })
    .await
}

/// The columns of an entities export.
const ENTITY_COLUMNS: &[&str] = &[
    "id",
    "data_type",
    "entity_id",
    "last_status",
    "level",
    "last_event_id",
    "last_error_code",
    "last_message",
    "created_at",
    "updated_at",
];

/// Most events shown in an entity's history.
const HISTORY: u32 = 200;

#[utoipa::path(get, path = "/entities/{id}", tag = "entities",
    responses((status = 200, body = EntityOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<EntityOut>, ApiError> {
    auth.require(Permission::Read)?;
    let entity = state.store.get::<Entity>(auth.org_id, id).await?;
    let q = ListQuery {
        filters: vec![
            ("data_type", Val::from(entity.data_type.clone())),
            ("entity_id", Val::from(entity.entity_id.clone())),
        ],
        after: None,
        limit: HISTORY,
        desc: true,
        sort: None,
    };
    let events = state.store.list::<Event>(auth.org_id, &q).await?;
    let mut out = EntityOut::from(entity);
    out.history = Some(events.items.into_iter().map(EventOut::from).collect());
    Ok(Json(out))
}
