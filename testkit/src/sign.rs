//! Webhook signatures as senders compute them, so a test or the bench can push requests
//! Wharf's verifiers accept (or, with the wrong secret, refuse).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

fn hmac_sha256(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `body`, base64: Shopify's `X-Shopify-Hmac-Sha256`.
pub fn hmac_sha256_base64(secret: &[u8], body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(secret, body))
}

/// HMAC-SHA256 of `body`, lower-case hex: the generic HTTP webhook's `hex` encoding.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    hmac_sha256(secret, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn hex_matches_the_rfc_vector() {
        assert_eq!(hmac_sha256_hex(KEY, DATA), HEX);
    }

    #[test]
    fn base64_encodes_the_same_digest() {
        let bytes: Vec<u8> = (0..HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&HEX[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(hmac_sha256_base64(KEY, DATA), STANDARD.encode(bytes));
    }
}
