//! Request extractors: the caller's identity, JSON bodies with field-level errors, and pages.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
pub use crate::audit::Actor;
use crate::crypto::hash_token;
use crate::domain::{Permission, Role, Timestamp};
use crate::error::{ApiError, FieldError};
pub use crate::http::body::{parse_json, too_large, BodyLimit, RawBody};
use crate::store::{AuditSlot, ListPage, ListQuery, Val};

/// The authenticated caller: an API token, or a signed-in person's session, of one
/// organisation with one role; and what the request's audit entry needs to know of it.
#[derive(Debug, Clone)]
pub struct Auth {
    pub org_id: Uuid,
    pub role: Role,
    pub actor: Actor,
    /// The session, when the caller signed in (rather than sending a token).
    pub session: Option<Uuid>,
    /// The client's address (see `auth.trust_forwarded_for`).
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// Where the request's audit entry waits for its write.
    pub slot: Arc<AuditSlot>,
}

impl Auth {
    /// Refuses with 403 unless the caller's role allows `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            let whose = if self.session.is_some() {
                "Your"
            } else {
                "Your token's"
            };
            Err(ApiError::Forbidden(format!(
                "{whose} role `{}` does not allow this; ask an owner or admin for a higher role.",
                self.role.as_str()
            )))
        }
    }

    /// The person signed in; 403 for a token, which belongs to no one who could sign in.
    pub fn person(&self) -> Result<Uuid, ApiError> {
        match self.session {
            Some(_) => Ok(self.actor.id),
            None => Err(ApiError::Forbidden(
                "This is for people signed in with a session (POST /api/v1/session), not for \
                 API tokens."
                    .into(),
            )),
        }
    }
}

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "wharf_session";
/// The cookie that repeats the CSRF token for the control panel's script.
pub const CSRF_COOKIE: &str = "wharf_csrf";
/// The header every write made with the session cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Paths a member who must still enrol in 2FA may use: who they are, enrolment, sign-out.
const ENROLMENT_PATHS: [&str; 4] = [
    "/users/me",
    "/users/me/totp",
    "/users/me/totp/confirm",
    "/session",
];

/// The client's address: the connection's peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry.
pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|v| v.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = forwarded {
            return Some(ip.to_string());
        }
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The request id the id layer gave this request.
pub fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The request's audit slot (one per request, set by the API's audit guard).
pub fn audit_slot(parts: &Parts) -> Arc<AuditSlot> {
    parts
        .extensions
        .get::<Arc<AuditSlot>>()
        .cloned()
        .unwrap_or_default()
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let (org_id, role, actor, session) = match bearer {
            Some(token) => {
                let (org_id, role, actor) = token_caller(token, state).await?;
                (org_id, role, actor, None)
            }
            None => {
                let token = cookie(parts, SESSION_COOKIE).ok_or(ApiError::Unauthorized)?;
                let (org_id, role, actor, session) = session_caller(token, parts, state).await?;
                (org_id, role, actor, Some(session))
            }
        };
        Ok(Auth {
            org_id,
            role,
            actor,
            session,
            ip: client_ip(parts, state.config.auth.trust_forwarded_for),
            request_id: request_id(parts),
            slot: audit_slot(parts),
        })
    }
}

async fn token_caller(token: &str, state: &AppState) -> Result<(Uuid, Role, Actor), ApiError> {
    let hash = hash_token(token);
    let identity = state
        .store
        .authenticate(&hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if identity.last_used_at.is_none() {
        // A token's first use: if it is the one in the bootstrap file, the owner has it.
        let data_dir = state.config.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::forget_used_bootstrap_token(&data_dir, &hash));
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
    let actor = Actor {
        kind: "token",
        id: identity.token_id,
        name: identity.name,
    };
    Ok((identity.org_id, identity.role, actor))
}

/// The caller of a session cookie: refused when the session is unknown or has expired (idle
/// or absolute), when a write lacks the session's CSRF token, and, while its person must
/// still enrol in 2FA, outside enrolment.
async fn session_caller(
    token: &str,
    parts: &Parts,
    state: &AppState,
) -> Result<(Uuid, Role, Actor, Uuid), ApiError> {
    let found = state
        .store
        .session_identity(&hash_token(token))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let session = &found.session;
    let now = state.clock.now();
    let idle = chrono::Duration::minutes(state.config.auth.session_idle_minutes as i64);
    if now >= session.expires_at || now.0 - session.last_seen_at.0 >= idle {
        state.store.forget_session(session.id).await?;
        return Err(ApiError::Unauthorized);
    }
    let safe = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !safe {
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(hash_token);
        let matches = sent.is_some_and(|h| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                h.as_bytes(),
                session.csrf_hash.as_bytes(),
            ))
        });
        if !matches {
            return Err(ApiError::Forbidden(
                "A change made with the session cookie must carry the header `X-CSRF-Token` \
                 with the `csrf_token` sign-in answered; nothing was changed."
                    .into(),
            ));
        }
    }
    // Handlers nested under `/api/v1` may see the path with or without it.
    let path = parts.uri.path();
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    if found.must_enrol && !ENROLMENT_PATHS.contains(&path) {
        return Err(ApiError::Forbidden(
            "Your organisation requires two-factor authentication: enrol first \
             (POST /api/v1/users/me/totp, then POST /api/v1/users/me/totp/confirm)."
                .into(),
        ));
    }
    if now.0 - session.last_seen_at.0 > chrono::Duration::seconds(60) {
        state.store.touch_session(session.id, now).await?;
    }
    let role = Role::parse(&found.role).ok_or(ApiError::Unauthorized)?;
    let actor = Actor {
        kind: "user",
        id: session.user_id,
        name: found.name.clone(),
    };
    Ok((session.org_id, role, actor, session.id))
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
