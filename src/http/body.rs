//! Request bodies, shared by the API and webhook ingest: the size limit in force, raw bodies,
//! and JSON parsing that tells malformed documents (400) from wrongly shaped ones (422).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// The body size limit in force, put on each request for the extractors to name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The 413 of a body over the limit.
pub fn too_large(limit: Option<BodyLimit>) -> ApiError {
    let size = match limit {
        Some(BodyLimit(n)) => format!("the {n} bytes"),
        None => "what".into(),
    };
    ApiError::PayloadTooLarge(format!(
        "The request body is larger than {size} this server accepts (http.body_limit_bytes); send a smaller body, or split it into several requests."
    ))
}

/// Parses a JSON document, telling syntax errors (400) from shape errors (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs an allocation per key: every webhook body pays it. A body that
    // parses needs no path, so only a failed parse is read again, with the path, for the
    // error (parsing is deterministic: the second read fails where the first did).
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." { "body".to_string() } else { path };
            ApiError::Invalid(vec![FieldError::new(field, inner.to_string())])
        } else {
            ApiError::BadRequest(format!(
                "The body is not valid JSON ({inner}); send a JSON document with Content-Type: application/json."
            ))
        }
    })
}

/// A raw body within the size limit; a larger one is a 413 problem.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(limit)
                } else {
                    ApiError::BadRequest(format!("Could not read the request body: {e}"))
                }
            })
    }
}
