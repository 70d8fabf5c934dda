//! People: invitations and passwords, sign-in with and without 2FA, sessions and their
//! expiry (on a clock the test moves), CSRF, throttling, roles, and the first owner made on
//! the command line.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_stores;
use crate::common::{fresh, read, send, Db, Env, Server};

const PASSWORD: &str = "harbour lights at dawn";

/// A browser signed in: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    body: Value,
}

impl Browser {
    fn req(&self, server: &Server, method: Method, path: &str) -> reqwest::RequestBuilder {
        server
            .client
            .request(method, server.url(&format!("/api/v1{path}")))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
    }

    async fn get(&self, server: &Server, path: &str) -> (StatusCode, Value) {
        send(self.req(server, Method::GET, path)).await
    }

    async fn post(&self, server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.req(server, Method::POST, path).json(&body)).await
    }
}

/// Signs in; the answer, and the browser when it worked.
async fn sign_in(server: &Server, body: Value) -> (StatusCode, Value, Option<Browser>) {
    let res = server
        .client
        .post(server.url("/api/v1/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, out) = read(res).await;
    let browser = cookie.filter(|_| status == StatusCode::OK).map(|c| {
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Lax"), "{c}");
        assert!(!c.contains("Secure"), "plain http: {c}");
        Browser {
            cookie: c.split(';').next().unwrap().to_string(),
            csrf: out["csrf_token"].as_str().unwrap().to_string(),
            body: out.clone(),
        }
    });
    (status, out, browser)
}

async fn signed_in(server: &Server, email: &str, password: &str) -> Browser {
    let (status, out, browser) =
        sign_in(server, json!({"email": email, "password": password})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    browser.unwrap()
}

/// Invites a person with the owner token and sets their password through the link.
async fn person(server: &Server, email: &str, role: &str) -> Value {
    let created = server
        .create(
            "/users",
            json!({"email": email, "name": email.split('@').next().unwrap(), "role": role}),
        )
        .await;
    let token = created["invitation"]["token"].as_str().unwrap();
    assert!(created["invitation"]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/set-password#token={token}")));
    let (status, out) = set_password(server, token, PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{out}");
    created
}

async fn set_password(server: &Server, token: &str, password: &str) -> (StatusCode, Value) {
    send(
        server
            .client
            .post(server.url("/api/v1/password"))
            .json(&json!({"token": token, "password": password})),
    )
    .await
}

fn totp_now(server: &Server, secret: &str) -> String {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = wharf::people::totp::step_at(server.clock.now());
    wharf::people::totp::code(&secret, step)
}

/// Turns on 2FA for a signed-in person; the secret and the recovery codes.
async fn enrol(server: &Server, browser: &Browser) -> (String, Vec<String>) {
    let (status, enrolment) = browser.post(server, "/users/me/totp", json!(null)).await;
    assert_eq!(status, StatusCode::CREATED, "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    assert!(enrolment["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    assert!(enrolment["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let (status, out) = browser
        .post(server, "/users/me/totp/confirm", json!({"code": "000000"}))
        .await;
    // A wrong code (one in a million it is right) leaves 2FA off.
    if status != StatusCode::OK {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    }
    // The same step's code works for sign-in only once: confirm on the next step.
    server.clock.advance(chrono::Duration::seconds(30));
    let code = totp_now(server, &secret);
    let (status, out) = browser
        .post(server, "/users/me/totp/confirm", json!({"code": code}))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let codes: Vec<String> = out["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    server.clock.advance(chrono::Duration::seconds(30));
    (secret, codes)
}

async fn sign_in_with_and_without_2fa(db: Db) {
    let (_env, server) = fresh(db).await;
    person(&server, "ana@example.com", "editor").await;

    // Without 2FA: the cookie and the CSRF token; the person and their organisation.
    let browser = signed_in(&server, "ana@example.com", PASSWORD).await;
    assert_eq!(browser.body["role"], "editor");
    assert_eq!(browser.body["user"]["email"], "ana@example.com");
    assert_eq!(browser.body["organisation"]["name"], "default");
    assert_eq!(browser.body["must_enrol_2fa"], false);
    let (status, me) = browser.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "ana@example.com");
    assert_eq!(me["token"], Value::Null);
    // The e-mail address is matched whatever its case.
    signed_in(&server, " ANA@example.com", PASSWORD).await;

    // A wrong password, an unknown address: the same answer.
    let (status, wrong, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": "nope nope nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, unknown, _) = sign_in(
        &server,
        json!({"email": "bob@example.com", "password": "nope nope nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["detail"], unknown["detail"]);

    // 2FA on: the password alone is not enough.
    let (secret, codes) = enrol(&server, &browser).await;
    let (status, out, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(out["detail"].as_str().unwrap().contains("totp"), "{out}");
    // The panel tells this answer from a wrong password by its type, and asks for the code.
    assert!(
        out["type"]
            .as_str()
            .unwrap()
            .ends_with("second-factor-needed"),
        "{out}"
    );
    assert!(wrong["type"].as_str().unwrap().ends_with("sign-in-failed"));
    let (status, out, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD, "totp": "123456x"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{out}");
    let code = totp_now(&server, &secret);
    let wrong_code = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (status, _, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD, "totp": wrong_code}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out, with_code) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD, "totp": code}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["user"]["totp_enabled"], true);
    assert!(with_code.is_some());
    // The same code again: used.
    let (status, _, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD, "totp": code}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A recovery code works once.
    let (status, out, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD,
            "recovery_code": codes[3].to_uppercase()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["user"]["recovery_codes_left"], 9);
    let (status, _, _) = sign_in(
        &server,
        json!({"email": "ana@example.com", "password": PASSWORD, "recovery_code": codes[3]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Enrolling again while on is refused; an owner resets it (the app was lost).
    let (status, _) = browser.post(&server, "/users/me/totp", json!(null)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let id = browser.body["user"]["id"].as_str().unwrap();
    let (status, out) = server
        .post(&format!("/users/{id}/totp/reset"), json!(null))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{out}");
    signed_in(&server, "ana@example.com", PASSWORD).await;

    // Sign-out ends the session and clears the cookie.
    let res = browser
        .req(&server, Method::DELETE, "/session")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = browser.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn cookie_writes_need_the_csrf_token_and_roles_hold(db: Db) {
    let (_env, server) = fresh(db).await;
    person(&server, "eve@example.com", "editor").await;
    person(&server, "vic@example.com", "viewer").await;
    let editor = signed_in(&server, "eve@example.com", PASSWORD).await;
    let key = json!({"system": "http", "title": "K", "credentials": {}});

    let (status, out) = send(
        server
            .client
            .post(server.url("/api/v1/keys"))
            .header("cookie", &editor.cookie)
            .json(&key),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("X-CSRF-Token"));
    let (status, _) = send(
        server
            .client
            .post(server.url("/api/v1/keys"))
            .header("cookie", &editor.cookie)
            .header("x-csrf-token", "not-the-token")
            .json(&key),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, out) = editor.post(&server, "/keys", key.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
    // Reads need no token; bearer-token writes need none either.
    let (status, _) = send(
        server
            .client
            .get(server.url("/api/v1/keys"))
            .header("cookie", &editor.cookie),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post("/keys", key.clone()).await;
    assert_eq!(status, StatusCode::CREATED);

    // A viewer's session reads and cannot write.
    let viewer = signed_in(&server, "vic@example.com", PASSWORD).await;
    let (status, _) = viewer.get(&server, "/keys").await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = viewer.post(&server, "/keys", key).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    // Managing people is for owners.
    let (status, _) = editor.get(&server, "/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn sessions_end_when_idle_or_old(db: Db) {
    let (_env, server) = fresh(db).await;
    person(&server, "ida@example.com", "viewer").await;
    let minutes = |m: i64| chrono::Duration::minutes(m);

    // Idle: 59 minutes between requests is fine, 60 is not.
    let browser = signed_in(&server, "ida@example.com", PASSWORD).await;
    for _ in 0..3 {
        server.clock.advance(minutes(59));
        let (status, out) = browser.get(&server, "/users/me").await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    server.clock.advance(minutes(60));
    let (status, _) = browser.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Absolute: ten hours after sign-in, however busy.
    let browser = signed_in(&server, "ida@example.com", PASSWORD).await;
    for _ in 0..11 {
        server.clock.advance(minutes(50));
        let (status, _) = browser.get(&server, "/users/me").await;
        assert_eq!(status, StatusCode::OK);
    }
    server.clock.advance(minutes(50));
    let (status, _) = browser.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // My sessions: listed, and one revoked from another.
    let first = signed_in(&server, "ida@example.com", PASSWORD).await;
    let second = signed_in(&server, "ida@example.com", PASSWORD).await;
    let (status, list) = second.get(&server, "/users/me/sessions").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["current"], true);
    let other = list[1]["id"].as_str().unwrap();
    let (status, _) = send(second.req(
        &server,
        Method::DELETE,
        &format!("/users/me/sessions/{other}"),
    ))
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = first.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = second.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::OK);
    // Tokens have no sessions.
    let (status, _) = server.get("/users/me/sessions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn what_no_sign_in_can_use_is_forgotten(db: Db) {
    let (env, server) = fresh(db).await;
    let config = env.config();
    let store = wharf::prepare(config.clone()).await.unwrap().store.clone();
    let minutes = |m: i64| chrono::Duration::minutes(m);
    let forget = || {
        wharf::retention::forget_sign_ins(
            &store,
            &config.retention,
            server.clock.now(),
            minutes(config.auth.session_idle_minutes as i64),
        )
    };
    person(&server, "ida@example.com", "viewer").await;
    let busy = signed_in(&server, "ida@example.com", PASSWORD).await;
    let _idle = signed_in(&server, "ida@example.com", PASSWORD).await;
    // An invitation nobody used, and a failed sign-in (counted per address and per client).
    server
        .create(
            "/users",
            json!({"email": "jo@example.com", "name": "Jo", "role": "viewer"}),
        )
        .await;
    let (status, _, _) = sign_in(
        &server,
        json!({"email": "nobody@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(forget().await.is_empty(), "all of it is still in use");

    // An hour and a minute later: the idle session and the failures are forgotten.
    server.clock.advance(minutes(30));
    let (status, _) = busy.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::OK);
    server.clock.advance(minutes(31));
    let removed = forget().await;
    assert_eq!(removed.get("sessions"), Some(&1), "{removed:?}");
    assert_eq!(removed.get("sign_in_failures"), Some(&2), "{removed:?}");
    assert_eq!(removed.len(), 2, "{removed:?}");
    let (status, list) = busy.get(&server, "/users/me/sessions").await;
    assert_eq!(status, StatusCode::OK, "the busy session goes on");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // Past the link's 72 hours: the invitation and the last session go too.
    server
        .clock
        .advance(chrono::Duration::hours(config.auth.link_hours as i64));
    let removed = forget().await;
    assert_eq!(removed.get("sessions"), Some(&1), "{removed:?}");
    assert_eq!(removed.get("password_links"), Some(&1), "{removed:?}");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(forget().await.is_empty(), "nothing twice");
}

async fn repeated_failures_wait_alike_for_known_and_unknown_addresses(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.auth.max_failures_per_ip = 14;
    let server = Server::start(config).await;
    person(&server, "kim@example.com", "viewer").await;
    let attempt = |email: &'static str, password: &'static str| {
        let server = &server;
        async move {
            let (status, out, _) =
                sign_in(server, json!({"email": email, "password": password})).await;
            (status, out)
        }
    };
    for email in ["kim@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let (status, _) = attempt(email, "wrong wrong wrong").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
    // The sixth try waits, with the right password too, and says the same for both.
    let (status, known) = attempt("kim@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{known}");
    let (status, unknown) = attempt("nobody@example.com", "wrong wrong wrong").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(known["detail"], unknown["detail"]);
    let res = server
        .client
        .post(server.url("/api/v1/session"))
        .json(&json!({"email": "kim@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "30");
    // Once the wait is over, the right password works and the count starts again.
    server.clock.advance(chrono::Duration::seconds(31));
    signed_in(&server, "kim@example.com", PASSWORD).await;
    // Per client address: fourteen failures over many addresses, then everyone waits.
    for i in 0..4 {
        let email: &'static str = Box::leak(format!("p{i}@example.com").into_boxed_str());
        let (status, _) = attempt(email, "wrong wrong wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = attempt("other@example.com", "wrong wrong wrong").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn an_organisation_requiring_2fa_admits_only_enrolment(db: Db) {
    let (_env, server) = fresh(db).await;
    person(&server, "max@example.com", "admin").await;
    let (_, orgs) = server.get("/organisations").await;
    let org = orgs["items"][0]["id"].as_str().unwrap().to_string();
    let (status, out) = server
        .patch(
            &format!("/organisations/{org}"),
            json!({"require_2fa": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["require_2fa"], true);

    let browser = signed_in(&server, "max@example.com", PASSWORD).await;
    assert_eq!(browser.body["must_enrol_2fa"], true);
    let (status, out) = browser.get(&server, "/streams").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(out["detail"].as_str().unwrap().contains("enrol"), "{out}");
    let (status, _) = browser.get(&server, "/users/me").await;
    assert_eq!(status, StatusCode::OK);
    enrol(&server, &browser).await;
    let (status, out) = browser.get(&server, "/streams").await;
    assert_eq!(status, StatusCode::OK, "{out}");
}

async fn passwords_are_set_by_link_changed_and_reset(db: Db) {
    let (_env, server) = fresh(db).await;
    // Weak passwords are refused, saying why; the link still works afterwards.
    let created = server
        .create(
            "/users",
            json!({"email": "lou@example.com", "name": "Lou", "role": "viewer"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let token = created["invitation"]["token"].as_str().unwrap();
    for weak in ["short", "password123", "qwertyuiop"] {
        let (status, out) = set_password(&server, token, weak).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{weak}: {out}");
        assert_eq!(out["errors"][0]["field"], "password");
    }
    // Nobody can sign in before the password is set.
    let (status, _, _) = sign_in(
        &server,
        json!({"email": "lou@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = set_password(&server, token, PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The link works once.
    let (status, out) = set_password(&server, token, "another good password").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(out["errors"][0]["field"], "token");

    // Changing my password needs the current one, and ends my other sessions.
    let other = signed_in(&server, "lou@example.com", PASSWORD).await;
    let mine = signed_in(&server, "lou@example.com", PASSWORD).await;
    let (status, out) = mine
        .post(
            &server,
            "/users/me/password",
            json!({"current_password": "wrong wrong wrong", "new_password": "tide tables turn"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["errors"][0]["field"], "current_password");
    let (status, out) = mine
        .post(
            &server,
            "/users/me/password",
            json!({"current_password": PASSWORD, "new_password": "tide tables turn"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{out}");
    assert_eq!(
        other.get(&server, "/users/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(mine.get(&server, "/users/me").await.0, StatusCode::OK);
    signed_in(&server, "lou@example.com", "tide tables turn").await;

    // An owner's reset link; it expires.
    let (status, link) = server
        .post(&format!("/users/{id}/password-reset"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    server.clock.advance(chrono::Duration::hours(73));
    let (status, _) = set_password(&server, link["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, link) = server
        .post(&format!("/users/{id}/password-reset"), json!(null))
        .await;
    let (status, _) = set_password(&server, link["token"].as_str().unwrap(), PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    signed_in(&server, "lou@example.com", PASSWORD).await;
}

both_stores!(
    sign_in_with_and_without_2fa,
    cookie_writes_need_the_csrf_token_and_roles_hold,
    sessions_end_when_idle_or_old,
    what_no_sign_in_can_use_is_forgotten,
    repeated_failures_wait_alike_for_known_and_unknown_addresses,
    an_organisation_requiring_2fa_admits_only_enrolment,
    passwords_are_set_by_link_changed_and_reset,
);

/// The first owner, made on the command line with the password on standard input, signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_owner_is_made_on_the_command_line() {
    use std::io::Write;
    let env = Env::new(Db::Sqlite).await;
    let config = env.config();
    let toml = format!(
        "data_dir = {:?}\n[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\n",
        config.data_dir
    );
    let path = env.data_path().join("wharf.toml");
    std::fs::write(&path, toml).unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        // Only the file configures it: the tests' own WHARF_ variables are not its settings.
        for (name, _) in std::env::vars() {
            if name.starts_with("WHARF_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(["user", "create"])
            .args(args)
            .args(["--config", path.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &[
            "--email",
            "Owner@Example.com",
            "--role",
            "owner",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created owner@example.com"));
    // The same address again, a weak password, a bad role: refused, saying why.
    let out = run(
        &[
            "--email",
            "owner@example.com",
            "--role",
            "owner",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    let out = run(
        &[
            "--email",
            "two@example.com",
            "--role",
            "owner",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least"));
    let out = run(&["--email", "two@example.com", "--role", "chief"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
    // Without a password: an invitation link.
    let out = run(&["--email", "two@example.com", "--role", "viewer"], "");
    assert!(out.status.success());
    // The link opens the control panel of this server (the default listen address here).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("http://127.0.0.1:8080/set-password#token="),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let server = Server::start(config).await;
    let browser = signed_in(&server, "owner@example.com", PASSWORD).await;
    assert_eq!(browser.body["role"], "owner");
    let (status, users) = browser.get(&server, "/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
}
