//! The audit log: one entry per change made through the API, written in the change's own
//! transaction. A request's entry waits in its [`AuditSlot`]; the store handle a handler gets
//! from [`Store::audited`] writes it inside the first write it commits, so the change and its
//! entry commit together or not at all.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::records::record;
use super::resources::{insert_statement, Record};
use super::{on_pool, Bind, Store, StoreResult, Val};
use crate::domain::Timestamp;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: Uuid,
    pub org_id: Uuid,
    pub at: Timestamp,
    /// `user` or `token`.
    pub actor_type: String,
    pub actor_id: Uuid,
    pub actor_name: String,
    /// `<object type>.<verb>`, e.g. `stream.update`.
    pub action: String,
    pub object_type: String,
    pub object_id: Option<Uuid>,
    /// `{field: [before, after]}`, secrets masked.
    pub changes: Json<Value>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

record!(
    AuditEntry,
    "audit_log",
    "audit entry",
    shared = false,
    [
        id,
        org_id,
        at,
        actor_type,
        actor_id,
        actor_name,
        action,
        object_type,
        object_id,
        changes,
        ip,
        request_id
    ]
);

/// A request's audit entry, from when its handler describes the change until a write commits
/// it; and how many entries the request wrote (one, for a change answered 2xx).
#[derive(Debug, Default)]
pub struct AuditSlot(Mutex<SlotState>);

#[derive(Debug, Default)]
struct SlotState {
    pending: Option<AuditEntry>,
    written: u32,
}

impl AuditSlot {
    /// The entry the request's next write carries (replacing one not written yet).
    pub fn set(&self, entry: AuditEntry) {
        self.lock().pending = Some(entry);
    }

    /// Entries the request's writes carried.
    pub fn written(&self) -> u32 {
        self.lock().written
    }

    fn take(&self) -> Option<AuditEntry> {
        let mut state = self.lock();
        let entry = state.pending.take();
        if entry.is_some() {
            state.written += 1;
        }
        entry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// This store, writing the entry waiting in `slot` with its next write.
    pub fn audited(&self, slot: Arc<AuditSlot>) -> Store {
        Store {
            audit: Some(slot),
            ..self.clone()
        }
    }

    /// The INSERT of the entry this handle carries, taken so that it is written once.
    pub(super) fn audit_statement(&self) -> Option<(String, Vec<Val>)> {
        let entry = self.audit.as_ref()?.take()?;
        Some(insert_statement(&entry))
    }

    /// Writes the entry this handle carries on its own: for an action that found nothing
    /// left to change (acknowledging an acknowledged alert), which was still asked for.
    pub async fn record_audit(&self) -> StoreResult<()> {
        if let Some((sql, vals)) = self.audit_statement() {
            on_pool!(self, pool, Db => {
                sqlx::query::<Db>(&sql).bind_all(&vals).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Whether this handle carries an entry still to write.
    pub(super) fn audit_pending(&self) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|slot| slot.lock().pending.is_some())
    }
}

/// Writes the entry `$store` carries, if any, in transaction `$tx` of database `$db`.
macro_rules! audit_in {
    ($store:expr, $db:ty, $tx:ident) => {
        if let Some((sql, vals)) = $store.audit_statement() {
            $crate::store::Bind::bind_all(sqlx::query::<$db>(&sql), &vals)
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use audit_in;
