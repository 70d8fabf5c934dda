//! `/users`: the people of an organisation and their roles (owners only).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::audit::changes;
use super::csv::list_response;
use super::extract::{ApiJson, ApiQuery, Errors, IdPath};
use super::session::{new_link, LinkOut};
use super::{AppState, Auth, Page, PageParams};
use crate::domain::{Permission, Role, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{StoreError, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        UserOut {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

fn check(u: &User) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("name", &u.name);
    let at = u.email.find('@');
    if !at.is_some_and(|i| i > 0 && i < u.email.len() - 1) || u.email.contains(char::is_whitespace)
    {
        errors.add("email", "must be an e-mail address");
    }
    errors.finish()
}

fn duplicate(e: StoreError) -> ApiError {
    match e {
        StoreError::Duplicate(_) => {
            ApiError::Conflict("A user with this e-mail already exists.".into())
        }
        other => other.into(),
    }
}

/// The columns of a users export.
const USER_COLUMNS: &[&str] = &["id", "email", "name", "role", "created_at", "updated_at"];

#[utoipa::path(get, path = "/users", tag = "users", params(PageParams),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every user as CSV",
        content((Page<UserOut> = "application/json"), (String = "text/csv"))),
        (status = 403, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    auth.require(Permission::ManageUsers)?;
    let q = page.query(Vec::new())?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "users", USER_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<User>(org, &q).await?;
            Ok(Page::from_store(result, UserOut::from))
        }
    })
    .await
}

/// A new person and their invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    #[serde(flatten)]
    pub user: UserOut,
    /// Hand this one-time link to the person: they set their password with it, then sign in.
    pub invitation: LinkOut,
}

/// Invites a person: their account, and a one-time link to set their password.
#[utoipa::path(post, path = "/users", tag = "users", request_body = UserIn,
    responses((status = 201, body = UserCreated), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<UserIn>,
) -> Result<(StatusCode, Json<UserCreated>), ApiError> {
    auth.require(Permission::ManageUsers)?;
    let now = Timestamp::now();
    let u = User {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        email: input.email.trim().to_lowercase(),
        name: input.name.trim().to_string(),
        role: input.role.as_str().to_string(),
        created_at: now,
        updated_at: now,
    };
    check(&u)?;
    let (link, invitation) = new_link(&state, auth.org_id, u.id, "invite");
    let out = UserOut::from(u.clone());
    auth.audited(
        &state,
        "user.create",
        "user",
        Some(u.id),
        changes(None, Some(&out)),
    )
    .create_user(&u, Some(&link), None)
    .await
    .map_err(duplicate)?;
    Ok((
        StatusCode::CREATED,
        Json(UserCreated {
            user: out,
            invitation,
        }),
    ))
}

#[utoipa::path(get, path = "/users/{id}", tag = "users",
    responses((status = 200, body = UserOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<UserOut>, ApiError> {
    auth.require(Permission::ManageUsers)?;
    Ok(Json(state.store.get::<User>(auth.org_id, id).await?.into()))
}

#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserPatch,
    responses((status = 200, body = UserOut), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<UserPatch>,
) -> Result<Json<UserOut>, ApiError> {
    auth.require(Permission::ManageUsers)?;
    let mut u = state.store.get::<User>(auth.org_id, id).await?;
    let before = UserOut::from(u.clone());
    if let Some(v) = p.email {
        u.email = v.trim().to_lowercase();
    }
    if let Some(v) = p.name {
        u.name = v.trim().to_string();
    }
    if let Some(v) = p.role {
        u.role = v.as_str().to_string();
    }
    check(&u)?;
    u.updated_at = Timestamp::now();
    let after = UserOut::from(u.clone());
    auth.audited(
        &state,
        "user.update",
        "user",
        Some(id),
        changes(Some(&before), Some(&after)),
    )
    .update(auth.org_id, &u)
    .await
    .map_err(duplicate)?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::ManageUsers)?;
    let before = UserOut::from(state.store.get::<User>(auth.org_id, id).await?);
    auth.audited(
        &state,
        "user.delete",
        "user",
        Some(id),
        changes(Some(&before), None),
    )
    .delete::<User>(auth.org_id, id)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
