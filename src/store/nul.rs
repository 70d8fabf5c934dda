//! U+0000, which Postgres cannot keep in text or JSON (SQLite can). What the store records
//! about an event or a job — messages, a transformation's logs, an answer's excerpt, a
//! reference — comes from other systems and from code the merchant wrote; if it could not be
//! stored, the event or job it belongs to could never move on (and a delivery already sent
//! would be sent again each time its lease ran out). There the character is kept as U+FFFD.
//! Records' data is never changed: an output holding U+0000 is refused before it is sent (see
//! [`Store::unstorable`]).

use std::borrow::Cow;

use serde_json::Value;

use crate::store::{Backend, Store};

/// `text` with each U+0000 replaced by U+FFFD.
pub fn printable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// [`printable`] of borrowed text, copied only when it holds U+0000.
pub fn printable_ref(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` with U+0000 replaced by U+FFFD in every string and key.
pub fn printable_value(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(printable(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(printable_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (printable(k), printable_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Where in `value` a string or an object's key first holds U+0000, as a JSON pointer
/// (RFC 6901; `""` is the whole value).
pub fn nul_at(value: &Value) -> Option<String> {
    fn escape(key: &str) -> Cow<'_, str> {
        if key.contains(['~', '/']) {
            Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
        } else {
            Cow::Borrowed(key)
        }
    }
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v).map(|at| format!("/{i}{at}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(format!("/{}", printable_ref(&escape(k))));
            }
            nul_at(v).map(|at| format!("/{}{at}", escape(k)))
        }),
        _ => None,
    }
}

impl Store {
    /// Why this store cannot keep `value`, if it cannot: Postgres refuses U+0000 in JSON.
    pub fn unstorable(&self, value: &Value) -> Option<String> {
        if self.backend() != Backend::Postgres {
            return None;
        }
        nul_at(value).map(|at| {
            format!(
                "the value at `{at}` holds the character U+0000 (\\u0000), which Postgres \
                 cannot store"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_found_where_it_is() {
        assert_eq!(nul_at(&json!({"a": [1, {"b": "x"}]})), None);
        assert_eq!(nul_at(&json!("a\u{0}")), Some(String::new()));
        assert_eq!(
            nul_at(&json!({"a": [1, {"b/c": "x\u{0}"}]})),
            Some("/a/1/b~1c".into())
        );
        assert_eq!(nul_at(&json!({"k\u{0}": 1})), Some("/k\u{FFFD}".into()));
    }

    #[test]
    fn printable_value_replaces_nul_in_strings_and_keys() {
        assert_eq!(
            printable_value(json!({"a\u{0}": ["x\u{0}", 1, {"b": "c"}]})),
            json!({"a\u{FFFD}": ["x\u{FFFD}", 1, {"b": "c"}]})
        );
    }

    #[test]
    fn printable_replaces_only_nul() {
        assert_eq!(printable("a\u{0}b\u{0}".into()), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(printable("plain é".into()), "plain é");
        assert!(matches!(printable_ref("plain"), Cow::Borrowed(_)));
    }
}
