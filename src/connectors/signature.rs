//! Checks shared by the webhook verifiers: HMACs of a raw body and secrets compared in
//! constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
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
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
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
