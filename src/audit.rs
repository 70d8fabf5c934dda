//! The audit log's entries: who changed what, which object, and the fields before and after
//! with secrets masked and long values cut. An entry is written in its change's own
//! transaction (see `store::audit`); the API describes each change, and the command line the
//! people it makes.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::Timestamp;
use crate::store::{AuditEntry, AuditSlot, Store};

/// What stands for a secret in an audit entry.
const MASK: &str = "********";

/// Whether a field of this name holds a secret (credentials, tokens, the webhook URL that
/// carries a source's token).
fn secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("secret")
        || name.contains("password")
        || name.ends_with("token")
        || name.contains("private_key")
        || name.ends_with("api_key")
        || name.ends_with("application_key")
        || name == "webhook_url"
        || name == "authorization"
}

/// `value` with every secret field masked and every string longer than `max` characters cut.
fn clean(value: Value, max: usize) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if secret(&k) && !v.is_null() {
                        Value::from(MASK)
                    } else {
                        clean(v, max)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| clean(v, max)).collect()),
        Value::String(s) if s.chars().count() > max => {
            Value::String(format!("{}…", s.chars().take(max).collect::<String>()))
        }
        other => other,
    }
}

/// Fields that change with every write and say nothing of it.
const NOISE: [&str; 2] = ["created_at", "updated_at"];

fn fields_of<T: Serialize>(value: Option<&T>) -> Map<String, Value> {
    match value.map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

/// `{field: [before, after]}` for each top-level field that differs between the two (either
/// may be absent: a creation, or a deletion).
pub fn changes<T: Serialize>(before: Option<&T>, after: Option<&T>) -> Value {
    let (before, after) = (fields_of(before), fields_of(after));
    let mut out = Map::new();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        if NOISE.contains(&name.as_str()) {
            continue;
        }
        let (b, a) = (
            before.get(name).cloned().unwrap_or(Value::Null),
            after.get(name).cloned().unwrap_or(Value::Null),
        );
        if b != a {
            out.insert(name.clone(), Value::Array(vec![b, a]));
        }
    }
    Value::Object(out)
}

/// `{field: [null, value]}` for each given field: what an action set.
pub fn set_fields(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Array(vec![Value::Null, v.clone()])))
            .collect(),
    )
}

/// Who made a change: an API token, or a person.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `token` or `user`.
    pub kind: &'static str,
    pub id: Uuid,
    pub name: String,
}

/// The description of one change.
pub struct Change<'a> {
    pub org_id: Uuid,
    pub actor: &'a Actor,
    /// `<object type>.<verb>`.
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: Option<Uuid>,
    pub changes: Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Change<'_> {
    /// The entry at `at`, with secrets masked and strings longer than `max_chars` cut.
    pub fn entry(self, at: Timestamp, max_chars: usize) -> AuditEntry {
        AuditEntry {
            id: id_at(at),
            org_id: self.org_id,
            at,
            actor_type: self.actor.kind.to_string(),
            actor_id: self.actor.id,
            actor_name: self.actor.name.clone(),
            action: self.action.to_string(),
            object_type: self.object_type.to_string(),
            object_id: self.object_id,
            changes: Json(clean(self.changes, max_chars)),
            ip: self.ip,
            request_id: self.request_id,
        }
    }
}

/// A time-ordered id (UUID v7) for an entry made at `at`, increasing within this process, so
/// the log pages by id in time order and retention deletes by an id range.
fn id_at(at: Timestamp) -> Uuid {
    static IDS: Mutex<uuid::ContextV7> = Mutex::new(uuid::ContextV7::new());
    let context = IDS.lock().unwrap_or_else(|e| e.into_inner());
    let seconds = at.0.timestamp().max(0) as u64;
    Uuid::new_v7(uuid::Timestamp::from_unix(
        &*context,
        seconds,
        at.0.timestamp_subsec_nanos(),
    ))
}

/// Puts `entry` in `slot` and returns the handle of `store` whose next write commits it.
pub fn audited(store: &Store, slot: &Arc<AuditSlot>, entry: AuditEntry) -> Store {
    slot.set(entry);
    store.audited(slot.clone())
}
