//! Alerts: `/alert-channels` (where messages go), `/alert-rules` (when to tell), `/alerts`
//! (the incidents, with acknowledge / resolve / ignore) and `/notifications` (every message
//! sent or tried).

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
use super::extract::{parse_json, ApiJson, ApiQuery, Errors, IdPath};
use super::{AppState, Auth, Page, PageParams};
use crate::alerts::rule::{Definition, KINDS};
use crate::crypto::random_string;
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{Alert, AlertChannel, AlertRule, Notification, Stream, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels, create_channel))
        .routes(routes!(get_channel, update_channel, delete_channel))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(ignore))
        .routes(routes!(list_notifications))
}

// ---- channels

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    pub name: String,
    /// `email` (sent through the server's `[smtp]`) or `webhook` (a signed POST).
    pub kind: String,
    /// An e-mail address, or an `https://` URL.
    pub target: String,
    /// Webhook channels: the signing secret (at least 24 characters); generated when unset.
    /// Shown only in the answer to the create.
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    pub name: Option<String>,
    pub target: Option<String>,
    /// A new signing secret (webhook channels).
    pub secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOut {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub target: String,
    /// Webhook channels: the signing secret, only in the answer that set it; `********` after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<AlertChannel> for ChannelOut {
    fn from(c: AlertChannel) -> Self {
        ChannelOut {
            secret: (c.kind == "webhook").then(|| "********".into()),
            id: c.id,
            name: c.name,
            kind: c.kind,
            target: c.target,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

fn check_channel(c: &AlertChannel, secret: Option<&str>) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.title("name", &c.name);
    match c.kind.as_str() {
        "email" => {
            if c.target.parse::<lettre::message::Mailbox>().is_err() {
                errors.add(
                    "target",
                    "is not an e-mail address, e.g. ops@example.com or Ops <ops@example.com>",
                );
            }
            if secret.is_some() {
                errors.add("secret", "applies to webhook channels only; remove it");
            }
        }
        "webhook" => {
            match reqwest::Url::parse(&c.target) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => errors.add("target", "must be an http:// or https:// URL"),
            }
            if secret.is_some_and(|s| s.len() < 24 || s.len() > 200) {
                errors.add("secret", "must be 24 to 200 characters");
            }
        }
        _ => errors.add("kind", "must be email or webhook"),
    }
    if c.target.len() > 2000 {
        errors.add("target", "must be at most 2000 characters");
    }
    errors.finish()
}

/// The columns of an alert channels export: never the signing secret, not even masked.
const CHANNEL_COLUMNS: &[&str] = &["id", "name", "kind", "target", "created_at", "updated_at"];

#[utoipa::path(get, path = "/alert-channels", tag = "alerts", params(PageParams),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every alert channel (without its secret) as CSV",
        content((Page<ChannelOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list_channels(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let q = page.query(Vec::new())?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "alert-channels", CHANNEL_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<AlertChannel>(org, &q).await?;
            Ok(Page::from_store(result, ChannelOut::from))
        }
    })
    .await
}

#[utoipa::path(post, path = "/alert-channels", tag = "alerts", request_body = ChannelIn,
    responses((status = 201, body = ChannelOut), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_channel(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<ChannelIn>,
) -> Result<(StatusCode, Json<ChannelOut>), ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let now = Timestamp::now();
    let mut c = AlertChannel {
        id: Uuid::now_v7(),
        org_id: auth.org_id,
        name: input.name.trim().to_string(),
        kind: input.kind,
        target: input.target.trim().to_string(),
        sealed_secret: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    check_channel(&c, input.secret.as_deref())?;
    let secret = (c.kind == "webhook").then(|| {
        input
            .secret
            .unwrap_or_else(|| format!("whsec_{}", random_string(32)))
    });
    if let Some(s) = &secret {
        c.sealed_secret = state.master_key.seal(c.id.as_bytes(), s.as_bytes());
    }
    let mut out = ChannelOut::from(c.clone());
    auth.created(&state, "alert_channel", c.id, &out)
        .insert(&c)
        .await?;
    out.secret = secret;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/alert-channels/{id}", tag = "alerts",
    responses((status = 200, body = ChannelOut), (status = 404, body = Problem)))]
