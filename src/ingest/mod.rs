//! Webhook ingest: `POST /hooks/{source_token}` (and GET, for systems that call back with
//! the record in the query string). The token picks a webhook source; the push is
//! verified as the source's system requires, parsed by the source's format, deduplicated by
//! the sender's delivery id, and stored (jobs and events, or the thin records for a worker to
//! complete) before the answer: 202 means it is durably stored.

pub mod decode;
mod scan;

use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::connectors::registry::{BodyFormat, Decoding};
use crate::connectors::{self, Push};
use crate::domain::Timestamp;
use crate::error::ApiError;
use crate::http::body::{parse_json, RawBody};
use crate::ops::new_events;
use crate::store::{CommitGate, IngestJob, Ingested, JsonText, NewEvent, NewJob, Payload};

pub fn router() -> Router<AppState> {
    Router::new().route("/hooks/{token}", post(receive).get(receive_query))
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

async fn receive(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    gate: Option<Extension<Arc<CommitGate>>>,
    RawQuery(url_query): RawQuery,
    RawBody(body): RawBody,
) -> Result<axum::response::Response, ApiError> {
    accept(state, token, headers, gate, body, Carried::Post(url_query)).await
}

/// How a push carries its record.
enum Carried {
    /// A GET callback: the query string.
    Get(String),
    /// A POST: the body, or for a system that calls back with parameters, a form body or
    /// (with no body) the URL's query string.
    Post(Option<String>),
}

/// The parameters a POST to a query-callback source carries: a form body, or the URL's query
/// string when there is no body; `None` when the body is to be read as the source's format.
fn posted_query(
    headers: &HeaderMap,
    body: &[u8],
    url_query: Option<String>,
) -> Result<Option<String>, ApiError> {
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::BadRequest("The form body is not UTF-8 text.".into()))?;
        return Ok(Some(text.to_string()));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(url_query.filter(|q| !q.is_empty()));
    }
    Ok(None)
}

/// `GET /hooks/{source_token}?…`: a callback whose record is its query string, for the sources
/// whose system calls back that way (Peoplevox). For every other token, known or not, GET is
/// not allowed, as it was before such sources existed.
async fn receive_query(
    State(state): State<AppState>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
    gate: Option<Extension<Arc<CommitGate>>>,
    RawQuery(query): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let not_allowed = || {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            [(axum::http::header::ALLOW, "POST")],
        )
            .into_response()
    };
    // The router answers HEAD with the GET handler; a HEAD must store nothing.
    if method != Method::GET {
        return Ok(not_allowed());
    }
    let source = state
        .store
        .source_by_webhook_token(&token)
        .await?
        .filter(|s| s.active && s.trigger == "webhook");
    let takes_query = source.as_ref().is_some_and(|s| {
        state
            .connectors
            .webhook(&s.function)
            .is_some_and(|h| h.query_callbacks(&s.params.0))
    });
    if !takes_query {
        return Ok(not_allowed());
    }
    accept(
        state,
        token,
        headers,
        gate,
        axum::body::Bytes::new(),
        Carried::Get(query.unwrap_or_default()),
    )
    .await
}

