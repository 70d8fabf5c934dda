//! Checking values against a key template or a function's parameters, and separating the
//! secret fields of a key from the rest.

use serde_json::{Map, Value};

use super::{Field, FieldKind};
use crate::error::FieldError;

/// What the API shows in place of a stored secret; sent back unchanged, it keeps the secret.
pub const MASK: &str = "********";

/// Validates `value` (an object) against `fields`, naming errors under `prefix`
/// (`credentials`, `params`). Unknown fields are errors, so typos do not pass silently.
pub fn validate(fields: &[Field], value: &Value, prefix: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(obj) = value.as_object() else {
        errors.push(FieldError::new(prefix, "must be a JSON object"));
        return errors;
    };
    check_object(fields, obj, "", prefix, &mut errors);
    for f in fields.iter().filter(|f| f.required) {
        if lookup(value, f.name).is_none_or(Value::is_null) {
            errors.push(FieldError::new(
                format!("{prefix}.{}", f.name),
                "is required",
            ));
        }
    }
    errors
}

fn check_object(
    fields: &[Field],
    obj: &Map<String, Value>,
    path: &str,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    for (k, v) in obj {
        let full = format!("{path}{k}");
        let at = format!("{prefix}.{full}");
        if let Some(field) = fields.iter().find(|f| f.name == full) {
            if !v.is_null() {
                if let Some(msg) = kind_error(field.kind, v) {
                    errors.push(FieldError::new(at, msg));
                }
            }
        } else if fields
            .iter()
            .any(|f| f.name.starts_with(&format!("{full}.")))
        {
            match v {
                Value::Object(inner) => {
                    check_object(fields, inner, &format!("{full}."), prefix, errors)
                }
                Value::Null => {}
                _ => errors.push(FieldError::new(at, "must be a JSON object")),
            }
        } else {
            let known: Vec<_> = fields.iter().map(|f| f.name).collect();
            errors.push(FieldError::new(
                at,
                format!("is not a known field; known fields: {}", known.join(", ")),
            ));
        }
    }
}

fn kind_error(kind: FieldKind, v: &Value) -> Option<String> {
    let ok = match kind {
        FieldKind::String => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        FieldKind::Integer => v.is_i64() || v.is_u64(),
        FieldKind::Boolean => v.is_boolean(),
        FieldKind::Object => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        FieldKind::StringList => v
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        FieldKind::Enum(values) => v.as_str().is_some_and(|s| values.contains(&s)),
    };
    (!ok).then(|| match kind {
        FieldKind::String => "must be a non-empty string".to_string(),
        FieldKind::Integer => "must be an integer".to_string(),
        FieldKind::Boolean => "must be true or false".to_string(),
        FieldKind::Object => "must be an object of string values".to_string(),
        FieldKind::StringList => "must be a non-empty list of strings".to_string(),
        FieldKind::Enum(values) => format!("must be one of: {}", values.join(", ")),
    })
}

/// The value at a dotted path.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| v.get(part))
}

fn set(target: &mut Value, path: &str, v: Value) {
    let mut cur = target;
    let parts: Vec<_> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !cur.get(*part).is_some_and(Value::is_object) {
            cur[*part] = Value::Object(Map::new());
        }
        cur = &mut cur[*part];
    }
    cur[parts[parts.len() - 1]] = v;
}

fn remove(target: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (lookup_mut(target, p)?, l),
        None => (target, path),
    };
    parent.as_object_mut()?.remove(last)
}

fn lookup_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(value, |v, part| v.get_mut(part))
}

/// Splits validated credentials into what may be shown (secrets replaced by [`MASK`]) and the
/// secret fields alone (to be sealed). Null fields are dropped.
pub fn split_credentials(fields: &[Field], creds: &Value) -> (Value, Value) {
    let mut shown = strip_nulls(creds.clone());
    let mut secrets = Value::Object(Map::new());
    for f in fields.iter().filter(|f| f.secret) {
        if let Some(v) = remove(&mut shown, f.name) {
            set(&mut secrets, f.name, v);
            set(&mut shown, f.name, Value::String(MASK.into()));
        }
    }
    (shown, secrets)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Rebuilds full credentials from the shown part and the opened secrets.
pub fn join_credentials(shown: &Value, secrets: &Value, fields: &[Field]) -> Value {
    let mut full = shown.clone();
    for f in fields.iter().filter(|f| f.secret) {
        if let Some(v) = lookup(secrets, f.name) {
            set(&mut full, f.name, v.clone());
        }
    }
    full
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
/// A secret sent back as [`MASK`] keeps the stored value.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.as_str() == Some(MASK) && t.contains_key(k) {
                    continue;
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::system;
    use serde_json::json;

    #[test]
    fn secrets_are_split_out_and_masked() {
        let http = system("http").unwrap();
        let creds =
            json!({"headers": {"X-A": "1"}, "basic": {"username": "u", "password": "p4ss"}});
        assert!(validate(http.key_template, &creds, "credentials").is_empty());
        let (shown, secrets) = split_credentials(http.key_template, &creds);
        assert_eq!(shown["basic"]["password"], MASK);
        assert_eq!(shown["basic"]["username"], "u");
        assert_eq!(secrets, json!({"basic": {"password": "p4ss"}}));
        assert_eq!(join_credentials(&shown, &secrets, http.key_template), creds);
    }

    #[test]
    fn template_errors_name_the_field() {
        let shopify = system("shopify").unwrap();
        let errors = validate(
            shopify.key_template,
            &json!({"shop_domain": 3, "bogus": 1}),
            "credentials",
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"credentials.shop_domain"));
        assert!(fields.contains(&"credentials.bogus"));
        assert!(fields.contains(&"credentials.access_token"));
    }

    #[test]
    fn merge_patch_keeps_masked_secrets() {
        let mut full = json!({"a": "1", "secret": "s", "nested": {"x": 1, "y": 2}});
        merge_patch(
            &mut full,
            &json!({"a": "2", "secret": MASK, "nested": {"y": null}}),
        );
        assert_eq!(full, json!({"a": "2", "secret": "s", "nested": {"x": 1}}));
    }
}