async fn get_channel(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<ChannelOut>, ApiError> {
    auth.require(Permission::Read)?;
    let c: AlertChannel = state.store.get(auth.org_id, id).await?;
    Ok(Json(c.into()))
}

#[utoipa::path(patch, path = "/alert-channels/{id}", tag = "alerts", request_body = ChannelPatch,
    responses((status = 200, body = ChannelOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_channel(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<ChannelPatch>,
) -> Result<Json<ChannelOut>, ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let mut c: AlertChannel = state.store.get(auth.org_id, id).await?;
    let was = ChannelOut::from(c.clone());
    if let Some(v) = p.name {
        c.name = v.trim().to_string();
    }
    if let Some(v) = p.target {
        c.target = v.trim().to_string();
    }
    check_channel(&c, p.secret.as_deref())?;
    if let Some(s) = &p.secret {
        c.sealed_secret = state.master_key.seal(c.id.as_bytes(), s.as_bytes());
    }
    c.updated_at = Timestamp::now();
    let mut out = ChannelOut::from(c.clone());
    let mut changes = super::audit::changes(Some(&was), Some(&out));
    if p.secret.is_some() {
        changes["secret"] = serde_json::json!(["********", "********"]);
    }
    auth.audited(
        &state,
        "alert_channel.update",
        "alert_channel",
        Some(id),
        changes,
    )
    .update(auth.org_id, &c)
    .await?;
    if p.secret.is_some() {
        out.secret = p.secret;
    }
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/alert-channels/{id}", tag = "alerts",
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_channel(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let channel: AlertChannel = state.store.get(auth.org_id, id).await?;
    // A channel rules still send to is in use: deleting it would silence them.
    let mut using = Vec::new();
    let mut q = crate::store::ListQuery {
        limit: 500,
        ..Default::default()
    };
    loop {
        let page = state.store.list::<AlertRule>(auth.org_id, &q).await?;
        for r in &page.items {
            let names_it = r.definition.0["channel_ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|v| v.as_str() == Some(&id.to_string())));
            if names_it {
                using.push(format!("{} ({})", r.name, r.id));
            }
        }
        match page.next_cursor {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    if !using.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the channel {} is used by the alert rules {}; remove it from them first",
            channel.name,
            using.join(", ")
        )));
    }
    auth.deleted(&state, "alert_channel", id, &ChannelOut::from(channel))
        .delete::<AlertChannel>(auth.org_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- rules

/// A rule as sent and shown; PATCH takes any of its fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    pub name: String,
    /// `job_failed`, `event_error`, `event_failed`, `error_rate`, `silence` or `stuck`.
    pub kind: String,
    #[serde(default)]
    pub stream_ids: Vec<Uuid>,
    pub threshold_pct: Option<f64>,
    pub min_events: Option<u64>,
    pub window_minutes: Option<u64>,
    pub silence_minutes: Option<u64>,
    pub stuck_minutes: Option<u64>,
    pub check_window: Option<crate::alerts::rule::CheckWindow>,
    #[serde(default)]
    pub channel_ids: Vec<Uuid>,
    pub flood: Option<crate::alerts::rule::Flood>,
    /// `none` (default), `daily` or `weekly`: a summary of each watched stream.
    pub digest: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    #[serde(flatten)]
    pub definition: Definition,
    pub digest: String,
    pub enabled: bool,
    pub digest_sent_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<AlertRule> for RuleOut {
    fn from(r: AlertRule) -> Self {
        RuleOut {
            definition: serde_json::from_value(r.definition.0).unwrap_or_else(|_| {
                serde_json::from_value(Value::Object(Default::default())).expect("defaults")
            }),
            id: r.id,
            name: r.name,
            kind: r.kind,
            digest: r.digest,
            enabled: r.enabled,
            digest_sent_at: r.digest_sent_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl RuleIn {
    fn definition(&self) -> Definition {
        let mut d: Definition =
            serde_json::from_value(Value::Object(Default::default())).expect("defaults");
        d.stream_ids = self.stream_ids.clone();
        d.channel_ids = self.channel_ids.clone();
        d.check_window = self.check_window.clone();
        if let Some(v) = self.threshold_pct {
            d.threshold_pct = v;
        }
        if let Some(v) = self.min_events {
            d.min_events = v;
        }
        if let Some(v) = self.window_minutes {
            d.window_minutes = v;
        }
        if let Some(v) = self.silence_minutes {
            d.silence_minutes = v;
        }
        if let Some(v) = self.stuck_minutes {
            d.stuck_minutes = v;
        }
        if let Some(v) = self.flood {
            d.flood = v;
        }
        d
    }
}

/// Validates `input` and builds the rule `id` of `org` from it.
async fn rule_of(
    state: &AppState,
    org: Uuid,
    id: Uuid,
    input: RuleIn,
) -> Result<AlertRule, ApiError> {
    let mut errors = Errors::default();
    errors.title("name", &input.name);
    if !KINDS.contains(&input.kind.as_str()) {
        errors.add("kind", format!("must be one of: {}", KINDS.join(", ")));
    }
    let digest = input.digest.clone().unwrap_or_else(|| "none".into());
    if !matches!(digest.as_str(), "none" | "daily" | "weekly") {
        errors.add("digest", "must be none, daily or weekly");
    }
    let definition = input.definition();
    for (field, message) in definition.problems(&input.kind) {
        errors.add(field, message);
    }
    for (i, stream) in definition.stream_ids.iter().enumerate() {
        if state.store.get::<Stream>(org, *stream).await.is_err() {
            errors.add(
                format!("stream_ids[{i}]"),
                "is not a stream of this organisation",
            );
        }
    }
    if definition.channel_ids.is_empty() {
        errors.add(
            "channel_ids",
            "must name at least one channel (POST /alert-channels), or the rule tells no one",
        );
    }
    for (i, channel) in definition.channel_ids.iter().enumerate() {
        if state
            .store
            .get::<AlertChannel>(org, *channel)
            .await
            .is_err()
        {
            errors.add(
                format!("channel_ids[{i}]"),
                "is not an alert channel of this organisation",
            );
        }
    }
    errors.finish()?;
    let now = Timestamp::now();
    Ok(AlertRule {
        id,
        org_id: org,
        name: input.name.trim().to_string(),
        kind: input.kind,
        definition: DbJson(serde_json::to_value(&definition).expect("plain struct")),
        digest,
        enabled: input.enabled.unwrap_or(true),
        digest_sent_at: None,
        created_at: now,
        updated_at: now,
    })
}

/// The columns of an alert rules export.
const RULE_COLUMNS: &[&str] = &[
    "id",
    "name",
    "kind",
    "enabled",
    "digest",
    "stream_ids",
    "channel_ids",
    "threshold_pct",
    "min_events",
    "window_minutes",
    "silence_minutes",
    "stuck_minutes",
    "check_window",
    "flood",
    "digest_sent_at",
    "created_at",
    "updated_at",
];

#[utoipa::path(get, path = "/alert-rules", tag = "alerts", params(PageParams),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every alert rule as CSV",
        content((Page<RuleOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list_rules(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let q = page.query(Vec::new())?;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "alert-rules", RULE_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<AlertRule>(org, &q).await?;
            Ok(Page::from_store(result, RuleOut::from))
        }
    })
    .await
}

#[utoipa::path(post, path = "/alert-rules", tag = "alerts", request_body = RuleIn,
    responses((status = 201, body = RuleOut), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_rule(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<RuleIn>,
) -> Result<(StatusCode, Json<RuleOut>), ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let rule = rule_of(&state, auth.org_id, Uuid::now_v7(), input).await?;
    let out = RuleOut::from(rule.clone());
    auth.created(&state, "alert_rule", rule.id, &out)
        .insert(&rule)
        .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[utoipa::path(get, path = "/alert-rules/{id}", tag = "alerts",
    responses((status = 200, body = RuleOut), (status = 404, body = Problem)))]
async fn get_rule(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<RuleOut>, ApiError> {
    auth.require(Permission::Read)?;
    let r: AlertRule = state.store.get(auth.org_id, id).await?;
    Ok(Json(r.into()))
}

#[utoipa::path(patch, path = "/alert-rules/{id}", tag = "alerts", request_body = Object,
    responses((status = 200, body = RuleOut), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_rule(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<RuleOut>, ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let old: AlertRule = state.store.get(auth.org_id, id).await?;
    // The rule as it is, in the shape it is sent in, with the patch's fields over it.
    let mut merged = serde_json::to_value(RuleOut::from(old.clone())).expect("plain struct");
    let fields = merged.as_object_mut().expect("an object");
    for read_only in ["id", "digest_sent_at", "created_at", "updated_at"] {
        fields.remove(read_only);
    }
    for (k, v) in patch {
        if matches!(
            k.as_str(),
            "id" | "digest_sent_at" | "created_at" | "updated_at"
        ) {
            return Err(ApiError::invalid(k, "cannot be changed"));
        }
        fields.insert(k, v);
    }
    let input: RuleIn = parse_json(&serde_json::to_vec(&merged).expect("JSON"))?;
    let mut rule = rule_of(&state, auth.org_id, id, input).await?;
    rule.created_at = old.created_at;
    rule.digest_sent_at = old.digest_sent_at;
    let out = RuleOut::from(rule.clone());
    auth.updated(&state, "alert_rule", id, &RuleOut::from(old), &out)
        .update(auth.org_id, &rule)
        .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/alert-rules/{id}", tag = "alerts",
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_rule(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::ManageAlerts)?;
    let before = RuleOut::from(state.store.get::<AlertRule>(auth.org_id, id).await?);
    auth.deleted(&state, "alert_rule", id, &before)
        .delete::<AlertRule>(auth.org_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- alerts

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertOut {
    pub id: Uuid,
    pub rule_id: Uuid,
    pub stream_id: Uuid,
    /// For event rules, the code the alert is about.
    pub error_code: Option<String>,
    /// `open`, `acknowledged`, `resolved` or `ignored`.
    pub status: String,
    pub first_seen_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Matches so far (status-change rules); the measure found (condition rules).
    pub count: i64,
    pub summary: String,
    /// Up to ten events (jobs, for `job_failed`) it is about.
    pub sample_event_ids: Value,
    pub resolved_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl From<Alert> for AlertOut {
    fn from(a: Alert) -> Self {
        AlertOut {
            id: a.id,
            rule_id: a.rule_id,
            stream_id: a.stream_id,
            error_code: (!a.error_code.is_empty()).then_some(a.error_code),
            status: a.status,
            first_seen_at: a.first_seen_at,
            last_seen_at: a.last_seen_at,
            count: a.count,
            summary: a.summary,
            sample_event_ids: a.sample_event_ids.0,
            resolved_at: a.resolved_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub stream_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
}

#[utoipa::path(get, path = "/alerts", tag = "alerts", params(PageParams, AlertFilter),
    responses((status = 200, description = "A page, newest first; with `Accept: text/csv`, every matching alert as CSV",
        content((Page<AlertOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list_alerts(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<AlertFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = filter.status {
        filters.push(("status", Val::from(v)));
    }
    if let Some(v) = filter.stream_id {
        filters.push(("stream_id", Val::from(v)));
    }
    if let Some(v) = filter.rule_id {
        filters.push(("rule_id", Val::from(v)));
    }
    let mut q = page.query(filters)?;
    q.desc = true;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(&headers, "alerts", ALERT_COLUMNS, q, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<Alert>(org, &q).await?;
            Ok(Page::from_store(result, AlertOut::from))
        }
    })
    .await
}

/// The columns of an alerts export.
const ALERT_COLUMNS: &[&str] = &[
    "id",
    "rule_id",
    "stream_id",
    "error_code",
    "status",
    "first_seen_at",
    "last_seen_at",
    "count",
    "summary",
    "sample_event_ids",
    "resolved_at",
    "updated_at",
];

#[utoipa::path(get, path = "/alerts/{id}", tag = "alerts",
    responses((status = 200, body = AlertOut), (status = 404, body = Problem)))]
async fn get_alert(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<AlertOut>, ApiError> {
    auth.require(Permission::Read)?;
    let a: Alert = state.store.get(auth.org_id, id).await?;
    Ok(Json(a.into()))
}

/// Moves an alert to `to` from one of `from`.
async fn act(
    state: &AppState,
    auth: &Auth,
    id: Uuid,
    from: &[&str],
    to: &str,
) -> Result<Json<AlertOut>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let verb = match to {
        "acknowledged" => "acknowledge",
        "resolved" => "resolve",
        _ => "ignore",
    };
    for _ in 0..3 {
        let a: Alert = state.store.get(auth.org_id, id).await?;
        let changes = serde_json::json!({"status": [a.status, to]});
        let store = auth.audited(state, &format!("alert.{verb}"), "alert", Some(id), changes);
        if a.status == to {
            store.record_audit().await?;
            return Ok(Json(a.into()));
        }
        if !from.contains(&a.status.as_str()) {
            return Err(ApiError::Conflict(format!(
                "the alert is {}; only an alert that is {} can become {to}",
                a.status,
                from.join(" or ")
            )));
        }
        let now = Timestamp::now();
        if store
            .set_alert_status(auth.org_id, id, a.updated_at, to, now)
            .await?
        {
            let a: Alert = state.store.get(auth.org_id, id).await?;
            return Ok(Json(a.into()));
        }
    }
    Err(ApiError::Conflict(
        "the alert changed while this request ran; read it and try again".into(),
    ))
}

#[utoipa::path(post, path = "/alerts/{id}/acknowledge", tag = "alerts",
    responses((status = 200, body = AlertOut), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn acknowledge(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<AlertOut>, ApiError> {
    act(&state, &auth, id, &["open"], "acknowledged").await
}

#[utoipa::path(post, path = "/alerts/{id}/resolve", tag = "alerts",
    responses((status = 200, body = AlertOut), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn resolve(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<AlertOut>, ApiError> {
    act(
        &state,
        &auth,
        id,
        &["open", "acknowledged", "ignored"],
        "resolved",
    )
    .await
}

#[utoipa::path(post, path = "/alerts/{id}/ignore", tag = "alerts",
    responses((status = 200, body = AlertOut), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn ignore(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<AlertOut>, ApiError> {
    act(&state, &auth, id, &["open", "acknowledged"], "ignored").await
}

// ---- notifications

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOut {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub alert_id: Option<Uuid>,
    pub rule_id: Option<Uuid>,
    /// `opened`, `repeated`, `resolved` or `digest`.
    pub kind: String,
    pub subject: String,
    /// What a webhook channel receives (`text` is an e-mail's body).
    pub body: Value,
    /// `pending` (waiting for a try), `sent` or `failed` (every try failed).
    pub status: String,
    pub tries: i64,
    pub next_try_at: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    /// Why the last try failed.
    pub error: Option<String>,
    pub created_at: Timestamp,
}

impl From<Notification> for NotificationOut {
    fn from(n: Notification) -> Self {
        NotificationOut {
            id: n.id,
            channel_id: n.channel_id,
            alert_id: n.alert_id,
            rule_id: n.rule_id,
            kind: n.kind,
            subject: n.subject,
            body: n.body.0,
            status: n.status,
            tries: n.tries,
            next_try_at: n.next_try_at,
            sent_at: n.sent_at,
            error: n.error,
            created_at: n.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationFilter {
    pub status: Option<String>,
    pub alert_id: Option<Uuid>,
    pub channel_id: Option<Uuid>,
}

/// The columns of a notifications export (the message itself, `body`, last).
const NOTIFICATION_COLUMNS: &[&str] = &[
    "id",
    "channel_id",
    "alert_id",
    "rule_id",
    "kind",
    "subject",
    "status",
    "tries",
    "next_try_at",
    "sent_at",
    "error",
    "created_at",
    "body",
];

#[utoipa::path(get, path = "/notifications", tag = "alerts", params(PageParams, NotificationFilter),
    responses((status = 200, description = "A page, newest first; with `Accept: text/csv`, every matching notification as CSV",
        content((Page<NotificationOut> = "application/json"), (String = "text/csv"))),
        (status = 401, body = Problem)))]
async fn list_notifications(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(filter): ApiQuery<NotificationFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::Read)?;
    let mut filters = Vec::new();
    if let Some(v) = filter.status {
        filters.push(("status", Val::from(v)));
    }
    if let Some(v) = filter.alert_id {
        filters.push(("alert_id", Val::from(v)));
    }
    if let Some(v) = filter.channel_id {
        filters.push(("channel_id", Val::from(v)));
    }
    let mut q = page.query(filters)?;
    q.desc = true;
    let (store, org) = (state.store.clone(), auth.org_id);
    list_response(
        &headers,
        "notifications",
        NOTIFICATION_COLUMNS,
        q,
        move |q| {
            let store = store.clone();
            async move {
                let result = store.list::<Notification>(org, &q).await?;
                Ok(Page::from_store(result, NotificationOut::from))
            }
        },
    )
    .await
}
