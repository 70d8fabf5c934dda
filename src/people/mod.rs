//! People: passwords, one-time codes, set-password links, and the throttle on wrong
//! sign-ins. What they store is in `store::people`.

pub mod cli;
pub mod passwords;
pub mod totp;

pub use passwords::Passwords;

use uuid::Uuid;

use crate::config::AuthConfig;
use crate::crypto::{hash_token, random_string};
use crate::domain::Timestamp;
use crate::store::PasswordLink;

/// A new one-time link for `user` of `org` to set a password, valid `hours` from `now`; and
/// the token it carries (only its hash is stored).
pub fn new_link(
    now: Timestamp,
    org: Uuid,
    user: Uuid,
    purpose: &'static str,
    hours: u64,
) -> (PasswordLink, String) {
    let token = random_string(32);
    let link = PasswordLink {
        id: Uuid::now_v7(),
        org_id: org,
        user_id: user,
        token_hash: hash_token(&token),
        purpose,
        created_at: now,
        expires_at: Timestamp::from_datetime(now.0 + chrono::Duration::hours(hours as i64)),
    };
    (link, token)
}

/// Where a person opens a link's token: the control panel's set-password page (the token in
/// the fragment, so it reaches no server log).
pub fn link_url(public_base_url: Option<&str>, token: &str) -> String {
    let base = public_base_url.unwrap_or("").trim_end_matches('/');
    format!("{base}/set-password#token={token}")
}

/// Longest wait after repeated failures.
const MAX_WAIT_SECONDS: i64 = 15 * 60;

/// How long a key with `failures` wrong sign-ins in a row, the last at `last`, must still
/// wait at `now` (seconds), given the limit it has. Failures older than an hour are forgiven.
pub fn wait_seconds(
    config: &AuthConfig,
    limit: u32,
    failures: i64,
    last: Timestamp,
    now: Timestamp,
) -> Option<i64> {
    let since = (now.0 - last.0).num_seconds();
    if failures < i64::from(limit) || since > 3600 {
        return None;
    }
    let doublings = (failures - i64::from(limit)).min(20) as u32;
    let wait = (config.lockout_seconds as i64)
        .saturating_mul(1i64 << doublings)
        .min(MAX_WAIT_SECONDS);
    (since < wait).then_some(wait - since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_starts_at_the_limit_and_doubles() {
        let c = AuthConfig::default();
        let t0 = Timestamp::now();
        let at = |s: i64| Timestamp::from_datetime(t0.0 + chrono::Duration::seconds(s));
        assert_eq!(wait_seconds(&c, 5, 4, t0, t0), None);
        assert_eq!(wait_seconds(&c, 5, 5, t0, t0), Some(30));
        assert_eq!(wait_seconds(&c, 5, 5, t0, at(10)), Some(20));
        assert_eq!(wait_seconds(&c, 5, 5, t0, at(30)), None);
        assert_eq!(wait_seconds(&c, 5, 6, t0, t0), Some(60));
        assert_eq!(wait_seconds(&c, 5, 60, t0, t0), Some(900));
        assert_eq!(wait_seconds(&c, 5, 60, t0, at(3601)), None);
    }
}
