//! `/jobs` and `POST /streams/{id}/run`: runs of streams.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::set_fields;
use super::csv::list_response;
use super::extract::{optional_json, parse_json, ApiQuery, IdPath};
use super::{AppState, Auth, Page, PageParams};
use crate::domain::{JobStatus, Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Job, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run))
        .routes(routes!(upload))
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(replicate))
        .routes(routes!(abort))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIn {
    /// Settings for this run, handed to the transformation beside the stream's.
    pub settings: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    pub id: Uuid,
    pub stream_id: Uuid,
    /// PENDING, PROCESSING, FINISHED, FINISHED_WITH_ISSUES or FAILED.
    pub status: JobStatus,
    /// manual, scheduled, webhook, upload or replicate.
    #[schema(schema_with = super::openapi_doc::lists::job_trigger)]
    pub trigger: String,
    /// Why the job failed, when it did.
    pub message: Option<String>,
    pub original_job_id: Option<Uuid>,
    pub settings: Value,
    /// Events of the job by status.
    pub counts: BTreeMap<String, i64>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    pub stream_id: Option<Uuid>,
    #[param(schema_with = super::openapi_doc::lists::job_status)]
    pub status: Option<String>,
    #[param(schema_with = super::openapi_doc::lists::job_trigger)]
    pub trigger: Option<String>,
    /// Only jobs created at or after this time.
    pub created_after: Option<Timestamp>,
    /// Only jobs created before this time.
    pub created_before: Option<Timestamp>,
    /// `desc` (newest first, default) or `asc`.
    #[param(schema_with = super::openapi_doc::lists::sort_order)]
    pub order: Option<String>,
    /// `created` (default), `updated` or `finished` (finished jobs only).
    pub sort: Option<String>,
}

pub async fn job_out(state: &AppState, j: Job) -> Result<JobOut, ApiError> {
    let counts = state.store.job_counts(j.id).await?;
    Ok(job_with_counts(j, counts))
}

/// A job as the API shows it, with its events counted by status (every status listed).
fn job_with_counts(j: Job, found: Vec<(crate::domain::EventStatus, i64)>) -> JobOut {
    let mut counts: BTreeMap<String, i64> = crate::domain::EventStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (status, n) in found {
        counts.insert(status.as_str().to_string(), n);
    }
    JobOut {
        id: j.id,
        stream_id: j.stream_id,
        status: j.status,
        trigger: j.trigger,
        message: j.message,
        original_job_id: j.original_job_id,
        settings: j.settings.0,
        counts,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        updated_at: j.updated_at,
    }
}

/// `asc`/`desc` of a list; newest first unless asked otherwise.
/// Sorts `q` by the column a list's `sort` names, from the ones it offers as (name, column);
/// `created` is the id order (ids are time-ordered), which needs no column. A cursor of another
/// order cannot page it.
pub fn sort_by(
    q: &mut crate::store::ListQuery,
    sort: Option<&str>,
    offered: &[(&str, &'static str)],
) -> Result<(), ApiError> {
    q.sort = sort_column(sort, offered)?;
    let cursor_sort = q
        .after
        .as_ref()
        .map(|c| c.at.as_ref().map(|(col, _)| col.as_str()));
    if cursor_sort.is_some_and(|of| of != q.sort) {
        return Err(ApiError::invalid(
            "cursor",
            "is from a list in another order; start without one",
        ));
    }
    Ok(())
}

fn sort_column(
    sort: Option<&str>,
    offered: &[(&str, &'static str)],
) -> Result<Option<&'static str>, ApiError> {
    match sort {
        None | Some("created") => Ok(None),
        Some(name) => offered
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, col)| Some(*col))
            .ok_or_else(|| {
                let names: Vec<&str> = std::iter::once("created")
                    .chain(offered.iter().map(|(n, _)| *n))
                    .collect();
                ApiError::invalid("sort", format!("must be one of: {}", names.join(", ")))
            }),
    }
}

pub fn descending(order: Option<&str>) -> Result<bool, ApiError> {
    match order {
        None | Some("desc") => Ok(true),
        Some("asc") => Ok(false),
        Some(_) => Err(ApiError::invalid("order", "must be asc or desc")),
    }
}

#[utoipa::path(post, path = "/streams/{id}/run", tag = "jobs", request_body(content = Option<RunIn>),
    responses((status = 202, body = Accepted), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn run(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let input: RunIn = optional_json(&body)?;
    let changes = set_fields(&[("settings", json!(input.settings))]);
    let store = auth.audited(&state, "stream.run", "stream", Some(id), changes);
    let job = state
        .ops_with(&store, auth.org_id)
        .run_stream(id, input.settings)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { job_id: job.id })))
}

/// The columns of a jobs export.
const JOB_COLUMNS: &[&str] = &[
    "id",
    "stream_id",
    "status",
    "trigger",
    "message",
    "original_job_id",
    "counts",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "settings",
];

