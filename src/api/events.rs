//! `/events`: the records moving through streams, and their delivery attempts.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::audit::set_fields;
use super::csv::list_response;
use super::extract::{optional_json, ApiJson, ApiQuery, IdPath};
use super::jobs::{descending, sort_by, AcceptedEvents};
use super::{AppState, Auth, Page, PageParams};
use crate::domain::{EventStatus, Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Attempt, Destination, Event, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(count))
        .routes(routes!(get, patch))
        .routes(routes!(replicate_one))
        .routes(routes!(replicate_many))
        .routes(routes!(abort))
        .routes(routes!(event_attempts))
        .routes(routes!(destination_attempts))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: Uuid,
    pub stream_id: Uuid,
    pub job_id: Uuid,
    /// NEW, TRANSFORMED, OK, ERROR, FAILED or ABORTED.
    pub status: EventStatus,
    /// success, warning or error.
    pub level: &'static str,
    pub data_type: String,
    pub entity_id: Option<String>,
    pub payload_in: Option<Value>,
    pub payload_out: Option<Value>,
    pub error_code: Option<String>,
    pub message: Option<String>,
    /// Delivery attempts still to come on the destination's schedule.
    pub retries_remaining: Option<i64>,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub attempt_count: i64,
    /// A worker holds the event right now: processing it, or about to (received events wait
    /// claimed for a worker of the node that received them).
    pub is_running: bool,
    pub original_event_id: Option<Uuid>,
    /// Where the record came from, when its source says: the file (its path on the server) a
    /// file source read it from.
    pub origin: Option<String>,
    /// The id the destination system gave what the delivery created or changed (a Shopify
    /// fulfilment, a DEAR sale, a Magento shipment), when it says.
    pub destination_ref: Option<String>,
    pub ignored: bool,
    /// What the transformation logged for this record (`ctx.log()` / `log()`).
    pub logs: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Event> for EventOut {
    fn from(e: Event) -> Self {
        EventOut {
            level: e.status.level(),
            id: e.id,
            stream_id: e.stream_id,
            job_id: e.job_id,
            status: e.status,
            data_type: e.data_type,
            entity_id: e.entity_id,
            payload_in: e.payload_in.map(|j| j.0),
            payload_out: e.payload_out.map(|j| j.0),
            error_code: e.error_code,
            message: e.message,
            retries_remaining: e.retries_remaining,
            next_attempt_at: e.next_attempt_at,
            last_attempt_at: e.last_attempt_at,
            attempt_count: e.attempt_count,
            is_running: e.claim_token.is_some(),
            original_event_id: e.original_event_id,
            origin: e.origin,
            destination_ref: e.destination_ref,
            ignored: e.ignored,
            logs: e
                .transform_logs
                .and_then(|j| serde_json::from_value(j.0).ok())
                .unwrap_or_default(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub id: Uuid,
    pub event_id: Uuid,
    pub job_id: Uuid,
    pub destination_id: Uuid,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// SUCCESS, RETRY (another attempt follows) or FAILED.
    pub outcome: String,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub http_status_name: Option<String>,
    /// The start of the response body.
    pub response_excerpt: Option<String>,
    pub duration_ms: Option<i64>,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        AttemptOut {
            id: a.id,
            event_id: a.event_id,
            job_id: a.job_id,
            destination_id: a.destination_id,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome,
            error_code: a.error_code,
            http_status: a.http_status,
            http_status_name: a.http_status_name,
            response_excerpt: a.response_excerpt,
            duration_ms: a.duration_ms,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    pub stream_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    #[param(schema_with = super::openapi_doc::lists::event_status)]
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub entity_id: Option<String>,
    /// Events whose message contains this text (any case).
    pub message: Option<String>,
    /// Events whose received payload contains this text (any case), e.g. an e-mail address
    /// or a SKU.
    pub payload: Option<String>,
    pub ignored: Option<bool>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    pub updated_after: Option<Timestamp>,
    pub updated_before: Option<Timestamp>,
    /// `desc` (newest first, default) or `asc`.
    #[param(schema_with = super::openapi_doc::lists::sort_order)]
    pub order: Option<String>,
    /// `created` (default) or `updated`.
    pub sort: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptFilter {
    /// SUCCESS, RETRY or FAILED.
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub http_status: Option<i64>,
    pub started_after: Option<Timestamp>,
    pub started_before: Option<Timestamp>,
    /// `desc` (newest first, default) or `asc`.
    #[param(schema_with = super::openapi_doc::lists::sort_order)]
    pub order: Option<String>,
}

/// The columns of an events export.
const EVENT_COLUMNS: &[&str] = &[
    "id",
    "stream_id",
    "job_id",
    "status",
    "level",
    "data_type",
    "entity_id",
    "error_code",
    "message",
    "retries_remaining",
    "next_attempt_at",
    "last_attempt_at",
    "attempt_count",
    "is_running",
    "original_event_id",
    "origin",
    "destination_ref",
    "ignored",
    "created_at",
    "updated_at",
    "payload_in",
    "payload_out",
];

/// The columns of an attempts export.
const ATTEMPT_COLUMNS: &[&str] = &[
    "id",
    "event_id",
    "job_id",
    "destination_id",
    "started_at",
    "finished_at",
    "outcome",
    "error_code",
    "http_status",
    "http_status_name",
    "duration_ms",
    "response_excerpt",
];

#[utoipa::path(get, path = "/events", tag = "events", params(PageParams, EventFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching event as CSV",
        content((Page<EventOut> = "application/json"), (String = "text/csv"))),
        (status = 422, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<EventFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut q = page.query(event_filters(&f)?)?;
    q.desc = descending(f.order.as_deref())?;
    sort_by(&mut q, f.sort.as_deref(), &[("updated", "updated_at")])?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "events", EVENT_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Event>(org, &q).await?;
            Ok(Page::from_store(result, EventOut::from))
        }
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventCount {
    /// How many events match, up to the most one bulk replication takes (10,000).
    pub count: i64,
    /// More match than `count` says: narrow the filter before replicating them.
    pub more: bool,
}

/// How many events the filters of `GET /events` select: what a bulk replication by the same
/// filter would take.
#[utoipa::path(get, path = "/events/count", tag = "events", params(EventFilter),
    responses((status = 200, body = EventCount), (status = 422, body = Problem)))]
async fn count(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(f): ApiQuery<EventFilter>,
) -> Result<Json<EventCount>, ApiError> {
    auth.require(Permission::Read)?;
    let filters = event_filters(&f)?;
    let n = state
        .store
        .count::<Event>(auth.org_id, &filters, MAX_BULK + 1)
        .await?;
    Ok(Json(EventCount {
        count: n.min(i64::from(MAX_BULK)),
        more: n > i64::from(MAX_BULK),
    }))
}

/// The store filters of an event filter.
fn event_filters(f: &EventFilter) -> Result<Vec<(&'static str, Val)>, ApiError> {
    let f = f.clone();
    let mut filters = Vec::new();
    if let Some(v) = f.stream_id {
        filters.push(("stream_id", Val::from(v)));
    }
    if let Some(v) = f.job_id {
        filters.push(("job_id", Val::from(v)));
    }
    if let Some(v) = f.status {
        if EventStatus::parse(&v).is_none() {
            return Err(ApiError::invalid(
                "status",
                "must be NEW, TRANSFORMED, OK, ERROR, FAILED or ABORTED",
            ));
        }
        filters.push(("status", Val::from(v)));
    }
    if let Some(v) = f.error_code {
        filters.push(("error_code", Val::from(v)));
    }
    if let Some(v) = f.entity_id {
        filters.push(("entity_id", Val::from(v)));
    }
    if let Some(v) = f.message {
        filters.push(crate::store::message_contains(&v));
    }
    if let Some(v) = f.payload {
        filters.push(crate::store::payload_contains(&v));
    }
    if let Some(v) = f.ignored {
        filters.push(("ignored", Val::from(v)));
    }
    for (col, v) in [
        ("created_at >=", f.created_after),
        ("created_at <", f.created_before),
        ("updated_at >=", f.updated_after),
        ("updated_at <", f.updated_before),
    ] {
        if let Some(v) = v {
            filters.push((col, Val::from(v)));
        }
    }
    Ok(filters)
}

#[utoipa::path(get, path = "/events/{id}", tag = "events",
    responses((status = 200, body = EventOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<EventOut>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(
        state.store.get::<Event>(auth.org_id, id).await?.into(),
    ))
}

async fn attempts(
    state: &AppState,
    auth: &Auth,
    headers: &HeaderMap,
    scope: (&'static str, Uuid),
    page: PageParams,
    f: AttemptFilter,
) -> Result<Response, ApiError> {
    let mut filters = vec![(scope.0, Val::from(scope.1))];
    if let Some(v) = f.outcome {
        filters.push(("outcome", Val::from(v)));
    }
    if let Some(v) = f.error_code {
        filters.push(("error_code", Val::from(v)));
    }
    if let Some(v) = f.http_status {
        filters.push(("http_status", Val::from(v)));
    }
    if let Some(v) = f.started_after {
        filters.push(("started_at >=", Val::from(v)));
    }
    if let Some(v) = f.started_before {
        filters.push(("started_at <", Val::from(v)));
    }
    let mut q = page.query(filters)?;
    q.desc = descending(f.order.as_deref())?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(headers, "attempts", ATTEMPT_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Attempt>(org, &q).await?;
            Ok(Page::from_store(result, AttemptOut::from))
        }
    })
    .await
}

#[utoipa::path(get, path = "/events/{id}/attempts", tag = "events", params(PageParams, AttemptFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching attempt as CSV",
        content((Page<AttemptOut> = "application/json"), (String = "text/csv"))),
        (status = 404, body = Problem)))]
