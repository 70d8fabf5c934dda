//! Request extractors: the caller's identity, JSON bodies with field-level errors, and pages.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::crypto::hash_token;
use crate::domain::{Permission, Role, Timestamp};
use crate::error::{ApiError, FieldError};
pub use crate::http::body::{parse_json, too_large, BodyLimit, RawBody};
use crate::store::{ListPage, ListQuery, Val};

/// The authenticated caller: an API token of one organisation with one role.
#[derive(Debug, Clone)]
pub struct Auth {
    pub token_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
}

impl Auth {
    /// Refuses with 403 unless the caller's role allows `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "Your token's role `{}` does not allow this; ask an owner or admin for a token with a higher role.",
                self.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_token(token);
        let identity = state
            .store
            .authenticate(&hash)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if identity.last_used_at.is_none() {
            // A token's first use: if it is the one in the bootstrap file, the owner has it.
            let data_dir = state.config.data_dir.clone();
            tokio::task::spawn_blocking(move || {
                crate::forget_used_bootstrap_token(&data_dir, &hash)
            });
        }
        // Record use at most once a minute, off the request's path.
        let stale = identity
            .last_used_at
            .is_none_or(|t| Timestamp::now().0 - t.0 > chrono::Duration::seconds(60));
        if stale {
            let store = state.store.clone();
            let id = identity.token_id;
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(id).await {
                    tracing::debug!(error = %e, "could not record token use");
                }
            });
        }
        Ok(Auth {
            token_id: identity.token_id,
            org_id: identity.org_id,
            role: identity.role,
        })
    }
}

/// A JSON body. Malformed JSON is 400; JSON of the wrong shape is 422 naming the field;
/// a body over the limit is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                ApiError::BadRequest(format!("Could not read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 500; 50 when unset.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n @ 1..=500) => Ok(n),
            Some(_) => Err(ApiError::invalid("limit", "must be between 1 and 500")),
        }
    }

    pub fn query(&self, filters: Vec<(&'static str, Val)>) -> Result<ListQuery, ApiError> {
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(c.parse::<crate::store::Cursor>().map_err(|_| {
                ApiError::invalid(
                    "cursor",
                    "is not a cursor this API returned; start without one",
                )
            })?),
        };
        Ok(ListQuery {
            filters,
            after,
            limit: self.limit()?,
            desc: false,
            sort: None,
        })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn from_store<R>(page: ListPage<R>, f: impl FnMut(R) -> T) -> Page<T> {
        Page {
            items: page.items.into_iter().map(f).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// Collects field errors; `finish` turns any into a 422.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn extend(&mut self, errors: Vec<FieldError>) {
        self.0.extend(errors);
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.0))
        }
    }

    /// A title-like field: present, not blank, at most 200 characters.
    pub fn title(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "must not be blank");
        } else if value.chars().count() > 200 {
            self.add(field, "must be at most 200 characters");
        }
    }

    /// A machine name: letters, digits, `_`, `-`, `.`, `/`; 1 to 100 characters.
    pub fn slug(&mut self, field: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 100
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !ok {
            self.add(
                field,
                "must be 1 to 100 letters, digits, `_`, `-`, `.` or `/`",
            );
        }
    }
}

/// Deserializes a field that may be absent (keep), null (clear) or a value (set).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Query parameters; a malformed one is 422 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(ApiQuery)
            .map_err(|e| ApiError::invalid("query", e.to_string()))
    }
}

/// The `{id}` of a path. An id that is not a UUID names no object: 404.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("object"))?;
        Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::NotFound("object"))
    }
}

/// An optional JSON body: empty or `null` means the defaults.
pub fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).unwrap_or("x").trim();
    if text.is_empty() || text == "null" {
        return Ok(T::default());
    }
    parse_json(bytes)
}
