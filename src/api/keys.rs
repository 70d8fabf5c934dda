//! `/keys`: credentials for one account of one system. Secret fields are sealed at rest and
//! shown as `********`; sending `********` back keeps the stored secret.

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
use super::extract::{ApiJson, ApiQuery, Errors, IdPath};
use super::{AppState, Auth, Page, PageParams};
use crate::connectors::{self, System};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Key, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A system of the library, e.g. `shopify`.
    pub system: String,
    pub title: String,
    /// Fields of the system's key template.
    pub credentials: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    pub title: Option<String>,
    /// Merged into the stored credentials (null removes a field, `********` keeps a secret).
    pub credentials: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyOut {
    pub id: Uuid,
    pub system: String,
    pub title: String,
    /// Secrets masked as `********`.
    pub credentials: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<Key> for KeyOut {
    fn from(k: Key) -> Self {
        KeyOut {
            id: k.id,
            system: k.system,
            title: k.title,
            credentials: k.credentials.0,
            created_at: k.created_at,
            updated_at: k.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    /// Only keys of this system.
    pub system: Option<String>,
}

/// Validates credentials against the system's template and its host rules (see
/// [`connectors::check_hosts`]; `old` and `patch` are the stored credentials and the change
/// sent, for an update) and seals the secret part.
fn seal(
    state: &AppState,
    auth: &Auth,
    system: &System,
    key_id: Uuid,
    creds: &Value,
    old: Option<&Value>,
    patch: Option<&Value>,
) -> Result<(Value, Vec<u8>), ApiError> {
    let mut errors = Errors::default();
    errors.extend(connectors::validate(
        system.key_template,
        creds,
        "credentials",
    ));
    errors.finish()?;
    let hosts = connectors::check_hosts(
        system.key_template,
        old,
        creds,
        patch,
        auth.role.allows(Permission::DirectSecrets),
    );
    if !hosts.admin_needed.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "Only an admin or owner may set or change `{}` of a `{}` key: it decides where the key's secrets are sent. Ask one to make this change.",
            hosts.admin_needed.join("`, `"),
            system.name
        )));
    }
    let mut errors = Errors::default();
    errors.extend(hosts.errors);
    errors.finish()?;
    let (shown, secrets) = connectors::split_credentials(system.key_template, creds);
    let sealed = state
        .master_key
        .seal(key_id.as_bytes(), secrets.to_string().as_bytes());
    Ok((shown, sealed))
}

/// The columns of a keys export: never the credentials, not even masked.
const KEY_COLUMNS: &[&str] = &["id", "system", "title", "created_at", "updated_at"];

#[utoipa::path(get, path = "/keys", tag = "keys", params(PageParams, KeyFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching key as CSV (without its credentials)",
        content((Page<KeyOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<KeyFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(s) = filter.system {
        filters.push(("system", Val::from(s)));
    }
    let q = page.query(filters)?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "keys", KEY_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let page = store.list::<Key>(org, &q).await?;
            Ok(Page::from_store(page, KeyOut::from))
        }
    })
    .await
}

#[utoipa::path(post, path = "/keys", tag = "keys", request_body = KeyIn,
    responses((status = 201, body = KeyOut), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<KeyIn>,
) -> Result<(StatusCode, Json<KeyOut>), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let mut errors = Errors::default();
    errors.title("title", &input.title);
    let system = connectors::system(&input.system);
    if system.is_none() {
        errors.add(
            "system",
            "is not a system of the library; see GET /api/v1/systems",
        );
    }
    errors.finish()?;
    let system = system.expect("checked above");
    let id = Uuid::now_v7();
    let (shown, sealed) = seal(&state, &auth, system, id, &input.credentials, None, None)?;
    let now = Timestamp::now();
    let key = Key {
        id,
        org_id: auth.org_id,
        system: system.name.to_string(),
        title: input.title.trim().to_string(),
        credentials: DbJson(shown),
        sealed_secrets: sealed,
        created_at: now,
        updated_at: now,
    };
    let out = KeyOut::from(key.clone());
    auth.created(&state, "key", key.id, &out)
        .insert(&key)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/keys/{id}", tag = "keys",
    responses((status = 200, body = KeyOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<KeyOut>, ApiError> {
    auth.require(Permission::Read)?;
    Ok(Json(state.store.get::<Key>(auth.org_id, id).await?.into()))
}

#[utoipa::path(patch, path = "/keys/{id}", tag = "keys", request_body = KeyPatch,
    responses((status = 200, body = KeyOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<KeyPatch>,
) -> Result<Json<KeyOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let mut key = state.store.get::<Key>(auth.org_id, id).await?;
    let before = KeyOut::from(key.clone());
    let secrets_changed = patch.credentials.is_some();
    let mut errors = Errors::default();
    if let Some(title) = patch.title {
        errors.title("title", &title);
        key.title = title.trim().to_string();
    }
    errors.finish()?;
    if let Some(creds) = patch.credentials {
        let system = connectors::system(&key.system).ok_or_else(|| {
            // A key kept from a version that offered the system: readable and deletable,
            // but nothing can use its credentials here, so there is nothing to change.
            ApiError::Conflict(format!(
                "This server no longer offers the system `{}`, so this key's credentials \
                     cannot be changed. Delete the key, or change only its title.",
                key.system
            ))
        })?;
        let stored =
            connectors::open_stored_credentials(&state.master_key, &key).ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!(
                    "key {} does not open under the configured master key",
                    key.id
                ))
            })?;
        let mut full = stored.clone();
        connectors::merge_patch(&mut full, &creds);
        let (shown, sealed) = seal(
            &state,
            &auth,
            system,
            key.id,
            &full,
            Some(&stored),
            Some(&creds),
        )?;
        key.credentials = DbJson(shown);
        key.sealed_secrets = sealed;
    }
    key.updated_at = Timestamp::now();
    let after = KeyOut::from(key.clone());
    let mut changes = super::audit::changes(Some(&before), Some(&after));
    if secrets_changed {
        // Secrets are masked on both sides; that they were sent is what the log keeps.
        changes
            .as_object_mut()
            .expect("changes are an object")
            .entry("credentials")
            .or_insert_with(|| serde_json::json!(["********", "********"]));
    }
    auth.audited(&state, "key.update", "key", Some(id), changes)
        .update(auth.org_id, &key)
        .await?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/keys/{id}", tag = "keys",
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let before = KeyOut::from(state.store.get::<Key>(auth.org_id, id).await?);
    auth.deleted(&state, "key", id, &before)
        .delete::<Key>(auth.org_id, id)
        .await
        .map_err(|e| in_use(e, "key", "sources or destinations"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Words a refused delete for the resource at hand.
pub fn in_use(e: crate::store::StoreError, what: &str, users: &str) -> ApiError {
    match e {
        crate::store::StoreError::InUse(_) => ApiError::Conflict(format!(
            "This {what} is still used by {users}; change or delete those first, then delete it."
        )),
        other => other.into(),
    }
}
