//! `/destinations`: a destination function of a system, with its key, params, mode and retry
//! schedule.

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
use super::extract::{double_option, ApiJson, ApiQuery, Errors, IdPath};
use super::keys::in_use;
use super::sources::{check_key, check_key_url};
use super::{AppState, Auth, Page, PageParams};
use crate::connectors;
use crate::domain::retry::Retry;
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Destination, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationIn {
    pub title: String,
    pub system: String,
    /// A destination function of the system, e.g. `http.send`.
    pub function: String,
    pub key_id: Option<Uuid>,
    /// `realtime` (default), `aggregate` or `scheduled`.
    #[serde(default = "realtime")]
    #[schema(schema_with = super::openapi_doc::lists::destination_mode)]
    pub mode: String,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub retry: Option<Retry>,
}

fn realtime() -> String {
    "realtime".into()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    pub title: Option<String>,
    pub function: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub key_id: Option<Option<Uuid>>,
    #[schema(schema_with = super::openapi_doc::lists::destination_mode)]
    pub mode: Option<String>,
    pub params: Option<Value>,
    pub retry: Option<Retry>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationOut {
    pub id: Uuid,
    pub title: String,
    pub system: String,
    pub function: String,
    pub key_id: Option<Uuid>,
    #[schema(schema_with = super::openapi_doc::lists::destination_mode)]
    pub mode: String,
    pub params: Value,
    pub retry: Retry,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A destination's retry settings (the default if unreadable).
pub fn retry_of(d: &Destination) -> Retry {
    Retry::from_stored(&d.retry.0)
}

impl From<Destination> for DestinationOut {
    fn from(d: Destination) -> Self {
        let retry = retry_of(&d);
        DestinationOut {
            id: d.id,
            title: d.title,
            system: d.system,
            function: d.function,
            key_id: d.key_id,
            mode: d.mode,
            params: d.params.0,
            retry,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DestinationFilter {
    pub system: Option<String>,
    #[param(schema_with = super::openapi_doc::lists::destination_mode)]
    pub mode: Option<String>,
}

async fn check(state: &AppState, org: Uuid, d: &Destination) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("title", &d.title);
    let Some(system) = connectors::system(&d.system) else {
        errors.add(
            "system",
            "is not a system of the library; see GET /api/v1/systems",
        );
        return errors.finish();
    };
    match system.destination(&d.function) {
        None => {
            let names: Vec<_> = system.destinations.iter().map(|f| f.name).collect();
            errors.add(
                "function",
                format!(
                    "is not a destination function of `{}`; choose one of: {}",
                    system.name,
                    if names.is_empty() {
                        "(none)".into()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
        Some(func) => errors.extend(connectors::validate(func.params, &d.params.0, "params")),
    }
    if !super::openapi_doc::lists::DESTINATION_MODES.contains(&d.mode.as_str()) {
        errors.add("mode", "must be one of: realtime, aggregate, scheduled");
    }
    match serde_json::from_value::<Retry>(d.retry.0.clone()) {
        Err(e) => errors.add("retry", e.to_string()),
        Ok(r) => {
            if r.schedule_seconds.is_empty() || r.schedule_seconds.len() > 50 {
                errors.add("retry.schedule_seconds", "must hold 1 to 50 delays");
            }
            if r.schedule_seconds.iter().any(|s| *s > 7 * 24 * 3600) {
                errors.add(
                    "retry.schedule_seconds",
                    "delays must be at most 7 days (604800 s)",
                );
            }
            if !(1..=300).contains(&r.timeout_seconds) {
                errors.add("retry.timeout_seconds", "must be between 1 and 300");
            }
        }
    }
    check_key(
        state,
        org,
        system.name,
        system.key_required,
        d.key_id,
        &mut errors,
    )
    .await?;
    errors.finish()
}

/// The columns of a destinations export.
const DESTINATION_COLUMNS: &[&str] = &[
    "id",
    "title",
    "system",
    "function",
    "key_id",
    "mode",
    "created_at",
    "updated_at",
    "params",
    "retry",
];

#[utoipa::path(get, path = "/destinations", tag = "destinations", params(PageParams, DestinationFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching destination as CSV",
        content((Page<DestinationOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<DestinationFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = filter.system {
        filters.push(("system", Val::from(v)));
    }
    if let Some(v) = filter.mode {
        filters.push(("mode", Val::from(v)));
    }
    let q = page.query(filters)?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "destinations", DESTINATION_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Destination>(org, &q).await?;
            Ok(Page::from_store(result, DestinationOut::from))
        }
    })
    .await
}

#[utoipa::path(post, path = "/destinations", tag = "destinations", request_body = DestinationIn,
    responses((status = 201, body = DestinationOut), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<DestinationIn>,
) -> Result<(StatusCode, Json<DestinationOut>), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let now = Timestamp::now();
    let d = Destination {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        title: input.title.trim().to_string(),
        system: input.system,
        function: input.function,
        key_id: input.key_id,
        mode: input.mode,
        params: DbJson(
            input
                .params
                .unwrap_or_else(|| Value::Object(Default::default())),
        ),
        retry: DbJson(serde_json::to_value(input.retry.unwrap_or_default()).expect("plain struct")),
        created_at: now,
        updated_at: now,
    };
    check(&state, auth.org_id, &d).await?;
    let mut errors = Errors::default();
    check_key_url(&state, &auth, d.key_id, &d.params.0, &mut errors).await?;
    errors.finish()?;
    let out = DestinationOut::from(d.clone());
    auth.created(&state, "destination", d.id, &out)
        .insert(&d)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/destinations/{id}", tag = "destinations",
    responses((status = 200, body = DestinationOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<DestinationOut>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(
        state
            .store
            .get::<Destination>(auth.org_id, id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/destinations/{id}", tag = "destinations", request_body = DestinationPatch,
    responses((status = 200, body = DestinationOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<DestinationPatch>,
) -> Result<Json<DestinationOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let mut d = state.store.get::<Destination>(auth.org_id, id).await?;
    let was = DestinationOut::from(d.clone());
    let before = (d.key_id, d.params.0.get("url").cloned());
    if let Some(v) = p.title {
        d.title = v.trim().to_string();
    }
    if let Some(v) = p.function {
        d.function = v;
    }
    if let Some(v) = p.key_id {
        d.key_id = v;
    }
    if let Some(v) = p.mode {
        d.mode = v;
    }
    if let Some(v) = p.params {
        d.params = DbJson(v);
    }
    if let Some(v) = p.retry {
        d.retry = DbJson(serde_json::to_value(v).expect("plain struct"));
    }
    check(&state, auth.org_id, &d).await?;
    if before != (d.key_id, d.params.0.get("url").cloned()) {
        let mut errors = Errors::default();
        check_key_url(&state, &auth, d.key_id, &d.params.0, &mut errors).await?;
        errors.finish()?;
    }
    d.updated_at = Timestamp::now();
    let out = DestinationOut::from(d.clone());
    auth.updated(&state, "destination", id, &was, &out)
        .update(auth.org_id, &d)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/destinations/{id}", tag = "destinations",
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let before = DestinationOut::from(state.store.get::<Destination>(auth.org_id, id).await?);
    auth.deleted(&state, "destination", id, &before)
        .delete::<Destination>(auth.org_id, id)
        .await
        .map_err(|e| in_use(e, "destination", "a stream"))?;
    Ok(StatusCode::NO_CONTENT)
}
