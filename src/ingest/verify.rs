//! Verifying a push by its source's system, with the source's key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Why a push was refused (logged; the sender gets a plain 401).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// HMAC of `body` under `secret` with the named hash, checked in constant time against
/// `given` in the named encoding.
pub fn check_hmac(
    algorithm: &str,
    encoding: &str,
    secret: &[u8],
    body: &[u8],
    given: &str,
) -> bool {
    let given = match encoding {
        "hex" => match decode_hex(given.trim()) {
            Some(b) => b,
            None => return false,
        },
        _ => match STANDARD.decode(given.trim()) {
            Ok(b) => b,
            Err(_) => return false,
        },
    };
    macro_rules! verify {
        ($hash:ty) => {{
            let Ok(mut mac) = Hmac::<$hash>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&given).is_ok()
        }};
    }
    match algorithm {
        "sha1" => verify!(sha1::Sha1),
        "sha512" => verify!(sha2::Sha512),
        _ => verify!(sha2::Sha256),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Shopify: `X-Shopify-Hmac-Sha256` is base64 HMAC-SHA256 of the raw body with the app's
/// secret (the key's `webhook_secret`).
pub fn shopify(key: Option<&Value>, headers: &HeaderMap, body: &[u8]) -> Result<(), Refused> {
    let secret = key
        .and_then(|k| k.get("webhook_secret"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refused("the source's key has no webhook_secret to verify Shopify pushes".into())
        })?;
    let given = header(headers, "x-shopify-hmac-sha256")
        .ok_or_else(|| Refused("no X-Shopify-Hmac-Sha256 header".into()))?;
    if check_hmac("sha256", "base64", secret.as_bytes(), body, given) {
        Ok(())
    } else {
        Err(Refused(
            "X-Shopify-Hmac-Sha256 does not match the body".into(),
        ))
    }
}

/// DEAR (Cin7 Core): the Basic or Bearer credentials, or the custom header, set in the key's
/// `webhook_auth`. Without `webhook_auth`, the URL token alone.
pub fn dear(key: Option<&Value>, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(auth) = key.and_then(|k| k.get("webhook_auth")) else {
        return Ok(());
    };
    let text = |name: &str| auth.get(name).and_then(Value::as_str).unwrap_or_default();
    match text("type") {
        "basic" => {
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", text("username"), text("password")))
            );
            let given = header(headers, AUTHORIZATION.as_str()).unwrap_or_default();
            if same(given.as_bytes(), expected.as_bytes()) {
                Ok(())
            } else {
                Err(Refused(
                    "Basic credentials do not match the key's webhook_auth".into(),
                ))
            }
        }
        "bearer" => {
            let expected = format!("Bearer {}", text("token"));
            let given = header(headers, AUTHORIZATION.as_str()).unwrap_or_default();
            if same(given.as_bytes(), expected.as_bytes()) {
                Ok(())
            } else {
                Err(Refused(
                    "the Bearer token does not match the key's webhook_auth".into(),
                ))
            }
        }
        "header" => {
            let name = text("header_name");
            let given = header(headers, name).unwrap_or_default();
            if !name.is_empty() && same(given.as_bytes(), text("header_value").as_bytes()) {
                Ok(())
            } else {
                Err(Refused(format!(
                    "header `{name}` does not match the key's webhook_auth"
                )))
            }
        }
        _ => Ok(()),
    }
}

/// The generic `http` system: an HMAC header when the source names one (secret: the key's
/// `hmac_secret`); otherwise the URL token alone.
pub fn http(
    params: &Value,
    key: Option<&Value>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    let Some(name) = params.get("hmac_header").and_then(Value::as_str) else {
        return Ok(());
    };
    let secret = key
        .and_then(|k| k.get("hmac_secret"))
        .and_then(Value::as_str)
        .ok_or_else(|| Refused("the source's key has no hmac_secret".into()))?;
    let given = header(headers, name).ok_or_else(|| Refused(format!("no `{name}` header")))?;
    // Common forms carry a prefix such as `sha256=`.
    let given = given
        .split_once('=')
        .filter(|(p, _)| p.starts_with("sha"))
        .map(|(_, v)| v)
        .unwrap_or(given);
    let algorithm = params
        .get("hmac_algorithm")
        .and_then(Value::as_str)
        .unwrap_or("sha256");
    let encoding = params
        .get("hmac_encoding")
        .and_then(Value::as_str)
        .unwrap_or("base64");
    if check_hmac(algorithm, encoding, secret.as_bytes(), body, given) {
        Ok(())
    } else {
        Err(Refused(format!("`{name}` does not match the body")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_in_both_encodings() {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"body");
        let raw = mac.finalize().into_bytes();
        let b64 = STANDARD.encode(raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert!(check_hmac("sha256", "base64", b"secret", b"body", &b64));
        assert!(check_hmac("sha256", "hex", b"secret", b"body", &hex));
        assert!(!check_hmac("sha256", "base64", b"secret", b"body!", &b64));
        assert!(!check_hmac("sha256", "base64", b"other", b"body", &b64));
        assert!(!check_hmac("sha256", "hex", b"secret", b"body", "zz"));
    }
}