/// Verifies, decodes and stores one push.
async fn accept(
    state: AppState,
    token: String,
    headers: HeaderMap,
    gate: Option<Extension<Arc<CommitGate>>>,
    body: axum::body::Bytes,
    carried: Carried,
) -> Result<axum::response::Response, ApiError> {
    let source = state
        .store
        .source_by_webhook_token(&token)
        .await?
        .filter(|s| s.active && s.trigger == "webhook")
        .ok_or(ApiError::NotFound("webhook"))?;
    // A source whose function is no longer built has nobody to verify its pushes.
    let hook = state
        .connectors
        .webhook(&source.function)
        .ok_or(ApiError::NotFound("webhook"))?;
    let metrics = state.metrics.clone();
    // The record is in parameters (a query string or a form) for a system that calls back
    // that way; otherwise in the body, as the source's format says.
    let query = match carried {
        Carried::Get(q) => Some(q),
        Carried::Post(url_query) if hook.query_callbacks(&source.params.0) => {
            posted_query(&headers, &body, url_query)?
        }
        Carried::Post(_) => None,
    };
    let key = match source.key_id {
        Some(id) => state.keys.open(&state.store, source.org_id, id).await?,
        None => None,
    };
    let push = Push {
        params: &source.params.0,
        key: key.as_deref(),
        headers: &headers,
        body: &body,
        query: query.as_deref(),
    };
    // A system's test delivery (e.g. WooCommerce's ping when a webhook is made) is answered
    // 200 and stores nothing: it carries no record.
    if hook.is_ping(push) {
        tracing::info!(source = %source.id, "ping from the system answered; nothing stored");
        metrics.record_webhook(&source.system, "ping");
        return Ok((StatusCode::OK, Json(json!({"ping": true, "stored": false}))).into_response());
    }
    if let Err(why) = hook.verify(push) {
        tracing::warn!(source = %source.id, reason = %why, "push refused");
        metrics.record_webhook(&source.system, "rejected");
        state.store.count_rejection(source.id).await?;
        return Err(ApiError::Unverified);
    }
    let limits = decode::DecodeLimits::from(&state.config.ingest);
    let path = hook.entity_id_path(&source.params.0);
    let parsed = match query.as_deref() {
        Some(q) => query_record(q).map(Records::Values),
        None => parse_records(
            &hook.decoding(&source.params.0),
            &body,
            &limits,
            // A thin push's records go to a worker as values.
            (!hook.thin()).then_some(path.as_deref()),
        ),
    };
    let mut records = match parsed {
        Ok(r) => r,
        Err(e) => {
            metrics.record_webhook(&source.system, "invalid");
            return Err(e);
        }
    };
    let delivery_id = hook.delivery_id(push);
    let streams = state.store.active_streams_of(source.id).await?;
    if streams.is_empty() {
        return Err(ApiError::Conflict(
            "No active stream uses this source, so the push would go nowhere; nothing was stored. Activate a stream, and the sender's retry will be accepted.".into(),
        ));
    }
    let mut meta = serde_json::Map::new();
    meta.insert("delivery_id".into(), json!(delivery_id));
    meta.insert("content_type".into(), json!(push.header("content-type")));
    hook.metadata(push, &mut meta);
    // One copy of the records per stream but the last, which takes them.
    let mut jobs = Vec::with_capacity(streams.len());
    for (i, stream) in streams.iter().enumerate() {
        let mine = if i + 1 == streams.len() {
            std::mem::replace(&mut records, Records::Values(Vec::new()))
        } else {
            records.clone()
        };
        let (payload, events) = match mine {
            Records::Received { text, entity_id } => (
                None,
                Some(vec![NewEvent {
                    payload_in: Payload::Received(text),
                    entity_id,
                    original_event_id: None,
                    origin: None,
                }]),
            ),
            Records::Values(values) if hook.thin() => (Some(Value::Array(values)), None),
            Records::Values(values) => (None, Some(new_events(values, path.as_deref(), None))),
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
            )
                .into_response())
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
            )
                .into_response())
        }
    }
}

/// The record of a GET callback: its query string's parameters, decoded, as one object. A
/// name given twice is refused: the callback URL names each once, so a second one means a
/// value carried an unencoded `&` (an e-mail address can) and no value can be trusted.
fn query_record(query: &str) -> Result<Vec<Value>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::BadRequest(format!("The callback's query string cannot be read: {e}"))
    })?;
    if pairs.is_empty() {
        return Err(ApiError::BadRequest(
            "The callback carries no parameters in its query string, so there is no record to store.".into(),
        ));
    }
    let mut record = serde_json::Map::new();
    for (k, v) in pairs {
        if record.contains_key(&k) {
            return Err(ApiError::BadRequest(format!(
                "The callback names `{k}` twice: a value holds an unencoded `&`, so no value can be trusted. Ask the system to encode its values (Peoplevox: encodeParameterData)."
            )));
        }
        record.insert(k, Value::String(v));
    }
    Ok(vec![Value::Object(record)])
}

/// A push's records.
#[derive(Clone)]
enum Records {
    Values(Vec<Value>),
    /// The body is the one record: its text, stored as received (see [`JsonText::received`]),
    /// and its entity id.
    Received {
        text: JsonText,
        entity_id: Option<String>,
    },
}

/// The records of a push, as the source's connector says its body is written. With
/// `received_id`, a JSON body that is one record is kept as its text, not parsed into a
/// value, and its entity id is read at that path.
fn parse_records(
    decoding: &Decoding,
    body: &[u8],
    limits: &decode::DecodeLimits,
    received_id: Option<Option<&str>>,
) -> Result<Records, ApiError> {
    match decoding.format {
        BodyFormat::Csv => Ok(Records::Values(decode::csv_records(body, limits)?)),
        BodyFormat::Text => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::BadRequest("The body is not UTF-8 text.".into()))?;
            Ok(Records::Values(vec![Value::String(text.to_string())]))
        }
        BodyFormat::Json => {
            let path = decoding.records_path.as_str();
            let list = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            if let (Some(id_path), "", false) = (received_id, path, list) {
                let text = std::str::from_utf8(body).ok().map(JsonText::received);
                let id = match id_path {
                    Some(p) => scan::value_at(body, p),
                    None => scan::check(body).map(|()| None),
                };
                if let (Some(text), Ok(found)) = (text, id) {
                    limits.check_records(body.len(), 1)?;
                    let entity_id = found.and_then(|v| connectors::entity_id(&v, Some("")));
                    return Ok(Records::Received { text, entity_id });
                }
                // Not JSON: parsing it again says where.
            }
            let mut doc: Value = parse_json(body)?;
            // The records are taken out of the document, not copied (a push's body is its
            // largest allocation).
            let records = match connectors::take_at_path(&mut doc, path) {
                Some(Value::Array(items)) => items,
                Some(one) if path.is_empty() => vec![one],
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "The body has no list at `{path}` (the source's records_path)."
                    )))
                }
            };
            limits.check_records(body.len(), records.len())?;
            Ok(Records::Values(records))
        }
    }
}
