//! The audit log: how a handler describes its change (who, what, which object, the fields
//! before and after with secrets masked), and `GET /audit-log`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::ApiQuery;
use super::{AppState, Auth, Page, PageParams};
use crate::audit::{audited, Change};
pub use crate::audit::{changes, set_fields};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::store::{AuditEntry, Store, Val};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

impl Auth {
    /// The store for creating `out` (`<type>.create`, every field set).
    pub fn created<T: Serialize>(&self, state: &AppState, kind: &str, id: Uuid, out: &T) -> Store {
        let changes = changes(None, Some(out));
        self.audited(state, &format!("{kind}.create"), kind, Some(id), changes)
    }

    /// The store for changing `before` into `after` (`<type>.update`, the fields that differ).
    pub fn updated<T: Serialize>(
        &self,
        state: &AppState,
        kind: &str,
        id: Uuid,
        before: &T,
        after: &T,
    ) -> Store {
        let changes = changes(Some(before), Some(after));
        self.audited(state, &format!("{kind}.update"), kind, Some(id), changes)
    }

    /// The store for deleting `before` (`<type>.delete`, every field it had).
    pub fn deleted<T: Serialize>(
        &self,
        state: &AppState,
        kind: &str,
        id: Uuid,
        before: &T,
    ) -> Store {
        let changes = changes(Some(before), None);
        self.audited(state, &format!("{kind}.delete"), kind, Some(id), changes)
    }

    /// The store for this request's change, `action` on `object_type` `object_id`: the
    /// change's first write commits the audit entry with it.
    pub fn audited(
        &self,
        state: &AppState,
        action: &str,
        object_type: &str,
        object_id: Option<Uuid>,
        changes: Value,
    ) -> Store {
        let entry = Change {
            org_id: self.org_id,
            actor: &self.actor,
            action,
            object_type,
            object_id,
            changes,
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
        .entry(state.clock.now(), state.config.auth.audit_value_chars);
        audited(&state.store, &self.slot, entry)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActorOut {
    /// `user` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectOut {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    pub id: Uuid,
    pub at: Timestamp,
    pub actor: ActorOut,
    /// `<object type>.<verb>`, e.g. `stream.update`, `event.replicate`, `session.create`.
    pub action: String,
    pub object: ObjectOut,
    /// `{field: [before, after]}`; secrets show as `********`.
    #[schema(value_type = Object)]
    pub changes: Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl From<AuditEntry> for AuditEntryOut {
    fn from(e: AuditEntry) -> Self {
        AuditEntryOut {
            id: e.id,
            at: e.at,
            actor: ActorOut {
                kind: e.actor_type,
                id: e.actor_id,
                name: e.actor_name,
            },
            action: e.action,
            object: ObjectOut {
                kind: e.object_type,
                id: e.object_id,
            },
            changes: e.changes.0,
            ip: e.ip,
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Page size, 1 to 500; 50 when unset.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Exact action, e.g. `stream.update`.
    pub action: Option<String>,
    /// Object type, e.g. `stream`.
    pub object_type: Option<String>,
    pub object_id: Option<Uuid>,
    /// `user` or `token`.
    pub actor_type: Option<String>,
    pub actor_id: Option<Uuid>,
    /// Entries at or after this time (RFC 3339).
    pub after: Option<Timestamp>,
    /// Entries before this time (RFC 3339).
    pub before: Option<Timestamp>,
    /// `asc` (oldest first, the default) or `desc`.
    pub order: Option<String>,
}

/// The audit log, oldest first (or newest with `order=desc`); `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/audit-log", tag = "audit-log", params(AuditFilter),
    responses((status = 200, description = "A page; with `Accept: text/csv`, every matching entry as CSV",
        content((Page<AuditEntryOut> = "application/json"), (String = "text/csv"))),
        (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    ApiQuery(f): ApiQuery<AuditFilter>,
) -> Result<Response, ApiError> {
    auth.require(Permission::ReadAudit)?;
    let mut filters: Vec<(&'static str, Val)> = Vec::new();
    if let Some(v) = f.action {
        filters.push(("action", v.into()));
    }
    if let Some(v) = f.object_type {
        filters.push(("object_type", v.into()));
    }
    if let Some(v) = f.object_id {
        filters.push(("object_id", v.into()));
    }
    if let Some(v) = f.actor_type {
        filters.push(("actor_type", v.into()));
    }
    if let Some(v) = f.actor_id {
        filters.push(("actor_id", v.into()));
    }
    if let Some(v) = f.after {
        filters.push(("at >=", v.into()));
    }
    if let Some(v) = f.before {
        filters.push(("at <", v.into()));
    }
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut query = page.query(filters)?;
    query.desc = match f.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let (store, org) = (state.store.clone(), auth.org_id);
    super::csv::list_response(&headers, "audit-log", AUDIT_COLUMNS, query, move |q| {
        let store = store.clone();
        async move {
            let result = store.list::<AuditEntry>(org, &q).await?;
            Ok(Page::from_store(result, AuditEntryOut::from))
        }
    })
    .await
}

/// The columns of an audit-log export (actor, object and changes as JSON).
const AUDIT_COLUMNS: &[&str] = &[
    "id",
    "at",
    "action",
    "actor",
    "object",
    "changes",
    "ip",
    "request_id",
];
