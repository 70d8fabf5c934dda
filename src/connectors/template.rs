//! Checking values against a key template or a function's parameters, and separating the
//! secret fields of a key from the rest.

use serde_json::{Map, Value};

use super::{Field, FieldKind, HostRule};
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
            // An object of secrets (secret headers) keeps its names readable, not its values.
            let masked = match &v {
                Value::Object(m) => Value::Object(
                    m.keys()
                        .map(|k| (k.clone(), Value::String(MASK.into())))
                        .collect(),
                ),
                _ => Value::String(MASK.into()),
            };
            set(&mut secrets, f.name, v);
            set(&mut shown, f.name, masked);
        }
    }
    (shown, secrets)
}

/// What [`check_hosts`] found wrong with a change of a key's host fields.
#[derive(Debug, Default)]
pub struct HostCheck {
    /// Admin-only host fields the change sets, changes or removes.
    pub admin_needed: Vec<&'static str>,
    /// Host values that are not allowed, and secrets that must be sent again.
    pub errors: Vec<FieldError>,
}

/// Checks a change of a key's credentials from `old` (`None` when the key is new) to `new`
/// against the template's host rules. `patch` is what the caller sent to change the key: when
/// a host field changes, every secret the key already holds must be in it again, not as
/// [`MASK`], so a key's secrets only go somewhere new at the word of someone who knows them.
/// `admin` is whether the caller is an admin or owner.
pub fn check_hosts(
    fields: &[Field],
    old: Option<&Value>,
    new: &Value,
    patch: Option<&Value>,
    admin: bool,
) -> HostCheck {
    let mut out = HostCheck::default();
    let value_of = |creds: Option<&Value>, name: &str| {
        creds
            .and_then(|c| lookup(c, name))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let changed: Vec<&Field> = fields
        .iter()
        .filter(|f| !f.host.is_none())
        .filter(|f| value_of(old, f.name) != value_of(Some(new), f.name))
        .collect();
    // An admin-only field that is set decides where requests go (Shopify's `base_url`), so the
    // vendor's domain no longer binds the other host fields.
    let overridden = fields
        .iter()
        .any(|f| f.host == HostRule::AdminOnly && value_of(Some(new), f.name).is_some());
    for f in &changed {
        let value = value_of(Some(new), f.name);
        let at = format!("credentials.{}", f.name);
        if let (true, Some(Value::String(v))) = (f.name.ends_with("url"), &value) {
            if web_url(v).is_none() {
                out.errors.push(FieldError::new(
                    &at,
                    "must be an http:// or https:// URL with a host",
                ));
                continue;
            }
        }
        match f.host {
            HostRule::AdminOnly if !admin => out.admin_needed.push(f.name),
            HostRule::Vendor(domain) if !admin && !overridden => {
                if let Some(Value::String(v)) = &value {
                    if !on_vendor_domain(v, domain, f.name.ends_with("url")) {
                        out.errors.push(FieldError::new(
                            &at,
                            format!(
                                "must be `{domain}` or a subdomain of it{}; only an admin or owner may point this key elsewhere",
                                if f.name.ends_with("url") { ", over https" } else { "" }
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if let (Some(old), false) = (old, changed.is_empty()) {
        let hosts: Vec<_> = changed.iter().map(|f| format!("`{}`", f.name)).collect();
        for f in fields.iter().filter(|f| f.secret) {
            let Some(stored) = value_of(Some(old), f.name) else {
                continue;
            };
            if !sent_again(&stored, patch, f.name) {
                out.errors.push(FieldError::new(
                    format!("credentials.{}", f.name),
                    format!(
                        "must be sent again (not `{MASK}`) in the same change: changing {} changes where this key's secrets are sent",
                        hosts.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// Whether `patch` carries a new value for the stored secret at `path`: a value that is not
/// [`MASK`], or `null` (removing it), for every part of it.
fn sent_again(stored: &Value, patch: Option<&Value>, path: &str) -> bool {
    let mut cur = match patch {
        Some(p) => p,
        None => return false,
    };
    for part in path.split('.') {
        match cur.get(part) {
            None => return false,
            Some(Value::Null) => return true,
            Some(v) => cur = v,
        }
    }
    fn covers(stored: &Value, sent: &Value) -> bool {
        match (stored, sent) {
            (_, Value::Null) => true,
            (Value::Object(st), Value::Object(se)) => st
                .iter()
                .all(|(k, v)| se.get(k).is_some_and(|s| covers(v, s))),
            (Value::Object(_), _) => false,
            (_, Value::String(s)) => s != MASK,
            _ => true,
        }
    }
    covers(stored, cur)
}

/// `text` as an http(s) URL with a host.
fn web_url(text: &str) -> Option<reqwest::Url> {
    let url = reqwest::Url::parse(text).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
        .then_some(url)
}

/// Whether a host name (or an https URL, when `is_url`) lies on `domain` or a subdomain.
fn on_vendor_domain(value: &str, domain: &str, is_url: bool) -> bool {
    let host = if is_url {
        match web_url(value) {
            Some(u) if u.scheme() == "https" && u.port().is_none() && u.username().is_empty() => {
                u.host_str().unwrap_or_default().to_ascii_lowercase()
            }
            _ => return false,
        }
    } else {
        // A bare host name: anything else (`evil.example/x.myshopify.com`) would change the
        // host of the URL built from it.
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return false;
        }
        value.to_ascii_lowercase()
    };
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// Whether `url` lies under `base`: same scheme, host and port, and a path at or below the
/// base's path. Both must be http(s) URLs.
pub fn url_within(url: &str, base: &str) -> bool {
    let (Some(url), Some(base)) = (web_url(url), web_url(base)) else {
        return false;
    };
    if url.scheme() != base.scheme()
        || url.host_str() != base.host_str()
        || url.port_or_known_default() != base.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    base_path.is_empty()
        || path == base_path
        || path
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'))
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

    #[test]
    fn secret_headers_show_their_names_only() {
        let http = system("http").unwrap();
        let creds = json!({"secret_headers": {"X-Api-Key": "k1"}, "headers": {"X-T": "7"}});
        assert!(validate(http.key_template, &creds, "credentials").is_empty());
        let (shown, secrets) = split_credentials(http.key_template, &creds);
        assert_eq!(shown["secret_headers"], json!({"X-Api-Key": MASK}));
        assert_eq!(shown["headers"], json!({"X-T": "7"}));
        assert_eq!(secrets, json!({"secret_headers": {"X-Api-Key": "k1"}}));
        assert_eq!(join_credentials(&shown, &secrets, http.key_template), creds);
    }

    fn fields_of(check: &HostCheck) -> Vec<&str> {
        check.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_host_change_needs_every_stored_secret_again() {
        let shopify = system("shopify").unwrap().key_template;
        let old =
            json!({"shop_domain": "a.myshopify.com", "access_token": "t", "webhook_secret": "w"});
        let moved = |patch: Value| {
            let mut new = old.clone();
            merge_patch(&mut new, &patch);
            check_hosts(shopify, Some(&old), &new, Some(&patch), false)
        };
        let c = moved(json!({"shop_domain": "b.myshopify.com", "access_token": MASK}));
        assert_eq!(
            fields_of(&c),
            ["credentials.access_token", "credentials.webhook_secret"]
        );
        let c = moved(
            json!({"shop_domain": "b.myshopify.com", "access_token": "t2", "webhook_secret": null}),
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        // Nothing about the host changed: secrets may stay masked.
        let c = moved(json!({"api_version": "2025-01", "access_token": MASK}));
        assert!(c.errors.is_empty() && c.admin_needed.is_empty());
        // A new key has nothing stored to re-enter.
        let c = check_hosts(shopify, None, &old, None, false);
        assert!(c.errors.is_empty() && c.admin_needed.is_empty());
    }

    #[test]
    fn secret_objects_must_be_sent_again_whole() {
        let stored = json!({"A": "1", "B": "2"});
        assert!(!sent_again(&stored, Some(&json!({"s": {"A": "x"}})), "s"));
        assert!(!sent_again(
            &stored,
            Some(&json!({"s": {"A": "x", "B": MASK}})),
            "s"
        ));
        assert!(sent_again(
            &stored,
            Some(&json!({"s": {"A": "x", "B": null}})),
            "s"
        ));
        assert!(sent_again(&stored, Some(&json!({"s": null})), "s"));
        assert!(!sent_again(
            &json!("p"),
            Some(&json!({"basic": {"username": "u"}})),
            "basic.password"
        ));
        assert!(sent_again(
            &json!("p"),
            Some(&json!({"basic": null})),
            "basic.password"
        ));
        assert!(sent_again(
            &json!("p"),
            Some(&json!({"basic": {"password": "q"}})),
            "basic.password"
        ));
        assert!(!sent_again(&json!("p"), None, "basic.password"));
    }

    #[test]
    fn vendor_domains_and_admin_only_fields() {
        let shopify = system("shopify").unwrap().key_template;
        let new = |domain: &str| json!({"shop_domain": domain, "access_token": "t"});
        for ok in ["a.myshopify.com", "A-b.MyShopify.com", "myshopify.com"] {
            assert!(
                check_hosts(shopify, None, &new(ok), None, false)
                    .errors
                    .is_empty(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example",
            "evilmyshopify.com",
            "evil.example/a.myshopify.com",
            "evil.example?.myshopify.com",
            "a.myshopify.com.evil.example",
            "a.myshopify.com:8443",
        ] {
            let c = check_hosts(shopify, None, &new(bad), None, false);
            assert_eq!(fields_of(&c), ["credentials.shop_domain"], "{bad}");
            // An admin or owner may.
            assert!(check_hosts(shopify, None, &new(bad), None, true)
                .errors
                .is_empty());
        }
        let mut with_base = new("test-shop");
        with_base["base_url"] = json!("http://127.0.0.1:9");
        let c = check_hosts(shopify, None, &with_base, None, false);
        assert_eq!(c.admin_needed, ["base_url"]);
        let c = check_hosts(shopify, None, &with_base, None, true);
        assert!(c.errors.is_empty() && c.admin_needed.is_empty());
        with_base["base_url"] = json!("not a url");
        let c = check_hosts(shopify, None, &with_base, None, true);
        assert_eq!(fields_of(&c), ["credentials.base_url"]);

        let pvx = system("peoplevox").unwrap().key_template;
        let key = |url: &str| json!({"client_id": "c", "username": "u", "password": "p", "base_url": url});
        assert!(check_hosts(
            pvx,
            None,
            &key("https://qac.peoplevox.net/c1/resources"),
            None,
            false
        )
        .errors
        .is_empty());
        for bad in [
            "http://qac.peoplevox.net/c1",
            "https://peoplevox.net.evil.example/",
            "https://peoplevox.net@evil.example/",
            "https://qac.peoplevox.net:8443/",
        ] {
            let c = check_hosts(pvx, None, &key(bad), None, false);
            assert_eq!(fields_of(&c), ["credentials.base_url"], "{bad}");
        }
    }

    #[test]
    fn urls_within_a_base() {
        let base = "https://erp.example.com/api";
        for ok in [
            "https://erp.example.com/api",
            "https://erp.example.com/api/",
            "https://erp.example.com/api/orders?x=1",
            "https://ERP.example.com:443/api/orders",
            "https://erp.example.com/api/a/../orders",
        ] {
            assert!(url_within(ok, base), "{ok}");
        }
        for bad in [
            "https://erp.example.com/apix",
            "https://erp.example.com/",
            "https://erp.example.com/api/../admin",
            "http://erp.example.com/api/orders",
            "https://erp.example.com:8443/api/orders",
            "https://erp.example.com.evil.example/api",
            "https://erp.example.com@evil.example/api",
            "https://u:p@erp.example.com/api",
            "not a url",
        ] {
            assert!(!url_within(bad, base), "{bad}");
        }
        assert!(url_within(
            "https://erp.example.com/anything",
            "https://erp.example.com"
        ));
        assert!(url_within(
            "https://erp.example.com/anything",
            "https://erp.example.com/"
        ));
    }
}
