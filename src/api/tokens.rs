//! `/tokens`: API tokens. The token itself is shown once, at creation; only its hash is kept.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::csv::list_response;
use super::extract::{ApiJson, ApiQuery, Errors, IdPath};
use super::{AppState, Auth, Page, PageParams};
use crate::crypto::{generate_token, hash_token, token_hint};
use crate::domain::{Permission, Role, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{ApiToken, StoreError, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    pub role: Role,
    /// The user the token acts for, if any.
    pub user_id: Option<Uuid>,
    /// After this time the token no longer works.
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub user_id: Option<Uuid>,
    /// The token's last characters, to tell tokens apart.
    pub hint: String,
    /// Only in the answer to POST: store it now, it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            role: t.role,
            user_id: t.user_id,
            hint: t.hint,
            token: None,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            expires_at: t.expires_at,
        }
    }
}

/// The columns of a tokens export: the hint that tells tokens apart, never a token.
const TOKEN_COLUMNS: &[&str] = &[
    "id",
    "name",
    "role",
    "user_id",
    "hint",
    "created_at",
    "last_used_at",
    "expires_at",
];

#[utoipa::path(get, path = "/tokens", tag = "tokens", params(PageParams),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every token (its hint, never the token) as CSV",
        content((Page<TokenOut> = "application/json"), (String = "text/csv"))),
        (status = 403, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    auth.require(Permission::ManageTokens)?;
    let q = page.query(Vec::new())?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "tokens", TOKEN_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<ApiToken>(org, &q).await?;
            Ok(Page::from_store(result, TokenOut::from))
        }
    })
    .await
}

#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = TokenIn,
    responses((status = 201, body = TokenOut), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<TokenIn>,
) -> Result<(StatusCode, Json<TokenOut>), ApiError> {
    auth.require(Permission::ManageTokens)?;
    if !auth.role.can_grant(input.role) {
        return Err(ApiError::Forbidden(format!(
            "A `{}` token cannot create a `{}` token.",
            auth.role.as_str(),
            input.role.as_str()
        )));
    }
    let mut errors = Errors::default();
    errors.title("name", &input.name);
    if input.expires_at.is_some_and(|e| e <= Timestamp::now()) {
        errors.add("expires_at", "must be in the future");
    }
    if let Some(user_id) = input.user_id {
        match state.store.get::<User>(auth.org_id, user_id).await {
            Ok(user) => {
                // The token would be cut down to the user's role at every request anyway;
                // saying so now beats a token that silently does less than it claims.
                if Role::parse(&user.role).is_some_and(|r| r.lower(input.role) != input.role) {
                    errors.add(
                        "role",
                        format!(
                            "is above the user's role `{}`; a token acting for a user holds at most the user's role",
                            user.role
                        ),
                    );
                }
            }
            Err(StoreError::NotFound(_)) => {
                errors.add("user_id", "names no user of your organisation")
            }
            Err(e) => return Err(e.into()),
        }
    }
    errors.finish()?;
    let token = generate_token();
    let now = Timestamp::now();
    let row = ApiToken {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        user_id: input.user_id,
        name: input.name.trim().to_string(),
        role: input.role.as_str().to_string(),
        token_hash: hash_token(&token),
        hint: token_hint(&token),
        created_at: now,
        updated_at: now,
        last_used_at: None,
        expires_at: input.expires_at,
    };
    // The token itself is not in the entry: `token` is absent until set below.
    let logged = TokenOut::from(row.clone());
    auth.created(&state, "token", row.id, &logged)
        .insert(&row)
        .await?;
    let mut out = logged;
    out.token = Some(token);
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/tokens/{id}", tag = "tokens",
    responses((status = 200, body = TokenOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<TokenOut>, ApiError> {
    auth.require(Permission::ManageTokens)?;
    Ok(Json(
        state.store.get::<ApiToken>(auth.org_id, id).await?.into(),
    ))
}

#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::ManageTokens)?;
    let token = state.store.get::<ApiToken>(auth.org_id, id).await?;
    let role = Role::parse(&token.role).unwrap_or(Role::Owner);
    if !auth.role.can_grant(role) {
        return Err(ApiError::Forbidden(format!(
            "A `{}` token cannot revoke a `{}` token.",
            auth.role.as_str(),
            role.as_str()
        )));
    }
    let before = TokenOut::from(token);
    auth.deleted(&state, "token", id, &before)
        .delete::<ApiToken>(auth.org_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