#[utoipa::path(get, path = "/jobs", tag = "jobs", params(PageParams, JobFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching job as CSV",
        content((Page<JobOut> = "application/json"), (String = "text/csv"))),
        (status = 422, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<JobFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = f.stream_id {
        filters.push(("stream_id", Val::from(v)));
    }
    if let Some(v) = f.status {
        if JobStatus::parse(&v).is_none() {
            return Err(ApiError::invalid(
                "status",
                "must be PENDING, PROCESSING, FINISHED, FINISHED_WITH_ISSUES or FAILED",
            ));
        }
        filters.push(("status", Val::from(v)));
    }
    if let Some(v) = f.trigger {
        filters.push(("trigger", Val::from(v)));
    }
    if let Some(v) = f.created_after {
        filters.push(("created_at >=", Val::from(v)));
    }
    if let Some(v) = f.created_before {
        filters.push(("created_at <", Val::from(v)));
    }
    let mut q = page.query(filters)?;
    q.desc = descending(f.order.as_deref())?;
    sort_by(
        &mut q,
        f.sort.as_deref(),
        &[("updated", "updated_at"), ("finished", "finished_at")],
    )?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "jobs", JOB_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Job>(org, &q).await?;
            // The page's counts in one query, not one per job.
            let ids: Vec<Uuid> = result.items.iter().map(|j| j.id).collect();
            let mut counts = store.jobs_counts(&ids).await?;
            let items = result
                .items
                .into_iter()
                .map(|j| {
                    let found = counts.remove(&j.id).unwrap_or_default();
                    job_with_counts(j, found)
                })
                .collect();
            Ok(Page {
                items,
                next_cursor: result.next_cursor.map(|c| c.to_string()),
            })
        }
    })
    .await
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    responses((status = 200, body = JobOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<JobOut>, ApiError> {
    auth.require(Permission::Read)?;
    let j = state.store.get::<Job>(auth.org_id, id).await?;
    Ok(Json(job_out(&state, j).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedEvents {
    pub job_id: Uuid,
    pub event_ids: Vec<Uuid>,
}

/// Records of an uploaded file: a JSON array (or one object), or CSV with a header row.
/// How a JSON value is named in an error.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_upload(
    content_type: &str,
    body: &[u8],
    limits: &crate::ingest::decode::DecodeLimits,
) -> Result<Vec<Value>, ApiError> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let records = match ct.as_str() {
        "text/csv" | "application/csv" => crate::ingest::decode::csv_records(body, limits)?,
        "" | "application/json" => {
            let records = match parse_json::<Value>(body)? {
                Value::Array(items) => items,
                record @ Value::Object(_) => vec![record],
                other => {
                    return Err(ApiError::invalid(
                        "body",
                        format!(
                            "is a bare {}; send a JSON object (one record) or an array of objects",
                            json_kind(&other)
                        ),
                    ))
                }
            };
            if let Some(i) = records.iter().position(|r| !r.is_object()) {
                return Err(ApiError::invalid(
                    "body",
                    format!(
                        "record {i} is a {}, not an object; every record must be a JSON object",
                        json_kind(&records[i])
                    ),
                ));
            }
            limits.check_records(body.len(), records.len())?;
            records
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Uploads of `{other}` are not supported; send application/json (an array of records) or text/csv (a header row, then one row per record)."
            )))
        }
    };
    if records.is_empty() {
        return Err(ApiError::invalid("body", "holds no records"));
    }
    Ok(records)
}

#[utoipa::path(post, path = "/streams/{id}/uploads", tag = "jobs",
    request_body(description = "Records as JSON (an array of objects, or one object), or CSV (a header row naming the fields, then one row per record)",
        content((inline(super::openapi_doc::lists::UploadJson) = "application/json"), (String = "text/csv"))),
    responses((status = 202, body = AcceptedEvents), (status = 404, body = Problem), (status = 409, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem)))]
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AcceptedEvents>), ApiError> {
    // An upload creates events, as `POST /events` does, so it needs the same role.
    auth.require(Permission::Replicate)?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let limits = crate::ingest::decode::DecodeLimits::from(&state.config.ingest);
    let records = parse_upload(content_type, &body, &limits)?;
    let changes = set_fields(&[("records", json!(records.len()))]);
    let store = auth.audited(&state, "stream.upload", "stream", Some(id), changes);
    let (job, event_ids) = state
        .ops_with(&store, auth.org_id)
        .upload(id, records)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedEvents {
            job_id: job.id,
            event_ids,
        }),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicateJobIn {
    /// Records to send instead of the original job's (an array, or one record).
    pub payload: Option<Value>,
    /// Settings for the replica instead of the original's.
    pub settings: Option<Value>,
}

#[utoipa::path(post, path = "/jobs/{id}/replicate", tag = "jobs", request_body(content = Option<ReplicateJobIn>),
    responses((status = 202, body = Accepted), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn replicate(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    auth.require(Permission::Replicate)?;
    let input: ReplicateJobIn = optional_json(&body)?;
    let changes = set_fields(&[
        ("payload_edited", json!(input.payload.is_some())),
        ("settings", json!(input.settings)),
    ]);
    let store = auth.audited(&state, "job.replicate", "job", Some(id), changes);
    let job_id = state
        .ops_with(&store, auth.org_id)
        .replicate_job(id, input.payload, input.settings)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { job_id })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Aborted {
    /// Events that were open and are now ABORTED.
    pub aborted_events: usize,
}

#[utoipa::path(post, path = "/jobs/{id}/abort", tag = "jobs",
    responses((status = 200, body = Aborted), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn abort(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Aborted>, ApiError> {
    auth.require(Permission::Replicate)?;
    let store = auth.audited(&state, "job.abort", "job", Some(id), json!({}));
    let aborted_events = state.ops_with(&store, auth.org_id).abort_job(id).await?;
    Ok(Json(Aborted { aborted_events }))
}
