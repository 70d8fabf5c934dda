//! Webhook ingest: `POST /hooks/{source_token}`. The token picks a webhook source; the push is
//! verified as the source's system requires, parsed by the source's format, deduplicated by
//! the sender's delivery id, and stored (jobs and events, or the thin records for a worker to
//! complete) before the answer: 202 means it is durably stored.

pub mod decode;
pub mod verify;

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::connectors::{self, http::at_path};
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::http::body::{parse_json, RawBody};
use crate::ops::new_events;
use crate::store::{CommitGate, IngestJob, Ingested, Key, NewJob, Source};

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{token}", post(receive))
}

/// The answer to an accepted push.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The job the push became (the first, when several streams use the source).
    pub job_id: uuid::Uuid,
    pub job_ids: Vec<uuid::Uuid>,
    /// True when this delivery id was received before: nothing new was stored.
    pub duplicate: bool,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Systems whose pushes carry ids only; a worker fetches the full records.
fn thin(system: &str) -> bool {
    system == "dear"
}

async fn receive(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    gate: Option<Extension<Arc<CommitGate>>>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let source = state
        .store
        .source_by_webhook_token(&token)
        .await?
        .filter(|s| s.active && s.trigger == "webhook")
        .ok_or(ApiError::NotFound("webhook"))?;
    let metrics = state.metrics.clone();
    let key = match source.key_id {
        Some(id) => {
            let key = state.store.get_cached::<Key>(source.org_id, id).await?;
            connectors::open_key(&state.master_key, &key)
        }
        None => None,
    };
    let verdict = match source.system.as_str() {
        "shopify" => verify::shopify(key.as_ref(), &headers, &body),
        "dear" => verify::dear(key.as_ref(), &headers),
        "http" => verify::http(&source.params.0, key.as_ref(), &headers, &body),
        // Peoplevox callbacks carry no signature: the URL token alone.
        _ => Ok(()),
    };
    if let Err(why) = verdict {
        tracing::warn!(source = %source.id, reason = %why, "push refused");
        metrics.record_webhook(&source.system, "rejected");
        state.store.count_rejection(source.id).await?;
        return Err(ApiError::Unverified);
    }
    let limits = decode::DecodeLimits::from(&state.config.ingest);
    let records = match parse_records(&source, &headers, &body, &limits) {
        Ok(r) => r,
        Err(e) => {
            metrics.record_webhook(&source.system, "invalid");
            return Err(e);
        }
    };
    let delivery_id = match source.system.as_str() {
        "shopify" => header(&headers, "x-shopify-webhook-id"),
        _ => {
            let name = source
                .params
                .0
                .get("dedup_header")
                .and_then(Value::as_str)
                .unwrap_or("idempotency-key");
            header(&headers, name)
        }
    };
    let streams = state.store.active_streams_of(source.id).await?;
    if streams.is_empty() {
        return Err(ApiError::Conflict(
            "No active stream uses this source, so the push would go nowhere; nothing was stored. Activate a stream, and the sender's retry will be accepted.".into(),
        ));
    }
    let meta = push_meta(&source, &headers, delivery_id.as_deref());
    let path = crate::connectors::entity_id_path(&source.system, &source.params.0);
    // One copy of the records per stream but the last, which takes them.
    let mut records = Some(records);
    let mut jobs = Vec::with_capacity(streams.len());
    for (i, stream) in streams.iter().enumerate() {
        let mine = if i + 1 == streams.len() {
            records.take()
        } else {
            records.clone()
        }
        .unwrap_or_default();
        let (payload, events) = if thin(&source.system) {
            (Some(Value::Array(mine)), None)
        } else {
            (None, Some(new_events(mine, path, None)))
        };
        jobs.push(IngestJob {
            new: NewJob {
                org_id: source.org_id,
                stream_id: stream.id,
                trigger: "webhook",
                settings: json!({"webhook": meta}),
                payload,
                original_job_id: None,
                run_at: Timestamp::now(),
            },
            data_type: stream.data_type.clone(),
            events,
        });
    }
    match state
        .store
        .ingest(
            source.id,
            delivery_id.as_deref(),
            jobs,
            gate.map(|Extension(g)| g),
        )
        .await?
    {
        Ingested::Created(ids) => {
            metrics.record_webhook(&source.system, "accepted");
            state.wake.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(Receipt {
                    job_id: ids[0],
                    job_ids: ids,
                    duplicate: false,
                }),
            ))
        }
        Ingested::Duplicate(job_id) => {
            metrics.record_webhook(&source.system, "duplicate");
            Ok((
                StatusCode::OK,
                Json(Receipt {
                    job_id,
                    job_ids: vec![job_id],
                    duplicate: true,
                }),
            ))
        }
    }
}

/// What the sender told about the push, kept on the job (`settings.webhook`).
fn push_meta(source: &Source, headers: &HeaderMap, delivery_id: Option<&str>) -> Value {
    let mut meta =
        json!({"delivery_id": delivery_id, "content_type": header(headers, "content-type")});
    if source.system == "shopify" {
        for (field, name) in [
            ("topic", "x-shopify-topic"),
            ("shop_domain", "x-shopify-shop-domain"),
            ("webhook_id", "x-shopify-webhook-id"),
            ("event_id", "x-shopify-event-id"),
            ("triggered_at", "x-shopify-triggered-at"),
            ("api_version", "x-shopify-api-version"),
        ] {
            meta[field] = json!(header(headers, name));
        }
    }
    meta
}

/// The records of a push, by the source's declared format.
fn parse_records(
    source: &Source,
    headers: &HeaderMap,
    body: &[u8],
    limits: &decode::DecodeLimits,
) -> Result<Vec<Value>, ApiError> {
    let format = source
        .params
        .0
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("json");
    match format {
        "csv" => decode::csv_records(body, limits),
        "xml" | "text" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::BadRequest("The body is not UTF-8 text.".into()))?;
            Ok(vec![Value::String(text.to_string())])
        }
        _ => {
            let _ = headers;
            let doc: Value = parse_json(body)?;
            let path = source
                .params
                .0
                .get("records_path")
                .and_then(Value::as_str)
                .unwrap_or("");
            let records = match at_path(&doc, path) {
                Some(Value::Array(items)) => items.clone(),
                Some(one) if path.is_empty() => vec![one.clone()],
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "The body has no list at `{path}` (the source's records_path)."
                    )))
                }
            };
            limits.check_records(body.len(), records.len())?;
            Ok(records)
        }
    }
}