async fn event_attempts(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    IdPath(id): IdPath,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<AttemptFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let ev = state.store.get::<Event>(auth.org_id, id).await?;
    attempts(&state, &auth, &headers, ("event_id", ev.id), page, f).await
}

#[utoipa::path(get, path = "/destinations/{id}/attempts", tag = "destinations", params(PageParams, AttemptFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching attempt as CSV",
        content((Page<AttemptOut> = "application/json"), (String = "text/csv"))),
        (status = 404, body = Problem)))]
async fn destination_attempts(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    IdPath(id): IdPath,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<AttemptFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let d = state.store.get::<Destination>(auth.org_id, id).await?;
    attempts(&state, &auth, &headers, ("destination_id", d.id), page, f).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventsIn {
    pub stream_id: Uuid,
    /// One event per payload.
    pub payloads: Vec<Value>,
}

#[utoipa::path(post, path = "/events", tag = "events", request_body = CreateEventsIn,
    responses((status = 202, body = AcceptedEvents), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<CreateEventsIn>,
) -> Result<(StatusCode, Json<AcceptedEvents>), ApiError> {
    auth.require(Permission::Replicate)?;
    let changes = set_fields(&[("events", json!(input.payloads.len()))]);
    let store = auth.audited(
        &state,
        "stream.events_create",
        "stream",
        Some(input.stream_id),
        changes,
    );
    let (job, event_ids) = state
        .ops_with(&store, auth.org_id)
        .create_events(input.stream_id, input.payloads)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedEvents {
            job_id: job.id,
            event_ids,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPatch {
    /// Hide the event from issue reports (its status is unchanged).
    pub ignored: bool,
}

#[utoipa::path(patch, path = "/events/{id}", tag = "events", request_body = EventPatch,
    responses((status = 200, body = EventOut), (status = 404, body = Problem)))]
async fn patch(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<EventPatch>,
) -> Result<Json<EventOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let changes = json!({"ignored": [!p.ignored, p.ignored]});
    let store = auth.audited(&state, "event.update", "event", Some(id), changes);
    let ev = state
        .ops_with(&store, auth.org_id)
        .ignore_event(id, p.ignored)
        .await?;
    Ok(Json(ev.into()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicateEventIn {
    /// A payload to send instead of the original's.
    pub payload: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedEvent {
    pub event_id: Uuid,
    pub job_id: Uuid,
}

#[utoipa::path(post, path = "/events/{id}/replicate", tag = "events", request_body(content = Option<ReplicateEventIn>),
    responses((status = 202, body = AcceptedEvent), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn replicate_one(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AcceptedEvent>), ApiError> {
    auth.require(Permission::Replicate)?;
    let input: ReplicateEventIn = optional_json(&body)?;
    let changes = set_fields(&[("payload_edited", json!(input.payload.is_some()))]);
    let store = auth.audited(&state, "event.replicate", "event", Some(id), changes);
    let (job_id, event_id) = state
        .ops_with(&store, auth.org_id)
        .replicate_event(id, input.payload)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedEvent { event_id, job_id }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicateManyIn {
    /// Which events to replicate: the filters of `GET /events` (at least one).
    #[serde(default)]
    pub filter: EventFilter,
    /// Or these events.
    #[serde(default)]
    pub event_ids: Vec<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replicated {
    /// How many events were replicated.
    pub replicated: usize,
    /// The new jobs, one per stream.
    pub job_ids: Vec<Uuid>,
}

/// Most events one bulk replication takes; narrow the filter for more.
const MAX_BULK: u32 = 10_000;

/// Events read at once while replicating by filter.
const PAGE: u32 = 500;

#[utoipa::path(post, path = "/events/replicate", tag = "events", request_body = ReplicateManyIn,
    responses((status = 202, body = Replicated), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn replicate_many(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<ReplicateManyIn>,
) -> Result<(StatusCode, Json<Replicated>), ApiError> {
    auth.require(Permission::Replicate)?;
    let described = if input.event_ids.is_empty() {
        ("filter", json!(input.filter))
    } else {
        ("event_ids", json!(input.event_ids))
    };
    let mut pairs = Vec::new();
    if !input.event_ids.is_empty() {
        let max = state.config.ingest.replicate_max_ids;
        if input.event_ids.len() > max {
            return Err(ApiError::invalid(
                "event_ids",
                format!(
                    "lists {} ids; at most {max} are taken at once (ingest.replicate_max_ids). Send them in several requests, or use a filter.",
                    input.event_ids.len()
                ),
            ));
        }
        let found: HashMap<Uuid, Event> = state
            .store
            .events_by_id(auth.org_id, &input.event_ids)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        for id in &input.event_ids {
            let e = found.get(id).ok_or_else(|| {
                ApiError::invalid(
                    "event_ids",
                    format!("{id} names no event of your organisation"),
                )
            })?;
            let payload = e
                .payload_in
                .as_ref()
                .map(|j| j.0.clone())
                .unwrap_or(Value::Null);
            pairs.push((e.clone(), payload));
        }
    } else {
        let filters = event_filters(&input.filter)?;
        if filters.is_empty() {
            return Err(ApiError::invalid(
                "filter",
                "give at least one filter (e.g. status and stream_id) or event_ids; replicating everything is refused",
            ));
        }
        // Page by page, keeping of each event only what its replica needs.
        let mut after = None;
        loop {
            let q = crate::store::ListQuery {
                filters: filters.clone(),
                after,
                limit: PAGE,
                desc: false,
                sort: None,
            };
            let page = state.store.list::<Event>(auth.org_id, &q).await?;
            for mut e in page.items {
                if pairs.len() == MAX_BULK as usize {
                    return Err(ApiError::invalid(
                        "filter",
                        format!("matches more than {MAX_BULK} events; narrow it (e.g. by created_before)"),
                    ));
                }
                let payload = e.payload_in.take().map(|j| j.0).unwrap_or(Value::Null);
                e.payload_out = None;
                e.transform_logs = None;
                pairs.push((e, payload));
            }
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
    }
    let replicated = pairs.len();
    let changes = set_fields(&[described, ("replicated", json!(replicated))]);
    let store = auth.audited(&state, "event.replicate_many", "events", None, changes);
    let made = if pairs.is_empty() {
        store.record_audit().await?;
        Vec::new()
    } else {
        state
            .ops_with(&store, auth.org_id)
            .replicate_events(pairs)
            .await?
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Replicated {
            replicated,
            job_ids: made.into_iter().map(|(j, _)| j).collect(),
        }),
    ))
}

#[utoipa::path(post, path = "/events/{id}/abort", tag = "events",
    responses((status = 200, body = EventOut), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn abort(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<EventOut>, ApiError> {
    auth.require(Permission::Replicate)?;
    let store = auth.audited(&state, "event.abort", "event", Some(id), json!({}));
    let ev = state.ops_with(&store, auth.org_id).abort_event(id).await?;
    Ok(Json(ev.into()))
}
