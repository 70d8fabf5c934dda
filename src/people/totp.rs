//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, six digits), the
//! `otpauth://` URL authenticator apps read, its QR code as SVG, and recovery codes.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;

use crate::domain::Timestamp;

const STEP_SECONDS: i64 = 30;
const DIGITS: u32 = 6;

/// A new 160-bit secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    rand::thread_rng().fill_bytes(&mut secret);
    secret
}

/// The secret as people type it into an app: base32 without padding.
pub fn secret_text(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The time step `at` falls in.
pub fn step_at(at: Timestamp) -> i64 {
    at.0.timestamp().div_euclid(STEP_SECONDS)
}

/// The code of `step` (RFC 4226's dynamic truncation), zero-padded to six digits.
pub fn code(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        value % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The step whose code `given` is, within one step of `at` either way (clocks drift), if it
/// is later than `after` (a code is accepted once).
pub fn accept(secret: &[u8], given: &str, at: Timestamp, after: Option<i64>) -> Option<i64> {
    let given: String = given.chars().filter(|c| !c.is_whitespace()).collect();
    if given.len() != DIGITS as usize || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(at);
    (now - 1..=now + 1)
        .filter(|step| after.is_none_or(|last| *step > last))
        .find(|step| {
            let expected = code(secret, *step);
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()).into()
        })
}

/// The `otpauth://totp/…` URL of `secret` for `account` at `issuer`.
pub fn otpauth_url(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        enc(issuer),
        enc(account),
        secret_text(secret),
        enc(issuer)
    )
}

/// A QR code of `text` as an SVG document: dark squares on white, with the four-module quiet
/// zone scanners need.
pub fn qr_svg(text: &str) -> Result<String, String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|_| "the text is too long for a QR code".to_string())?;
    let border = 4;
    let size = qr.size() + 2 * border;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code for an authenticator app\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

/// Ten new recovery codes, `xxxxx-xxxxx` of base32 letters and digits.
pub fn recovery_codes() -> Vec<String> {
    (0..10)
        .map(|_| {
            let mut bytes = [0u8; 7];
            rand::thread_rng().fill_bytes(&mut bytes);
            let text = BASE32_NOPAD.encode(&bytes).to_lowercase();
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect()
}

/// A recovery code as typed, in the form its hash was made from.
pub fn normalise_recovery_code(given: &str) -> String {
    given
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the last six digits of its eight-digit codes).
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code(secret, time / 30), expected, "at {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_near_its_time_and_once() {
        let secret = new_secret();
        let at = Timestamp::now();
        let now = step_at(at);
        let current = code(&secret, now);
        assert_eq!(accept(&secret, &current, at, None), Some(now));
        assert_eq!(
            accept(&secret, &format!(" {} ", current), at, None),
            Some(now)
        );
        // Used once: a later sign-in with the same code is refused.
        assert_eq!(accept(&secret, &current, at, Some(now)), None);
        // One step of drift either way is fine; two is not.
        assert_eq!(
            accept(&secret, &code(&secret, now - 1), at, None),
            Some(now - 1)
        );
        assert_eq!(accept(&secret, &code(&secret, now + 2), at, None), None);
        assert_eq!(accept(&secret, "12345", at, None), None);
        assert_eq!(accept(&secret, "abcdef", at, None), None);
    }

    #[test]
    fn the_url_and_qr_code_carry_the_secret() {
        let secret = b"12345678901234567890";
        let url = otpauth_url("Wharf", "ops@example.com", secret);
        assert_eq!(
            url,
            "otpauth://totp/Wharf:ops@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Wharf&algorithm=SHA1&digits=6&period=30"
        );
        let svg = qr_svg(&url).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("<path d=\"M"));
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_normalise() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert_eq!(normalise_recovery_code(" ABCDE-fghij "), "abcdefghij");
        assert_eq!(normalise_recovery_code(&codes[0]).len(), 10);
    }
}
