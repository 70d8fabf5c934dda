//! One error type for the API, rendered as RFC 7807 `application/problem+json`.
//! Internal details go to the log; the client is told what was wrong and what to do.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `credentials.access_token`.
    pub field: String,
    pub message: String,
    /// Where in the field's text the problem is (transformation code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// The problem document every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Position in the transformation's code, for a failed dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// What the transformation logged before it failed (dry runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API token")]
    Unauthorized,
    #[error("the push could not be verified")]
    Unverified,
    /// Sign-in refused; the detail says what to do, never which part was wrong.
    #[error("{0}")]
    SignIn(String),
    /// The password was right, and the account has 2FA on: send the code with it.
    #[error("Two-factor authentication is on for this account: send the six-digit code from your authenticator app as `totp` (or a recovery code as `recovery_code`) with the e-mail address and password.")]
    SecondFactorNeeded,
    /// Too many tries; `Retry-After` says when to come back.
    #[error("{detail}")]
    TooMany {
        detail: String,
        retry_after_seconds: u64,
    },
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("storage is unavailable; retry later")]
    Unavailable,
    /// A bounded queue is full; the detail says which, `Retry-After` when to come back.
    #[error("{detail}")]
    Busy {
        detail: String,
        retry_after_seconds: u64,
    },
    #[error("{}", .error.describe())]
    TransformFailed {
        error: crate::transform::TransformError,
        logs: Vec<String>,
        duration_ms: f64,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized
            | ApiError::Unverified
            | ApiError::SignIn(_)
            | ApiError::SecondFactorNeeded => StatusCode::UNAUTHORIZED,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) | ApiError::TransformFailed { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unavailable | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Unverified => "unverified-push",
            ApiError::SignIn(_) => "sign-in-failed",
            ApiError::SecondFactorNeeded => "second-factor-needed",
            ApiError::TooMany { .. } => "too-many-requests",
            ApiError::Upstream(_) => "upstream",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Invalid(_) => "validation",
            ApiError::TransformFailed { .. } => "transform-failed",
            ApiError::Unavailable => "unavailable",
            ApiError::Busy { .. } => "busy",
            ApiError::Internal(_) => "internal",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Unauthorized => {
                "Send `Authorization: Bearer <token>` with a valid, unrevoked API token, or sign \
                 in (POST /api/v1/session) and send the session cookie; a session ends after \
                 its idle or absolute time."
                    .into()
            }
            ApiError::Unverified => {
                "The push could not be verified with the source's key (signature or credentials); nothing was stored.".into()
            }
            ApiError::NotFound(what) => {
                format!("No {what} with this id exists in your organisation.")
            }
            ApiError::Invalid(errors) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("Correct these fields and send again: {}.", fields.join(", "))
            }
            ApiError::Unavailable => {
                "Storage could not be reached; nothing was stored. Retry shortly.".into()
            }
            ApiError::Internal(_) => {
                "An unexpected error occurred; it has been logged. Retry, and report it if it persists."
                    .into()
            }
            other => other.to_string(),
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem {
            kind: format!("https://wharf.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: match self {
                ApiError::Invalid(e) => e.clone(),
                _ => Vec::new(),
            },
            error_code: None,
            line: None,
            column: None,
            logs: None,
            duration_ms: None,
        };
        if let ApiError::TransformFailed {
            error,
            logs,
            duration_ms,
        } = self
        {
            problem.error_code = Some(error.code.as_str().to_string());
            problem.line = error.line;
            problem.column = error.column;
            problem.logs = Some(logs.clone());
            problem.duration_ms = Some(*duration_ms);
        }
        problem
    }
}

/// Writes a problem document as a response.
pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ApiError::Unavailable => tracing::warn!("storage unavailable"),
            _ => {}
        }
        let mut res = problem_response(self.status(), &self.problem());
        if matches!(self, ApiError::Unavailable) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::Busy {
            retry_after_seconds,
            ..
        }
        | ApiError::TooMany {
            retry_after_seconds,
            ..
        } = self
        {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
        }
        res
    }
}

impl From<crate::transform::Busy> for ApiError {
    fn from(b: crate::transform::Busy) -> Self {
        ApiError::Busy {
            detail: b.message,
            retry_after_seconds: b.retry_after_seconds,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::InUse(msg) | StoreError::Duplicate(msg) => ApiError::Conflict(msg),
            StoreError::Unavailable(_) => ApiError::Unavailable,
            StoreError::Invalid(msg) => ApiError::BadRequest(msg),
            StoreError::Other(e) => ApiError::Internal(e),
        }
    }
}
