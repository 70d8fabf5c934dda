//! `/streams`: source + transformation + destination, with a data type and settings.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json as DbJson;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::csv::list_response;
use super::extract::{ApiJson, ApiQuery, Errors, IdPath};
use super::{AppState, Auth, Page, PageParams};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Destination, Record, Source, Store, StoreError, Stream, Transformation, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamIn {
    pub title: String,
    /// `sales_order`, `product`, `refund`, `stock`, `shipment`, …
    pub data_type: String,
    pub source_id: Uuid,
    pub transformation_id: Uuid,
    pub destination_id: Uuid,
    #[serde(default = "yes")]
    pub active: bool,
    /// Test mode transforms but never posts.
    #[serde(default)]
    pub test_mode: bool,
    /// Free JSON object handed to transformations as `ctx.settings`.
    #[serde(default)]
    pub settings: Option<Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamPatch {
    pub title: Option<String>,
    pub data_type: Option<String>,
    pub source_id: Option<Uuid>,
    pub transformation_id: Option<Uuid>,
    pub destination_id: Option<Uuid>,
    pub active: Option<bool>,
    pub test_mode: Option<bool>,
    pub settings: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamOut {
    pub id: Uuid,
    pub title: String,
    pub data_type: String,
    pub source_id: Uuid,
    pub transformation_id: Uuid,
    pub destination_id: Uuid,
    pub active: bool,
    pub test_mode: bool,
    pub settings: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Stream> for StreamOut {
    fn from(s: Stream) -> Self {
        StreamOut {
            id: s.id,
            title: s.title,
            data_type: s.data_type,
            source_id: s.source_id,
            transformation_id: s.transformation_id,
            destination_id: s.destination_id,
            active: s.active,
            test_mode: s.test_mode,
            settings: s.settings.0,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamFilter {
    pub data_type: Option<String>,
    pub source_id: Option<Uuid>,
    pub destination_id: Option<Uuid>,
    pub transformation_id: Option<Uuid>,
    pub active: Option<bool>,
}

/// Whether `id` names a record of type `R` the organisation can see.
async fn exists<R: Record>(store: &Store, org: Uuid, id: Uuid) -> Result<Option<R>, ApiError> {
    match store.get::<R>(org, id).await {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks a stream as a whole. `stopping_only` is a change that does nothing but deactivate
/// the stream: anyone who may write streams may stop one in an incident, whatever
/// transformation it uses.
async fn check(
    state: &AppState,
    auth: &Auth,
    s: &Stream,
    stopping_only: bool,
) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("title", &s.title);
    errors.slug("data_type", &s.data_type);
    if !s.settings.0.is_object() {
        errors.add("settings", "must be a JSON object");
    }
    let store = &state.store;
    if exists::<Source>(store, auth.org_id, s.source_id)
        .await?
        .is_none()
    {
        errors.add("source_id", "names no source of your organisation");
    }
    if exists::<Destination>(store, auth.org_id, s.destination_id)
        .await?
        .is_none()
    {
        errors.add(
            "destination_id",
            "names no destination of your organisation",
        );
    }
    match exists::<Transformation>(store, auth.org_id, s.transformation_id).await? {
        None => errors.add("transformation_id", "names no transformation you can use"),
        Some(t)
            if t.visibility == "private"
                && !stopping_only
                && !auth.role.allows(Permission::WriteTransformations) =>
        {
            errors.finish()?;
            return Err(ApiError::Forbidden(format!(
                "Your role `{}` may only use public transformations; pick a public one or ask an admin.",
                auth.role.as_str()
            )));
        }
        Some(_) => {}
    }
    errors.finish()
}

/// The columns of a streams export.
const STREAM_COLUMNS: &[&str] = &[
    "id",
    "title",
    "data_type",
    "source_id",
    "transformation_id",
    "destination_id",
    "active",
    "test_mode",
    "created_at",
    "updated_at",
    "settings",
];

#[utoipa::path(get, path = "/streams", tag = "streams", params(PageParams, StreamFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching stream as CSV",
        content((Page<StreamOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<StreamFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = f.data_type {
        filters.push(("data_type", Val::from(v)));
    }
    if let Some(v) = f.source_id {
        filters.push(("source_id", Val::from(v)));
    }
    if let Some(v) = f.destination_id {
        filters.push(("destination_id", Val::from(v)));
    }
    if let Some(v) = f.transformation_id {
        filters.push(("transformation_id", Val::from(v)));
    }
    if let Some(v) = f.active {
        filters.push(("active", Val::from(v)));
    }
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(
        &headers,
        "streams",
        STREAM_COLUMNS,
        page.query(filters)?,
        move |q| {
            let store = store.clone();
            async move {
                let result = store.list::<Stream>(org, &q).await?;
                Ok(Page::from_store(result, StreamOut::from))
            }
        },
    )
    .await
}

#[utoipa::path(post, path = "/streams", tag = "streams", request_body = StreamIn,
    responses((status = 201, body = StreamOut), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<StreamIn>,
) -> Result<(StatusCode, Json<StreamOut>), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let now = Timestamp::now();
    let s = Stream {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        title: input.title.trim().to_string(),
        data_type: input.data_type,
        source_id: input.source_id,
        transformation_id: input.transformation_id,
        destination_id: input.destination_id,
        active: input.active,
        test_mode: input.test_mode,
        settings: DbJson(
            input
                .settings
                .unwrap_or_else(|| Value::Object(Default::default())),
        ),
        created_at: now,
        updated_at: now,
    };
    check(&state, &auth, &s, false).await?;
    let out = StreamOut::from(s.clone());
    auth.created(&state, "stream", s.id, &out)
        .insert(&s)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/streams/{id}", tag = "streams",
    responses((status = 200, body = StreamOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<StreamOut>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(
        state.store.get::<Stream>(auth.org_id, id).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/streams/{id}", tag = "streams", request_body = StreamPatch,
    responses((status = 200, body = StreamOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<StreamPatch>,
) -> Result<Json<StreamOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let mut s = state.store.get::<Stream>(auth.org_id, id).await?;
    let was = StreamOut::from(s.clone());
    let was_active = s.active;
    let stopping_only = p.active == Some(false)
        && p.title.is_none()
        && p.data_type.is_none()
        && p.source_id.is_none()
        && p.transformation_id.is_none()
        && p.destination_id.is_none()
        && p.test_mode.is_none()
        && p.settings.is_none();
    if let Some(v) = p.title {
        s.title = v.trim().to_string();
    }
    if let Some(v) = p.data_type {
        s.data_type = v;
    }
    if let Some(v) = p.source_id {
        s.source_id = v;
    }
    if let Some(v) = p.transformation_id {
        s.transformation_id = v;
    }
    if let Some(v) = p.destination_id {
        s.destination_id = v;
    }
    if let Some(v) = p.active {
        s.active = v;
    }
    if let Some(v) = p.test_mode {
        s.test_mode = v;
    }
    if let Some(v) = p.settings {
        s.settings = DbJson(v);
    }
    check(&state, &auth, &s, stopping_only).await?;
    s.updated_at = Timestamp::now();
    let out = StreamOut::from(s.clone());
    let store = auth.updated(&state, "stream", id, &was, &out);
    state
        .ops_with(&store, auth.org_id)
        .save_stream(&s, was_active)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/streams/{id}", tag = "streams",
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let before = StreamOut::from(state.store.get::<Stream>(auth.org_id, id).await?);
    auth.deleted(&state, "stream", id, &before)
        .delete::<Stream>(auth.org_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
