//! `POST /sources/{id}/webhooks/install` and `/uninstall`: registering a webhook source's
//! subscriptions at the system through its connector's installer, pointing at Wharf's public
//! URL, and removing them.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::IdPath;
use super::sources::{source_out, SourceOut};
use super::{AppState, Auth};
use crate::connectors::net::Outbound;
use crate::connectors::{self, Call, InstallError, Installer};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::ingest::decode::DecodeLimits;
use crate::store::{Key, Source};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(install))
        .routes(routes!(uninstall))
}

/// A webhook source ready for its installer.
struct Prepared<'s> {
    source: Source,
    installer: &'s dyn Installer,
    /// The source's key, opened.
    creds: Value,
    /// Bounds on what the system's answers may hold.
    decode: DecodeLimits,
}

impl Prepared<'_> {
    /// The installer's call: the source's params and key through the guarded client `net`.
    fn call<'a>(&'a self, net: &'a Outbound) -> Call<'a> {
        Call {
            net,
            params: &self.source.params.0,
            key: Some(&self.creds),
            decode: &self.decode,
        }
    }
}

/// The source, its installer and its key's opened credentials.
async fn prepare<'s>(
    state: &'s AppState,
    auth: &Auth,
    id: uuid::Uuid,
) -> Result<Prepared<'s>, ApiError> {
    auth.require(Permission::WriteStreams)?;
    let source = state.store.get::<Source>(auth.org_id, id).await?;
    if source.trigger != "webhook" {
        return Err(ApiError::Conflict(
            "Only webhook sources have subscriptions to install.".into(),
        ));
    }
    let Some(installer) = state.connectors.installer(&source.function) else {
        return Err(ApiError::Conflict(format!(
            "Wharf installs subscriptions at Shopify, DEAR, WooCommerce and Peoplevox; set up `{}` to push to this source's webhook_url by hand.",
            source.system
        )));
    };
    let key_id = source
        .key_id
        .ok_or_else(|| ApiError::Conflict("The source has no key.".into()))?;
    let key = state.store.get::<Key>(auth.org_id, key_id).await?;
    let creds = connectors::open_key(&state.master_key, &key)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("key {} does not open", key.id)))?;
    Ok(Prepared {
        source,
        installer,
        creds,
        decode: DecodeLimits::from(&state.config.ingest),
    })
}

/// Stores what the system now holds for the source, and answers with the source.
async fn record(
    state: &AppState,
    auth: &Auth,
    source_id: uuid::Uuid,
    webhooks: Value,
) -> Result<Json<SourceOut>, ApiError> {
    let verb = if webhooks["installed"] == true {
        "webhooks_install"
    } else {
        "webhooks_uninstall"
    };
    let changes = super::audit::set_fields(&[("webhooks", webhooks.clone())]);
    auth.audited(
        state,
        &format!("source.{verb}"),
        "source",
        Some(source_id),
        changes,
    )
    .set_webhook_state(auth.org_id, source_id, &webhooks)
    .await?;
    let source = state.store.get::<Source>(auth.org_id, source_id).await?;
    Ok(Json(source_out(state, source)))
}

/// A refused address is the key's mistake (422 naming its field), any other failure a 502.
fn problem(e: InstallError) -> ApiError {
    match e {
        InstallError::Refused { field, message } => ApiError::invalid(field, message),
        InstallError::Upstream(message) => ApiError::Upstream(message),
    }
}

#[utoipa::path(post, path = "/sources/{id}/webhooks/install", tag = "sources",
    responses((status = 200, body = SourceOut), (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn install(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<SourceOut>, ApiError> {
    let prepared = prepare(&state, &auth, id).await?;
    let source = &prepared.source;
    let base = state.config.public_base_url.as_deref().ok_or_else(|| {
        ApiError::Conflict("Set public_base_url (WHARF_PUBLIC_BASE_URL) to the address the system reaches Wharf at, then install.".into())
    })?;
    let address = format!(
        "{}/hooks/{}",
        base.trim_end_matches('/'),
        source.webhook_token.clone().unwrap_or_default()
    );
    let call = prepared.call(&state.outbound);
    // Installing again replaces what was installed: the earlier subscriptions come off first
    // (the system may refuse a second one for the same address), so none is left behind.
    let earlier = installed(source);
    if !earlier.is_empty() {
        remove_all(&prepared, call, &earlier).await?;
    }
    let subscriptions = match prepared
        .installer
        .install(call, &address, &source.title)
        .await
    {
        Ok(made) => made,
        Err(e) => {
            if !earlier.is_empty() {
                let gone = json!({"installed": false, "subscriptions": [],
                    "uninstalled_at": Timestamp::now()});
                record(&state, &auth, source.id, gone).await.map(drop)?;
            }
            return Err(problem(e));
        }
    };
    let webhooks = json!({"installed": true, "address": address, "subscriptions": subscriptions,
        "installed_at": Timestamp::now()});
    record(&state, &auth, source.id, webhooks).await
}

#[utoipa::path(post, path = "/sources/{id}/webhooks/uninstall", tag = "sources",
    responses((status = 200, body = SourceOut), (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)))]
async fn uninstall(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<Json<SourceOut>, ApiError> {
    let prepared = prepare(&state, &auth, id).await?;
    let source = &prepared.source;
    let call = prepared.call(&state.outbound);
    remove_all(&prepared, call, &installed(source)).await?;
    let webhooks =
        json!({"installed": false, "subscriptions": [], "uninstalled_at": Timestamp::now()});
    record(&state, &auth, source.id, webhooks).await
}

/// The subscriptions recorded as installed for a source.
fn installed(source: &Source) -> Vec<Value> {
    source
        .webhook_state
        .0
        .get("subscriptions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Removes each subscription at the system (one already gone is not an error).
async fn remove_all(
    prepared: &Prepared<'_>,
    call: Call<'_>,
    subscriptions: &[Value],
) -> Result<(), ApiError> {
    for sub in subscriptions {
        let id = match &sub["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => continue,
        };
        prepared
            .installer
            .uninstall(call, &id)
            .await
            .map_err(problem)?;
    }
    Ok(())
}
