//! `/organisations`: the caller's organisation, and (for owners) new organisations, each
//! created with its own owner token. Organisations see nothing of each other.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, Errors, IdPath};
use super::{AppState, Auth, Page};
use crate::config::RetentionPolicy;
use crate::crypto::{generate_token, hash_token, token_hint};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::Organisation;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationIn {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrganisationOut {
    pub id: Uuid,
    pub name: String,
    /// Only when created: the new organisation's first owner token, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// How long data is kept: the organisation's own policy, or the server's default.
    pub retention: RetentionPolicy,
    /// Whether `retention` is the server's default (no policy of its own).
    pub retention_is_default: bool,
    /// Members must turn on 2FA before anything but enrolment.
    pub require_2fa: bool,
}

/// A change of name, retention policy, or both; `"retention": null` goes back to the default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<RetentionIn>)]
    pub retention: Option<Option<RetentionIn>>,
    /// Members must turn on 2FA: one without it can only enrol after signing in.
    pub require_2fa: Option<bool>,
}

/// Days to keep each kind of data; a field left out keeps its current value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionIn {
    pub payload_days: Option<u32>,
    pub records_days: Option<u32>,
    pub log_days: Option<u32>,
    pub audit_days: Option<u32>,
}

fn out(o: Organisation, state: &AppState) -> OrganisationOut {
    let own = o.retention.as_ref().map(|j| &j.0);
    OrganisationOut {
        retention: crate::retention::policy_of(own, &state.config.retention),
        retention_is_default: own.is_none(),
        require_2fa: o.require_2fa,
        id: o.id,
        name: o.name,
        owner_token: None,
        created_at: o.created_at,
        updated_at: o.updated_at,
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.slug("name", name);
    errors.finish()
}

#[utoipa::path(get, path = "/organisations", tag = "organisations",
    responses((status = 200, body = Page<OrganisationOut>), (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Page<OrganisationOut>>, ApiError> {
    auth.require(Permission::Read)?;
    let org = state.store.get_organisation(auth.org_id).await?;
    Ok(Json(Page {
        items: vec![out(org, &state)],
        next_cursor: None,
    }))
}

#[utoipa::path(post, path = "/organisations", tag = "organisations", request_body = OrganisationIn,
    responses((status = 201, body = OrganisationOut), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<OrganisationIn>,
) -> Result<(StatusCode, Json<OrganisationOut>), ApiError> {
    auth.require(Permission::ManageUsers)?;
    check_name(&input.name)?;
    let token = generate_token();
    let changes = super::audit::set_fields(&[("name", serde_json::json!(input.name))]);
    let org = auth
        .audited(&state, "organisation.create", "organisation", None, changes)
        .create_organisation(&input.name, &hash_token(&token), &token_hint(&token))
        .await?;
    let mut out = out(org, &state);
    out.owner_token = Some(token);
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/organisations/{id}", tag = "organisations",
    responses((status = 200, body = OrganisationOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<OrganisationOut>, ApiError> {
    auth.require(Permission::Read)?;
    if id != auth.org_id {
        return Err(ApiError::NotFound("organisation"));
    }
    Ok(Json(out(state.store.get_organisation(id).await?, &state)))
}

#[utoipa::path(patch, path = "/organisations/{id}", tag = "organisations", request_body = OrganisationPatch,
    responses((status = 200, body = OrganisationOut), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<OrganisationPatch>,
) -> Result<Json<OrganisationOut>, ApiError> {
    auth.require(Permission::ManageUsers)?;
    if id != auth.org_id {
        return Err(ApiError::NotFound("organisation"));
    }
    let org = state.store.get_organisation(id).await?;
    let retention = match &input.retention {
        None => None,
        Some(None) => Some(None),
        Some(Some(r)) => {
            let now = crate::retention::policy_of(
                org.retention.as_ref().map(|j| &j.0),
                &state.config.retention,
            );
            let policy = RetentionPolicy {
                payload_days: r.payload_days.unwrap_or(now.payload_days),
                records_days: r.records_days.unwrap_or(now.records_days),
                log_days: r.log_days.unwrap_or(now.log_days),
                audit_days: r.audit_days.unwrap_or(now.audit_days),
            };
            let mut errors = Errors::default();
            for (field, message) in policy.problems() {
                errors.add(format!("retention.{field}"), message);
            }
            errors.finish()?;
            Some(Some(policy))
        }
    };
    if let Some(name) = &input.name {
        check_name(name)?;
    }
    let before = out(org, &state);
    let retention = retention.map(|p| p.map(|p| serde_json::to_value(p).expect("plain struct")));
    let mut after = OrganisationOut {
        name: input.name.clone().unwrap_or_else(|| before.name.clone()),
        require_2fa: input.require_2fa.unwrap_or(before.require_2fa),
        owner_token: None,
        ..before.clone()
    };
    if let Some(policy) = &retention {
        after.retention = crate::retention::policy_of(policy.as_ref(), &state.config.retention);
        after.retention_is_default = policy.is_none();
    }
    let changes = super::audit::changes(Some(&before), Some(&after));
    auth.audited(
        &state,
        "organisation.update",
        "organisation",
        Some(id),
        changes,
    )
    .update_organisation(id, input.name.as_deref(), retention, input.require_2fa)
    .await
    .map_err(|e| match e {
        crate::store::StoreError::Duplicate(_) => ApiError::Conflict(format!(
            "An organisation named `{}` already exists.",
            input.name.as_deref().unwrap_or_default()
        )),
        other => other.into(),
    })?;
    Ok(Json(out(state.store.get_organisation(id).await?, &state)))
}
