//! JSON already serialised, bound as `json` (Postgres) or text (SQLite) without being parsed
//! or serialised again. A payload is serialised once, by the request or worker that made it,
//! and the group-commit writer (one task for many requests) only copies its bytes; cloning it
//! for a retried batch is a reference count, not a copy of a value tree.

use std::sync::Arc;

use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

use super::Val;

/// Serialised JSON (always valid: made from a value, or from text that parsed as one).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText(Arc<str>);

impl JsonText {
    pub fn of(value: &serde_json::Value) -> JsonText {
        JsonText(value.to_string().into())
    }

    /// Text serialised from a value by the caller.
    pub(crate) fn serialised(text: String) -> JsonText {
        JsonText(text.into())
    }

    /// The value the text holds.
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// JSON text as received, already parsed (so valid): stored as it came instead of being
    /// written again from its value (a webhook's body is an order's largest part). What is
    /// stored then is the sender's text to the digit, where the parsed value may have rounded a
    /// number past f64's precision.
    pub fn received(text: &str) -> JsonText {
        JsonText(text.into())
    }
}

/// Postgres's `json` (a built-in type: its id is fixed).
pub(in crate::store) const JSON: PgTypeInfo = PgTypeInfo::with_oid(Oid(114));
/// Postgres's `json[]`.
pub(in crate::store) const JSON_ARRAY: PgTypeInfo = PgTypeInfo::with_oid(Oid(199));

/// Bound as `json`: Postgres checks the text and keeps it (the payload columns are `json`, see
/// `migrations/postgres/0014_json_payloads.sql`). Into a `jsonb` column it is converted as it
/// is stored.
impl Type<Postgres> for JsonText {
    fn type_info() -> PgTypeInfo {
        JSON
    }
}

impl Encode<'_, Postgres> for JsonText {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // `json`'s binary form is its text.
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

impl Type<Sqlite> for JsonText {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for JsonText {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(self.0.to_string(), buf)
    }
}

/// A field of a stored row whose column is `json` on Postgres (records' data, a job's records,
/// transformation logs): read as a value, written as [`JsonText`], so whatever writes the row
/// through its values binds the column as `json` without knowing which columns those are.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJson(pub Value);

impl From<Option<StoredJson>> for Val {
    fn from(v: Option<StoredJson>) -> Self {
        Val::JsonText(v.map(|j| JsonText::of(&j.0)))
    }
}

impl Type<Postgres> for StoredJson {
    fn type_info() -> PgTypeInfo {
        JSON
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Json<Value> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for StoredJson {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(StoredJson(
            <Json<Value> as Decode<Postgres>>::decode(value)?.0,
        ))
    }
}

impl Type<Sqlite> for StoredJson {
    fn type_info() -> SqliteTypeInfo {
        <Json<Value> as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <Json<Value> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for StoredJson {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(StoredJson(
            <Json<Value> as Decode<Sqlite>>::decode(value)?.0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_value_serialised_once() {
        let v = serde_json::json!({"id": 1, "name": "#1", "lines": [1, 2]});
        let t = JsonText::of(&v);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&t.0).unwrap(), v);
        assert!(Arc::ptr_eq(&t.0, &t.clone().0), "a clone shares the text");
    }

    #[test]
    fn a_stored_json_field_is_written_as_json_text() {
        let v = serde_json::json!([{"SaleID": "s-1", "n": 2.5}]);
        match Val::from(Some(StoredJson(v.clone()))) {
            Val::JsonText(Some(t)) => assert_eq!(t.value().unwrap(), v),
            other => panic!("bound as {other:?}"),
        }
        assert!(matches!(Val::from(None::<StoredJson>), Val::JsonText(None)));
    }
}
