//! `/transformations`: public ones (the library, read-only) and an organisation's private ones.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::csv::list_response;
use super::extract::{ApiJson, ApiQuery, Errors, IdPath};
use super::keys::in_use;
use super::{AppState, Auth, Page, PageParams};
use crate::domain::error_code::ErrorCode;
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, FieldError, Problem};
use crate::store::{Transformation, Val};
use crate::transform::{content_type, job_context, Output, Program, RunContext};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(copy))
        .routes(routes!(test))
}

pub(crate) const LANGUAGES: [&str; 2] = ["javascript", "template"];
pub(crate) const FORMATS: [&str; 4] = ["json", "csv", "xml", "text"];
/// Largest accepted transformation source.
const MAX_CODE_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformationIn {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub data_type: String,
    /// `javascript` or `template`.
    #[schema(schema_with = super::openapi_doc::lists::language)]
    pub language: String,
    /// Output format: `json`, `csv`, `xml` or `text`.
    #[schema(schema_with = super::openapi_doc::lists::format)]
    pub format: String,
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformationPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub data_type: Option<String>,
    #[schema(schema_with = super::openapi_doc::lists::language)]
    pub language: Option<String>,
    #[schema(schema_with = super::openapi_doc::lists::format)]
    pub format: Option<String>,
    pub code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransformationOut {
    pub id: Uuid,
    /// `public` (library, read-only) or `private` (your organisation's).
    #[schema(schema_with = super::openapi_doc::lists::visibility)]
    pub visibility: String,
    pub title: String,
    pub description: String,
    pub data_type: String,
    #[schema(schema_with = super::openapi_doc::lists::language)]
    pub language: String,
    #[schema(schema_with = super::openapi_doc::lists::format)]
    pub format: String,
    pub code: String,
    /// The public transformation this one was copied from.
    pub copied_from: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Transformation> for TransformationOut {
    fn from(t: Transformation) -> Self {
        TransformationOut {
            id: t.id,
            visibility: t.visibility,
            title: t.title,
            description: t.description,
            data_type: t.data_type,
            language: t.language,
            format: t.format,
            code: t.code,
            copied_from: t.copied_from,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransformationFilter {
    /// `public` or `private`; both when unset.
    #[param(schema_with = super::openapi_doc::lists::visibility)]
    pub visibility: Option<String>,
    pub data_type: Option<String>,
    #[param(schema_with = super::openapi_doc::lists::language)]
    pub language: Option<String>,
}

fn check(t: &Transformation) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("title", &t.title);
    errors.slug("data_type", &t.data_type);
    if !LANGUAGES.contains(&t.language.as_str()) {
        errors.add("language", "must be one of: javascript, template");
    }
    if !FORMATS.contains(&t.format.as_str()) {
        errors.add("format", "must be one of: json, csv, xml, text");
    }
    if t.code.trim().is_empty() {
        errors.add("code", "must not be empty");
    } else if t.code.len() > MAX_CODE_BYTES {
        errors.add("code", format!("must be at most {MAX_CODE_BYTES} bytes"));
    }
    errors.finish()
}

/// Everything `check` looks at, then the code itself: compiled (and for JavaScript its top
/// level run, under the usual limits) so that syntax errors are refused with their position
/// when the code is saved, not found on the first record.
async fn validate(state: &AppState, org: Uuid, t: &Transformation) -> Result<(), ApiError> {
    check(t)?;
    let program = Program::of(t).map_err(|e| ApiError::invalid("language", e.message))?;
    match state.transformer.check(org, program).await? {
        Ok(()) => Ok(()),
        Err(e) if e.code == ErrorCode::Unknown => {
            Err(ApiError::Internal(anyhow::anyhow!(e.message)))
        }
        Err(e) => {
            let mut field =
                FieldError::new("code", format!("{} ({})", e.describe(), e.code.as_str()));
            field.line = e.line;
            field.column = e.column;
            Err(ApiError::Invalid(vec![field]))
        }
    }
}

/// A public transformation cannot be changed; say how to get an editable one.
fn editable(t: &Transformation) -> Result<(), ApiError> {
    if t.visibility == "public" {
        return Err(ApiError::Forbidden(format!(
            "Public transformations are read-only; copy it with POST /api/v1/transformations/{}/copy and edit the copy.",
            t.id
        )));
    }
    Ok(())
}

/// The columns of a transformations export (without the code).
const TRANSFORMATION_COLUMNS: &[&str] = &[
    "id",
    "visibility",
    "title",
    "description",
    "data_type",
    "language",
    "format",
    "copied_from",
    "created_at",
    "updated_at",
];

#[utoipa::path(get, path = "/transformations", tag = "transformations", params(PageParams, TransformationFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching transformation as CSV (without its code)",
        content((Page<TransformationOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<TransformationFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = f.visibility {
        if !super::openapi_doc::lists::VISIBILITIES.contains(&v.as_str()) {
            return Err(ApiError::invalid("visibility", "must be public or private"));
        }
        filters.push(("visibility", Val::from(v)));
    }
    if let Some(v) = f.data_type {
        filters.push(("data_type", Val::from(v)));
    }
    if let Some(v) = f.language {
        filters.push(("language", Val::from(v)));
    }
    let q = page.query(filters)?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(
        &headers,
        "transformations",
        TRANSFORMATION_COLUMNS,
        q,
        move |q| {
            let store = store.clone();
            async move {
                let result = store.list::<Transformation>(org, &q).await?;
                Ok(Page::from_store(result, TransformationOut::from))
            }
        },
    )
    .await
}

#[utoipa::path(post, path = "/transformations", tag = "transformations", request_body = TransformationIn,
    responses((status = 201, body = TransformationOut), (status = 422, body = Problem),
        (status = 503, description = "The transformation threads are busy with your organisation's work; retry after `Retry-After` seconds", body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<TransformationIn>,
) -> Result<(StatusCode, Json<TransformationOut>), ApiError> {
    auth.require(Permission::WriteTransformations)?;
    let now = Timestamp::now();
    let t = Transformation {
        id: Uuid::now_v7(),
        org_id: Some(auth.org_id),
        visibility: "private".into(),
        title: input.title.trim().to_string(),
        description: input.description,
        data_type: input.data_type,
        language: input.language,
        format: input.format,
        code: input.code,
        copied_from: None,
        created_at: now,
        updated_at: now,
    };
    validate(&state, auth.org_id, &t).await?;
    let out = TransformationOut::from(t.clone());
    auth.created(&state, "transformation", t.id, &out)
        .insert(&t)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/transformations/{id}", tag = "transformations",
    responses((status = 200, body = TransformationOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<TransformationOut>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(
        state
            .store
            .get::<Transformation>(auth.org_id, id)
            .await?
            .into(),
    ))
}

#[utoipa::path(patch, path = "/transformations/{id}", tag = "transformations", request_body = TransformationPatch,
    responses((status = 200, body = TransformationOut), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 503, description = "The transformation threads are busy with your organisation's work; retry after `Retry-After` seconds", body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<TransformationPatch>,
) -> Result<Json<TransformationOut>, ApiError> {
    auth.require(Permission::WriteTransformations)?;
    let mut t = state.store.get::<Transformation>(auth.org_id, id).await?;
    let was = TransformationOut::from(t.clone());
    editable(&t)?;
    if let Some(v) = p.title {
        t.title = v.trim().to_string();
    }
    if let Some(v) = p.description {
        t.description = v;
    }
    if let Some(v) = p.data_type {
        t.data_type = v;
    }
    if let Some(v) = p.language {
        t.language = v;
    }
    if let Some(v) = p.format {
        t.format = v;
    }
    if let Some(v) = p.code {
        t.code = v;
    }
    validate(&state, auth.org_id, &t).await?;
    t.updated_at = Timestamp::now();
    let out = TransformationOut::from(t.clone());
    auth.updated(&state, "transformation", id, &was, &out)
        .update(auth.org_id, &t)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/transformations/{id}", tag = "transformations",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::WriteTransformations)?;
    let t = state.store.get::<Transformation>(auth.org_id, id).await?;
    editable(&t)?;
    let before = TransformationOut::from(t);
    auth.deleted(&state, "transformation", id, &before)
        .delete::<Transformation>(auth.org_id, id)
        .await
        .map_err(|e| in_use(e, "transformation", "a stream"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/transformations/{id}/copy", tag = "transformations",
    responses((status = 201, body = TransformationOut), (status = 404, body = Problem)))]
async fn copy(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<TransformationOut>), ApiError> {
    auth.require(Permission::WriteTransformations)?;
    let original = state.store.get::<Transformation>(auth.org_id, id).await?;
    let now = Timestamp::now();
    let t = Transformation {
        id: Uuid::now_v7(),
        org_id: Some(auth.org_id),
        visibility: "private".into(),
        title: format!("{} (copy)", original.title),
        copied_from: Some(original.id),
        created_at: now,
        updated_at: now,
        ..original
    };
    let out = TransformationOut::from(t.clone());
    let changes = super::audit::changes(None, Some(&out));
    auth.audited(
        &state,
        "transformation.copy",
        "transformation",
        Some(t.id),
        changes,
    )
    .insert(&t)
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestIn {
    /// The sample record, as the source would deliver it.
    pub payload: Value,
    /// `ctx.settings` for this run (a stream's settings); `{}` when absent.
    #[serde(default)]
    pub settings: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestOut {
    /// The output: an object, an array when the record splits into several outputs (JSON), a
    /// text (csv, xml, text formats), or `null` when the transformation skipped the record.
    pub output: Value,
    /// Why the record was skipped, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// How many outputs (events) the record becomes.
    pub outputs: usize,
    /// The content type destinations receive.
    pub content_type: &'static str,
    /// Lines the transformation logged.
    pub logs: Vec<String>,
    pub duration_ms: f64,
}

/// Runs the transformation on a sample record with your organisation's lookup tables and
/// returns what it produced, or the error (422 with `error_code`, `line`, `column`, `logs`).
/// Nothing is stored. When too many of your organisation's records already wait for a
/// transformation thread, 503 with `Retry-After`.
#[utoipa::path(post, path = "/transformations/{id}/test", tag = "transformations", request_body = TestIn,
    responses((status = 200, body = TestOut), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 503, description = "The transformation threads are busy with your organisation's (or everyone's) work; retry after `Retry-After` seconds", body = Problem)))]
async fn test(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<TestIn>,
) -> Result<Json<TestOut>, ApiError> {
    auth.require(Permission::Read)?;
    let t = state.store.get::<Transformation>(auth.org_id, id).await?;
    let settings = input.settings.unwrap_or_else(|| serde_json::json!({}));
    if !settings.is_object() {
        return Err(ApiError::invalid("settings", "must be a JSON object"));
    }
    let program = Program::of(&t).map_err(|e| ApiError::invalid("language", e.message))?;
    let lookups = state.lookups.current(&state.store, auth.org_id).await?;
    let ctx = RunContext {
        settings,
        job: job_context(Uuid::nil(), "test", Uuid::nil()),
        lookups,
    };
    let outcome = state
        .transformer
        .try_run(auth.org_id, program, input.payload, ctx)
        .await?;
    let duration_ms = (outcome.duration.as_secs_f64() * 1e6).round() / 1e3;
    match outcome.result {
        Ok(Output::Records(mut records)) => {
            let outputs = records.len();
            let output = if outputs == 1 {
                records.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(records)
            };
            Ok(Json(TestOut {
                output,
                skipped: None,
                outputs,
                content_type: content_type(&t.format),
                logs: outcome.logs,
                duration_ms,
            }))
        }
        Ok(Output::Skip(reason)) => Ok(Json(TestOut {
            output: Value::Null,
            skipped: Some(reason),
            outputs: 0,
            content_type: content_type(&t.format),
            logs: outcome.logs,
            duration_ms,
        })),
        Err(e) if e.code == ErrorCode::Unknown => {
            Err(ApiError::Internal(anyhow::anyhow!(e.message)))
        }
        Err(error) => Err(ApiError::TransformFailed {
            error,
            logs: outcome.logs,
            duration_ms,
        }),
    }
}
