//! `/sources`: a source function of a system, with its key, params and trigger.

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
use super::extract::{double_option, ApiJson, ApiQuery, Errors, IdPath};
use super::keys::in_use;
use super::{AppState, Auth, Page, PageParams};
use crate::connectors::{self, Trigger};
use crate::crypto::random_string;
use crate::domain::{schedule, Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Key, Source, StoreError, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceIn {
    pub title: String,
    pub system: String,
    /// A source function of the system, e.g. `shopify.webhook`.
    pub function: String,
    pub key_id: Option<Uuid>,
    /// `manual`, `scheduled` or `webhook`.
    #[schema(schema_with = super::openapi_doc::lists::source_trigger)]
    pub trigger: String,
    /// 5-field cron expression, for `scheduled`.
    pub schedule: Option<String>,
    /// IANA time zone of the schedule; UTC when unset.
    pub timezone: Option<String>,
    #[serde(default = "empty_object")]
    pub params: Value,
    #[serde(default = "yes")]
    pub active: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    pub title: Option<String>,
    pub function: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub key_id: Option<Option<Uuid>>,
    #[schema(schema_with = super::openapi_doc::lists::source_trigger)]
    pub trigger: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    pub params: Option<Value>,
    pub active: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOut {
    pub id: Uuid,
    pub title: String,
    pub system: String,
    pub function: String,
    pub key_id: Option<Uuid>,
    #[schema(schema_with = super::openapi_doc::lists::source_trigger)]
    pub trigger: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub params: Value,
    pub active: bool,
    /// Where the system pushes to, for `webhook` sources (no bearer token needed there). Shown to
    /// editors and above only: whoever knows it can push.
    pub webhook_url: Option<String>,
    /// The next due run of a `scheduled` source.
    pub next_run_at: Option<Timestamp>,
    /// Subscriptions installed at the system (`POST /sources/{id}/webhooks/install`).
    pub webhooks: Value,
    /// Pushes refused by verification (wrong signature or credentials).
    pub rejected_count: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceFilter {
    pub system: Option<String>,
    #[param(schema_with = super::openapi_doc::lists::source_trigger)]
    pub trigger: Option<String>,
}

/// A source as the API shows it.
pub fn source_out(state: &AppState, s: Source) -> SourceOut {
    let base = state
        .config
        .public_base_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    SourceOut {
        webhook_url: s
            .webhook_token
            .as_ref()
            .map(|t| format!("{base}/hooks/{t}")),
        id: s.id,
        title: s.title,
        system: s.system,
        function: s.function,
        key_id: s.key_id,
        trigger: s.trigger,
        schedule: s.schedule,
        timezone: s.timezone,
        params: s.params.0,
        active: s.active,
        next_run_at: s.next_run_at,
        webhooks: s.webhook_state.0,
        rejected_count: s.rejected_count,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

/// A source as the caller may see it: the webhook URL alone authorises pushes, so only roles
/// that may change sources (editors and above) see it, in `webhook_url` or in the installed
/// subscriptions' `address`.
pub fn source_view(state: &AppState, auth: &Auth, s: Source) -> SourceOut {
    let mut out = source_out(state, s);
    if !auth.role.allows(Permission::WriteStreams) {
        out.webhook_url = None;
        if let Some(state) = out.webhooks.as_object_mut() {
            state.remove("address");
        }
    }
    out
}

/// Checks a source as a whole and fills in what follows from it: the webhook token of a
/// webhook source, the next run of a scheduled one.
async fn check(state: &AppState, org: Uuid, s: &mut Source) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("title", &s.title);
    let Some(system) = connectors::system(&s.system) else {
        errors.add(
            "system",
            "is not a system of the library; see GET /api/v1/systems",
        );
        return errors.finish();
    };
    let trigger = Trigger::parse(&s.trigger);
    if trigger.is_none() {
        errors.add("trigger", "must be one of: manual, scheduled, webhook");
    }
    match system.source(&s.function) {
        None => {
            let names: Vec<_> = system.sources.iter().map(|f| f.name).collect();
            errors.add(
                "function",
                format!(
                    "is not a source function of `{}`; choose one of: {}",
                    system.name,
                    names.join(", ")
                ),
            );
        }
        Some(func) => {
            if let Some(t) = trigger {
                if !func.triggers.contains(&t) {
                    errors.add(
                        "trigger",
                        format!("`{}` cannot be started by `{}`", func.name, s.trigger),
                    );
                }
            }
            errors.extend(connectors::validate(func.params, &s.params.0, "params"));
        }
    }
    check_key(
        state,
        org,
        system.name,
        system.key_required,
        s.key_id,
        &mut errors,
    )
    .await?;
    match trigger {
        Some(Trigger::Scheduled) => {
            let tz = s.timezone.get_or_insert_with(|| "UTC".into()).clone();
            if let Err(e) = schedule::parse_timezone(&tz) {
                errors.add("timezone", e);
            }
            match &s.schedule {
                None => errors.add(
                    "schedule",
                    "is required for a scheduled source, e.g. `*/15 * * * *`",
                ),
                Some(expr) => match schedule::next_run(expr, &tz, Timestamp::now().0) {
                    Ok(next) => s.next_run_at = Some(Timestamp::from_datetime(next)),
                    Err(e) => errors.add("schedule", e),
                },
            }
        }
        _ => {
            if s.schedule.is_some() {
                errors.add("schedule", "is only for scheduled sources");
            }
            if s.timezone.is_some() {
                errors.add("timezone", "is only for scheduled sources");
            }
            s.next_run_at = None;
        }
    }
    if trigger == Some(Trigger::Webhook) {
        if s.webhook_token.is_none() {
            s.webhook_token = Some(random_string(24));
        }
    } else {
        s.webhook_token = None;
    }
    errors.finish()
}

/// A key reference must name a key of the same organisation and system.
pub async fn check_key(
    state: &AppState,
    org: Uuid,
    system: &str,
    required: bool,
    key_id: Option<Uuid>,
    errors: &mut Errors,
) -> Result<(), ApiError> {
    match key_id {
        None if required => errors.add("key_id", format!("is required: `{system}` needs a key")),
        None => {}
        Some(id) => match state.store.get::<Key>(org, id).await {
            Ok(key) if key.system == system => {}
            Ok(key) => errors.add(
                "key_id",
                format!("is a `{}` key; a `{system}` key is needed", key.system),
            ),
            Err(StoreError::NotFound(_)) => {
                errors.add("key_id", "names no key of your organisation")
            }
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// A source or destination with a `url` param sends its key's credentials to that URL. With a
/// key that names a `base_url`, the URL must lie under it; with a key that holds secrets but
/// names none, only an admin or owner may choose the URL (they decide where secrets go).
pub async fn check_key_url(
    state: &AppState,
    auth: &Auth,
    key_id: Option<Uuid>,
    params: &Value,
    errors: &mut Errors,
) -> Result<(), ApiError> {
    let (Some(key_id), Some(url)) = (key_id, params.get("url").and_then(Value::as_str)) else {
        return Ok(());
    };
    let key = match state.store.get::<Key>(auth.org_id, key_id).await {
        Ok(key) => key,
        // check_key names a missing key.
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let template = connectors::system(&key.system).map_or(&[][..], |s| s.key_template);
    match key.credentials.0.get("base_url").and_then(Value::as_str) {
        Some(base) => {
            if !connectors::url_within(url, base) {
                errors.add(
                    "params.url",
                    format!("must lie under the key's base_url `{base}`: the key's credentials are sent only there; use another URL or another key"),
                );
            }
        }
        None => {
            let holds_secrets = template
                .iter()
                .any(|f| f.secret && connectors::lookup(&key.credentials.0, f.name).is_some());
            if holds_secrets && !auth.role.allows(Permission::DirectSecrets) {
                return Err(ApiError::Forbidden(format!(
                    "Key `{}` holds secrets but names no base_url, so they would go to whatever `url` says; only an admin or owner may choose that URL. Ask one to set the key's base_url (then any URL under it is yours to use), or to make this change.",
                    key.title
                )));
            }
        }
    }
    Ok(())
}

/// The columns of a sources export: not the webhook URL nor the installed webhooks (whoever
/// knows the URL can push).
const SOURCE_COLUMNS: &[&str] = &[
    "id",
    "title",
    "system",
    "function",
    "key_id",
    "trigger",
    "schedule",
    "timezone",
    "active",
    "next_run_at",
    "rejected_count",
    "created_at",
    "updated_at",
    "params",
];

#[utoipa::path(get, path = "/sources", tag = "sources", params(PageParams, SourceFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching source as CSV",
        content((Page<SourceOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<SourceFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = filter.system {
        filters.push(("system", Val::from(v)));
    }
    if let Some(v) = filter.trigger {
        filters.push(("trigger", Val::from(v)));
    }
    let q = page.query(filters)?;
    let org = auth.org_id;
    list_response(&headers, "sources", SOURCE_COLUMNS, q, move |q| {
        let (state, auth) = (state.clone(), auth.clone());
        async move {
            let result = state.store.list::<Source>(org, &q).await?;
            Ok(Page::from_store(result, |s| source_view(&state, &auth, s)))
        }
    })
    .await
}

#[utoipa::path(post, path = "/sources", tag = "sources", request_body = SourceIn,
    responses((status = 201, body = SourceOut), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<SourceIn>,
) -> Result<(StatusCode, Json<SourceOut>), ApiError> {
    auth.require(Permission::WriteStreams)?;
    let now = Timestamp::now();
    let mut source = Source {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        title: input.title.trim().to_string(),
        system: input.system,
        function: input.function,
        key_id: input.key_id,
        trigger: input.trigger,
        schedule: input.schedule,
        timezone: input.timezone,
        params: DbJson(input.params),
        webhook_token: None,
        active: input.active,
        next_run_at: None,
        webhook_state: DbJson(empty_object()),
        rejected_count: 0,
        read_state: None,
        read_version: 0,
        created_at: now,
        updated_at: now,
    };
    check(&state, auth.org_id, &mut source).await?;
    let mut errors = Errors::default();
    check_key_url(&state, &auth, source.key_id, &source.params.0, &mut errors).await?;
    errors.finish()?;
    let out = source_out(&state, source.clone());
    auth.created(&state, "source", source.id, &out)
        .insert(&source)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/sources/{id}", tag = "sources",
    responses((status = 200, body = SourceOut), (status = 404, body = Problem)))]
async fn get(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<SourceOut>, ApiError> {
    auth.require(Permission::Read)?;
    let s = state.store.get::<Source>(auth.org_id, id).await?;
    Ok(Json(source_view(&state, &auth, s)))
}

#[utoipa::path(patch, path = "/sources/{id}", tag = "sources", request_body = SourcePatch,
    responses((status = 200, body = SourceOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<SourcePatch>,
) -> Result<Json<SourceOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let mut s = state.store.get::<Source>(auth.org_id, id).await?;
    let was = source_out(&state, s.clone());
    let before = (s.key_id, s.params.0.get("url").cloned());
    if let Some(v) = p.title {
        s.title = v.trim().to_string();
    }
    if let Some(v) = p.function {
        s.function = v;
    }
    if let Some(v) = p.key_id {
        s.key_id = v;
    }
    if let Some(v) = p.trigger {
        s.trigger = v;
    }
    if let Some(v) = p.schedule {
        s.schedule = v;
    }
    if let Some(v) = p.timezone {
        s.timezone = v;
    }
    if let Some(v) = p.params {
        s.params = DbJson(v);
    }
    if let Some(v) = p.active {
        s.active = v;
    }
    check(&state, auth.org_id, &mut s).await?;
    if before != (s.key_id, s.params.0.get("url").cloned()) {
        let mut errors = Errors::default();
        check_key_url(&state, &auth, s.key_id, &s.params.0, &mut errors).await?;
        errors.finish()?;
    }
    s.updated_at = Timestamp::now();
    let out = source_out(&state, s.clone());
    auth.updated(&state, "source", id, &was, &out)
        .update(auth.org_id, &s)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/sources/{id}", tag = "sources",
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let before = source_out(&state, state.store.get::<Source>(auth.org_id, id).await?);
    auth.deleted(&state, "source", id, &before)
        .delete::<Source>(auth.org_id, id)
        .await
        .map_err(|e| in_use(e, "source", "a stream"))?;
    Ok(StatusCode::NO_CONTENT)
}
