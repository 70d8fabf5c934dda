//! Signing in and out, who is signed in, their sessions, their password and their 2FA; and
//! the one-time links that set a password (invitations and resets).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{
    audit_slot, client_ip, request_id, Actor, ApiJson, Errors, IdPath, CSRF_COOKIE, SESSION_COOKIE,
};
use super::{AppState, Auth};
use crate::audit::{audited, set_fields, Change};
use crate::crypto::{hash_token, random_string};
use crate::domain::{Permission, Timestamp};
use crate::error::{ApiError, Problem};
use crate::people::{totp, wait_seconds};
use crate::store::{Credentials, PasswordLink, SecondFactor, Session, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in, sign_out))
        .routes(routes!(me))
        .routes(routes!(my_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(change_password))
        .routes(routes!(start_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(reset_totp))
        .routes(routes!(reset_password))
        .routes(routes!(set_password))
}

const WRONG: &str = "The e-mail address or the password is wrong. After several wrong tries \
     in a row, sign-in waits a while before it accepts another.";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
    /// The current six-digit code of the authenticator app, for people with 2FA on.
    pub totp: Option<String>,
    /// Instead of `totp`: one of the recovery codes (each works once).
    pub recovery_code: Option<String>,
    /// The organisation, when the same e-mail address belongs to people of several.
    pub organisation: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganisationBrief {
    pub id: Uuid,
    pub name: String,
    pub require_2fa: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Person {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub totp_enabled: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: usize,
}

impl Person {
    fn of(c: &Credentials) -> Person {
        Person {
            id: c.id,
            email: c.email.clone(),
            name: c.name.clone(),
            totp_enabled: c.totp_enabled,
            recovery_codes_left: c.recovery_codes.as_ref().map_or(0, |r| r.0.len()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub user: Person,
    pub organisation: OrganisationBrief,
    pub role: String,
    /// Send as `X-CSRF-Token` with every change made with the session cookie.
    pub csrf_token: String,
    pub expires_at: Timestamp,
    /// The organisation requires 2FA and it is not on yet: until it is, only enrolment
    /// (`POST /users/me/totp`, then `/users/me/totp/confirm`) and sign-out are open.
    pub must_enrol_2fa: bool,
}

fn organisation_of(c: &Credentials) -> OrganisationBrief {
    OrganisationBrief {
        id: c.org_id,
        name: c.organisation.clone(),
        require_2fa: c.require_2fa,
    }
}

/// The throttle keys of a sign-in: the e-mail address as given (known or not), and the client.
fn throttle_keys(email: &str, ip: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("email:{email}")];
    if let Some(ip) = ip {
        keys.push(format!("ip:{ip}"));
    }
    keys
}

/// 429 while any key must wait.
async fn throttled(state: &AppState, keys: &[String]) -> Result<(), ApiError> {
    let now = state.clock.now();
    let auth = &state.config.auth;
    let failures = state.store.sign_in_failures(keys).await?;
    let mut wait = None;
    for (key, (n, last)) in keys.iter().zip(failures).filter_map(|(k, f)| Some((k, f?))) {
        let limit = if key.starts_with("ip:") {
            auth.max_failures_per_ip
        } else {
            auth.max_failures
        };
        wait = wait.max(wait_seconds(auth, limit, n, last, now));
    }
    match wait {
        None => Ok(()),
        Some(seconds) => Err(ApiError::TooMany {
            detail: format!(
                "Too many wrong sign-ins in a row. Wait {seconds} s, then try again; an owner \
                 can send you a password-reset link."
            ),
            retry_after_seconds: seconds.max(1) as u64,
        }),
    }
}

async fn failed(state: &AppState, keys: &[String], error: ApiError) -> ApiError {
    if let Err(e) = state
        .store
        .record_sign_in_failure(keys, state.clock.now())
        .await
    {
        return e.into();
    }
    error
}

/// Checks `password` against each hash (the decoy when there is none), off the async threads;
/// the index of the first that matches.
async fn matching(
    state: &AppState,
    hashes: Vec<Option<String>>,
    password: String,
) -> Option<usize> {
    let passwords = state.passwords.clone();
    tokio::task::spawn_blocking(move || {
        if hashes.is_empty() {
            passwords.verify(None, &password);
            return None;
        }
        hashes
            .iter()
            .position(|h| passwords.verify(h.as_deref(), &password))
    })
    .await
    .ok()
    .flatten()
}

/// The person's TOTP secret, opened.
fn totp_secret(state: &AppState, c: &Credentials) -> Option<Vec<u8>> {
    let sealed = c.totp_secret.as_deref()?;
    state
        .master_key
        .open(format!("totp:{}", c.id).as_bytes(), sealed)
}

fn session_cookie(state: &AppState, token: &str, max_age: u64) -> HeaderValue {
    cookie(state, SESSION_COOKIE, token, max_age, true)
}

/// The CSRF token again, readable by the panel's script (so a reloaded page can still
/// write); it proves nothing by itself, as the header must match the session's own token.
fn csrf_cookie(state: &AppState, token: &str, max_age: u64) -> HeaderValue {
    cookie(state, CSRF_COOKIE, token, max_age, false)
}

fn cookie(state: &AppState, name: &str, value: &str, max_age: u64, http_only: bool) -> HeaderValue {
    let secure = state
        .config
        .public_base_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let value = format!(
        "{name}={value}; Path=/;{} SameSite=Lax; Max-Age={max_age}{}",
        if http_only { " HttpOnly;" } else { "" },
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).expect("cookie text is ASCII")
}

/// The store for a change `person` makes before they have a session (signing in, setting
/// a password with a link): `(action, object type, object id)` with `changes`.
fn as_person(
    state: &AppState,
    parts: &Parts,
    person: &Credentials,
    (action, object_type, object_id): (&str, &str, Option<Uuid>),
    changes: Value,
) -> crate::store::Store {
    let actor = Actor {
        kind: "user",
        id: person.id,
        name: person.name.clone(),
    };
    let entry = Change {
        org_id: person.org_id,
        actor: &actor,
        action,
        object_type,
        object_id,
        changes,
        ip: client_ip(parts, state.config.auth.trust_forwarded_for),
        request_id: request_id(parts),
    }
    .entry(state.clock.now(), state.config.auth.audit_value_chars);
    audited(&state.store, &audit_slot(parts), entry)
}

/// Signs in with e-mail and password (and the 2FA code when it is on). Sets the session
/// cookie and answers the CSRF token every change made with it must carry.
#[utoipa::path(post, path = "/session", tag = "session", request_body = SignIn, security(()),
    responses((status = 200, body = SignedIn), (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn sign_in(
    State(state): State<AppState>,
    parts: Parts,
    ApiJson(input): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let email = input.email.trim().to_lowercase();
    let mut errors = Errors::default();
    if email.is_empty() || email.len() > 320 {
        errors.add(
            "email",
            "must be an e-mail address of at most 320 characters",
        );
    }
    if input.password.is_empty() || input.password.len() > 1024 {
        errors.add("password", "must be 1 to 1024 bytes");
    }
    errors.finish()?;
    let ip = client_ip(&parts, state.config.auth.trust_forwarded_for);
    let keys = throttle_keys(&email, ip.as_deref());
    throttled(&state, &keys).await?;
    let mut people = state.store.credentials_by_email(&email).await?;
    if let Some(org) = &input.organisation {
        people.retain(|c| &c.organisation == org);
    }
    let hashes = people.iter().map(|c| c.password_hash.clone()).collect();
    let Some(found) = matching(&state, hashes, input.password).await else {
        return Err(failed(&state, &keys, ApiError::SignIn(WRONG.into())).await);
    };
    let person = people.swap_remove(found);
    let now = state.clock.now();
    let factor = if person.totp_enabled {
        let secret = totp_secret(&state, &person)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a TOTP secret cannot be opened")))?;
        match (&input.totp, &input.recovery_code) {
            (Some(code), _) => match totp::accept(&secret, code, now, person.totp_step) {
                Some(step) => SecondFactor::Totp(step),
                None => {
                    let e = ApiError::SignIn(
                        "The code is wrong, or was used already: enter the current code from \
                         your authenticator app, or a recovery code."
                            .into(),
                    );
                    return Err(failed(&state, &keys, e).await);
                }
            },
            (None, Some(code)) => {
                let before = person
                    .recovery_codes
                    .as_ref()
                    .map(|r| r.0.clone())
                    .unwrap_or_default();
                let hash = hash_token(&totp::normalise_recovery_code(code));
                if !before.contains(&hash) {
                    let e =
                        ApiError::SignIn("The recovery code is wrong or was used already.".into());
                    return Err(failed(&state, &keys, e).await);
                }
                let after = before.iter().filter(|h| **h != hash).cloned().collect();
                SecondFactor::Recovery { before, after }
            }
            (None, None) => return Err(ApiError::SecondFactorNeeded),
        }
    } else {
        SecondFactor::None
    };
    let token = random_string(32);
    let csrf = random_string(32);
    let hours = state.config.auth.session_hours;
    let session = Session {
        id: Uuid::now_v7(),
        org_id: person.org_id,
        user_id: person.id,
        token_hash: hash_token(&token),
        csrf_hash: hash_token(&csrf),
        ip: ip.clone(),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect()),
        created_at: now,
        last_seen_at: now,
        expires_at: Timestamp::from_datetime(now.0 + chrono::Duration::hours(hours as i64)),
    };
    let second = match &factor {
        SecondFactor::None => "none",
        SecondFactor::Totp(_) => "totp",
        SecondFactor::Recovery { .. } => "recovery_code",
    };
    let store = as_person(
        &state,
        &parts,
        &person,
        ("session.create", "session", Some(session.id)),
        set_fields(&[("second_factor", json!(second))]),
    );
    if !store.start_session(&session, &factor, &keys[0]).await? {
        let e = ApiError::SignIn("The code was used already; enter the next one.".into());
        return Err(failed(&state, &keys, e).await);
    }
    if let SecondFactor::Recovery { after, .. } = &factor {
        tracing::info!(user = %person.id, left = after.len(), "signed in with a recovery code");
    }
    let must_enrol = person.require_2fa && !person.totp_enabled;
    let mut person_out = Person::of(&person);
    if let SecondFactor::Recovery { after, .. } = &factor {
        person_out.recovery_codes_left = after.len();
    }
    let body = SignedIn {
        user: person_out,
        organisation: organisation_of(&person),
        role: person.role.clone(),
        csrf_token: csrf,
        expires_at: session.expires_at,
        must_enrol_2fa: must_enrol,
    };
    let csrf = csrf_cookie(&state, &body.csrf_token, hours * 3600);
    let mut res = Json(body).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&state, &token, hours * 3600),
    );
    res.headers_mut().append(header::SET_COOKIE, csrf);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Signs out: ends this session and clears its cookie.
#[utoipa::path(delete, path = "/session", tag = "session",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn sign_out(State(state): State<AppState>, auth: Auth) -> Result<Response, ApiError> {
    let user = auth.person()?;
    let id = auth.session.expect("a person has a session");
    let store = auth.audited(&state, "session.delete", "session", Some(id), json!({}));
    store.end_session(user, id).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    res.headers_mut()
        .append(header::SET_COOKIE, csrf_cookie(&state, "", 0));
    Ok(res)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The person signed in; null for an API token.
    pub user: Option<Person>,
    /// The token used; null for a session.
    pub token: Option<TokenBrief>,
    pub organisation: OrganisationBrief,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBrief {
    pub id: Uuid,
    pub name: String,
}

/// Who is calling: the person signed in (or the token), their organisation and role.
#[utoipa::path(get, path = "/users/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, auth: Auth) -> Result<Json<Me>, ApiError> {
    let org = state.store.get_organisation(auth.org_id).await?;
    let organisation = OrganisationBrief {
        id: org.id,
        name: org.name,
        require_2fa: org.require_2fa,
    };
    let (user, token) = match auth.session {
        Some(_) => (
            Some(Person::of(&state.store.credentials(auth.actor.id).await?)),
            None,
        ),
        None => (
            None,
            Some(TokenBrief {
                id: auth.actor.id,
                name: auth.actor.name.clone(),
            }),
        ),
    };
    Ok(Json(Me {
        user,
        token,
        organisation,
        role: auth.role.as_str().to_string(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub id: Uuid,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// The session this request came with.
    pub current: bool,
}

/// My sessions that have not expired, newest first.
#[utoipa::path(get, path = "/users/me/sessions", tag = "session",
    responses((status = 200, body = Vec<SessionOut>), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn my_sessions(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<SessionOut>>, ApiError> {
    let user = auth.person()?;
    let now = state.clock.now();
    let idle = chrono::Duration::minutes(state.config.auth.session_idle_minutes as i64);
    let sessions = state
        .store
        .sessions_of(user, now, Timestamp::from_datetime(now.0 - idle))
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionOut {
                current: Some(s.id) == auth.session,
                id: s.id,
                ip: s.ip,
                user_agent: s.user_agent,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
            })
            .collect(),
    ))
}

/// Ends one of my sessions (e.g. a browser left signed in elsewhere).
#[utoipa::path(delete, path = "/users/me/sessions/{id}", tag = "session",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_session(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    let user = auth.person()?;
    let store = auth.audited(&state, "session.revoke", "session", Some(id), json!({}));
    store.end_session(user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes my password; my other sessions end.
#[utoipa::path(post, path = "/users/me/password", tag = "session", request_body = PasswordChange,
    responses((status = 204), (status = 403, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let user = auth.person()?;
    let person = state.store.credentials(user).await?;
    let keys = throttle_keys(&person.email, auth.ip.as_deref());
    throttled(&state, &keys).await?;
    let current = input.current_password.chars().take(1024).collect();
    if matching(&state, vec![person.password_hash.clone()], current)
        .await
        .is_none()
    {
        let e = ApiError::invalid("current_password", "is wrong");
        return Err(failed(&state, &keys, e).await);
    }
    let hash =
        new_password_hash(&state, &input.new_password, &person.email, "new_password").await?;
    let store = auth.audited(
        &state,
        "user.password_change",
        "user",
        Some(user),
        set_fields(&[("password", json!("changed"))]),
    );
    store
        .set_password(user, &hash, auth.session, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The hash of a new password once it meets the rules (422 on `field` saying why not).
async fn new_password_hash(
    state: &AppState,
    password: &str,
    email: &str,
    field: &str,
) -> Result<String, ApiError> {
    if let Some(problem) = state.passwords.problem(password, email) {
        return Err(ApiError::invalid(field, problem));
    }
    let passwords = state.passwords.clone();
    let password = password.to_string();
    tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret as people type it into an app (base32).
    pub secret: String,
    pub otpauth_url: String,
    /// The URL as a QR code (an SVG document).
    pub qr_svg: String,
}

/// Starts 2FA enrolment: a new secret, its `otpauth://` URL and QR code. 2FA is on once a
/// code is confirmed.
#[utoipa::path(post, path = "/users/me/totp", tag = "session",
    responses((status = 201, body = TotpEnrolment), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn start_totp(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<(StatusCode, Json<TotpEnrolment>), ApiError> {
    let user = auth.person()?;
    let person = state.store.credentials(user).await?;
    if person.totp_enabled {
        return Err(ApiError::Conflict(
            "Two-factor authentication is on already; an owner can reset it \
             (POST /users/{id}/totp/reset) if the app is lost."
                .into(),
        ));
    }
    let secret = totp::new_secret();
    let sealed = state
        .master_key
        .seal(format!("totp:{user}").as_bytes(), &secret);
    let url = totp::otpauth_url(
        &format!("Wharf ({})", person.organisation),
        &person.email,
        &secret,
    );
    let qr_svg = totp::qr_svg(&url).map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let store = auth.audited(&state, "user.totp_enrol", "user", Some(user), json!({}));
    store.start_totp(user, sealed, state.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolment {
            secret: totp::secret_text(&secret),
            otpauth_url: url,
            qr_svg,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// The current six-digit code of the authenticator app.
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten one-time codes for when the app is lost; shown only now.
    pub recovery_codes: Vec<String>,
}

/// Confirms enrolment with a code from the app: 2FA is on, and ten recovery codes are shown
/// once.
#[utoipa::path(post, path = "/users/me/totp/confirm", tag = "session", request_body = TotpCode,
    responses((status = 200, body = RecoveryCodes), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn confirm_totp(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(input): ApiJson<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let user = auth.person()?;
    let person = state.store.credentials(user).await?;
    let secret = match (&person.totp_secret, person.totp_enabled) {
        (_, true) => {
            return Err(ApiError::Conflict(
                "Two-factor authentication is on already.".into(),
            ))
        }
        (None, false) => {
            return Err(ApiError::Conflict(
                "No enrolment is waiting: start one with POST /users/me/totp.".into(),
            ))
        }
        (Some(_), false) => totp_secret(&state, &person)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a TOTP secret cannot be opened")))?,
    };
    let now = state.clock.now();
    let step = totp::accept(&secret, &input.code, now, None).ok_or_else(|| {
        ApiError::invalid(
            "code",
            "is not the app's current code; check the app's clock and enter the code shown now",
        )
    })?;
    let codes = totp::recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| hash_token(&totp::normalise_recovery_code(c)))
        .collect();
    let store = auth.audited(
        &state,
        "user.totp_enable",
        "user",
        Some(user),
        json!({"totp_enabled": [false, true]}),
    );
    store.confirm_totp(user, step, &hashes, now).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turns a member's 2FA off (owners; for a lost app). They enrol again at their next
/// sign-in if the organisation requires it.
#[utoipa::path(post, path = "/users/{id}/totp/reset", tag = "users",
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn reset_totp(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    auth.require(Permission::ManageUsers)?;
    let person = state.store.get::<User>(auth.org_id, id).await?;
    let store = auth.audited(
        &state,
        "user.totp_reset",
        "user",
        Some(person.id),
        json!({"totp_enabled": [Value::Null, false]}),
    );
    store
        .reset_totp(auth.org_id, person.id, state.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkOut {
    /// Open this to set the password; works once, until `expires_at`.
    pub url: String,
    /// The link's token, for `POST /password`.
    pub token: String,
    pub expires_at: Timestamp,
}

/// A new one-time link for `user` to set a password, and how it is shown.
pub fn new_link(
    state: &AppState,
    org: Uuid,
    user: Uuid,
    purpose: &'static str,
) -> (PasswordLink, LinkOut) {
    let (link, token) = crate::people::new_link(
        state.clock.now(),
        org,
        user,
        purpose,
        state.config.auth.link_hours,
    );
    let out = LinkOut {
        url: crate::people::link_url(state.config.public_base_url.as_deref(), &token),
        token,
        expires_at: link.expires_at,
    };
    (link, out)
}

/// A one-time password-reset link for a member (owners); hand it to them. Their sessions
/// continue until they use it.
#[utoipa::path(post, path = "/users/{id}/password-reset", tag = "users",
    responses((status = 201, body = LinkOut), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn reset_password(
    State(state): State<AppState>,
    auth: Auth,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<LinkOut>), ApiError> {
    auth.require(Permission::ManageUsers)?;
    let person = state.store.get::<User>(auth.org_id, id).await?;
    let (link, out) = new_link(&state, auth.org_id, person.id, "reset");
    let store = auth.audited(
        &state,
        "user.password_reset",
        "user",
        Some(person.id),
        set_fields(&[("expires_at", json!(out.expires_at))]),
    );
    store.replace_link(&link).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The token of an invitation or reset link.
    pub token: String,
    pub password: String,
}

/// Sets a password with a one-time link (an invitation or a reset); every session of the
/// person ends. Then sign in.
#[utoipa::path(post, path = "/password", tag = "session", request_body = SetPassword, security(()),
    responses((status = 204), (status = 422, body = Problem)))]
async fn set_password(
    State(state): State<AppState>,
    parts: Parts,
    ApiJson(input): ApiJson<SetPassword>,
) -> Result<StatusCode, ApiError> {
    let hash = hash_token(input.token.trim());
    let now = state.clock.now();
    let unknown = || {
        ApiError::invalid(
            "token",
            "is not a valid link: it was used, has expired, or was replaced; ask an owner for a new one",
        )
    };
    let user = state
        .store
        .link_owner(&hash, now)
        .await?
        .ok_or_else(unknown)?;
    let person = state.store.credentials(user).await?;
    let password_hash =
        new_password_hash(&state, &input.password, &person.email, "password").await?;
    let store = as_person(
        &state,
        &parts,
        &person,
        ("user.password_set", "user", Some(person.id)),
        set_fields(&[("password", json!("set"))]),
    );
    store
        .use_link(&hash, person.id, &password_hash, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound(_) => unknown(),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
