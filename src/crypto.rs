//! Secrets at rest and API tokens.
//!
//! Key secrets are sealed with XChaCha20-Poly1305 under the master key; the random 24-byte
//! nonce is stored in front of the ciphertext, and the key's id is bound in as associated data
//! so a sealed blob copied onto another key does not open.
//!
//! API tokens are 256-bit random strings; only their SHA-256 is stored. A slow password hash
//! (argon2) buys nothing for a random token of that size and would cost every request ~50 ms.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of every token Wharf issues, so leaked tokens are easy to recognise in scans.
pub const TOKEN_PREFIX: &str = "wharf_";

/// The key that seals every stored secret.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Option<MasterKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        (bytes.len() == 32).then(|| MasterKey(XChaCha20Poly1305::new(bytes.as_slice().into())))
    }

    /// The configured key, or the one in `<data_dir>/master.key`, generated there (mode 0600)
    /// on first start.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<MasterKey> {
        if let Some(text) = configured {
            return MasterKey::from_base64(text)
                .ok_or_else(|| anyhow::anyhow!("master_key must be base64 of 32 bytes"));
        }
        let path = data_dir.join("master.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            return MasterKey::from_base64(&text).ok_or_else(|| {
                anyhow::anyhow!("{} does not hold base64 of 32 bytes", path.display())
            });
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let text = STANDARD.encode(bytes);
        write_private_file(&path, text.as_bytes())?;
        tracing::info!(path = %path.display(), "generated a new master key; back it up");
        Ok(MasterKey::from_base64(&text).expect("just encoded"))
    }

    /// Seals `plaintext`, binding it to `context` (the owning row's id).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what `seal` produced with the same context; `None` if it was tampered with or
    /// sealed under another key.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .ok()
    }
}

/// A new random API token.
pub fn generate_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_string(32))
}

/// URL-safe text of `bytes` random bytes.
pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What is stored for a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The last characters of a token, safe to show beside it in lists.
pub fn token_hint(token: &str) -> String {
    let tail: Vec<char> = token.chars().rev().take(4).collect();
    format!("…{}", tail.into_iter().rev().collect::<String>())
}

/// Writes a file only its owner can read.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_in_their_context() {
        let key = MasterKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = key.seal(b"row-1", b"shpat_secret");
        assert!(!sealed.windows(12).any(|w| w == b"shpat_secret"));
        assert_eq!(key.open(b"row-1", &sealed).unwrap(), b"shpat_secret");
        assert!(key.open(b"row-2", &sealed).is_none());
        let other = MasterKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(b"row-1", &sealed).is_none());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_ne!(a, generate_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
