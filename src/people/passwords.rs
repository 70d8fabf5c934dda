//! Passwords: argon2id hashes in PHC form (each keeps the parameters it was made with, so
//! changing them in config affects new passwords only), and the rules a new password meets.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use crate::config::AuthConfig;

/// The most common passwords (breach corpora's top entries), refused whatever their length.
const COMMON: &str = include_str!("common_passwords.txt");

/// Hashes and checks passwords with the configured argon2id parameters. Hashing is slow on
/// purpose: call it off the async threads (`spawn_blocking`).
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    min_length: usize,
    /// A hash of nothing anyone knows, checked for unknown e-mail addresses so that they take
    /// as long as known ones.
    decoy: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords")
    }
}

impl Passwords {
    pub fn new(config: &AuthConfig) -> Result<Passwords, String> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("bad argon2 parameters: {e}"))?;
        let mut passwords = Passwords {
            params,
            min_length: config.password_min_length,
            decoy: String::new(),
        };
        passwords.decoy = passwords.hash(&crate::crypto::random_string(24))?;
        Ok(passwords)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string of `password` with a new random salt.
    pub fn hash(&self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        self.argon2()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| format!("could not hash the password: {e}"))
    }

    /// Whether `password` matches `hash` (a PHC string); with no hash, checks the decoy so the
    /// answer takes as long, and is false.
    pub fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        match hash {
            Some(hash) => self
                .argon2()
                .verify_password(password.as_bytes(), hash)
                .is_ok(),
            None => {
                let _ = self
                    .argon2()
                    .verify_password(password.as_bytes(), self.decoy.as_str());
                false
            }
        }
    }

    /// Why `password` may not be used by the person with `email`, if it may not.
    pub fn problem(&self, password: &str, email: &str) -> Option<String> {
        let length = password.chars().count();
        if length < self.min_length {
            return Some(format!(
                "must be at least {} characters long",
                self.min_length
            ));
        }
        if length > 256 {
            return Some("must be at most 256 characters long".into());
        }
        let lower = password.to_lowercase();
        if COMMON.lines().any(|common| common == lower) {
            return Some(
                "is one of the most common passwords, which are tried first; choose another".into(),
            );
        }
        let local = email.split('@').next().unwrap_or_default().to_lowercase();
        if lower == email.to_lowercase() || (local.len() >= 4 && lower.contains(&local)) {
            return Some("must not contain your e-mail address".into());
        }
        if password
            .chars()
            .all(|c| c == password.chars().next().unwrap_or(' '))
        {
            return Some("must not be one character repeated".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Passwords {
        Passwords::new(&AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let p = quick();
        let hash = p.hash("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(p.verify(Some(&hash), "correct horse battery"));
        assert!(!p.verify(Some(&hash), "correct horse batterx"));
        assert!(!p.verify(None, "correct horse battery"));
        assert!(!p.verify(Some("not a hash"), "x"));
        // Parameters travel with the hash: a store made with other settings still verifies.
        let other = Passwords::new(&AuthConfig {
            argon2_memory_kib: 128,
            argon2_iterations: 2,
            ..AuthConfig::default()
        })
        .unwrap();
        assert!(other.verify(Some(&hash), "correct horse battery"));
    }

    #[test]
    fn weak_passwords_are_refused_with_the_reason() {
        let p = quick();
        let email = "ops.lead@example.com";
        assert!(p.problem("short", email).unwrap().contains("at least 10"));
        assert!(p.problem("Password123", email).unwrap().contains("common"));
        assert!(p.problem("QWERTYUIOP", email).unwrap().contains("common"));
        assert!(p
            .problem("my-ops.lead-pass", email)
            .unwrap()
            .contains("e-mail"));
        assert!(p
            .problem("aaaaaaaaaaaa", email)
            .unwrap()
            .contains("repeated"));
        assert!(p
            .problem(&"x".repeat(300), email)
            .unwrap()
            .contains("at most"));
        assert_eq!(p.problem("harbour lights at dawn", email), None);
    }
}
