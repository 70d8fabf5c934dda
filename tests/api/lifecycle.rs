//! First start, restarts and the data that survives them.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_stores;
use crate::common::{send, Db, Env, Server};

async fn restart_keeps_data_and_bootstraps_once(db: Db) {
    let env = Env::new(db).await;
    let s = Server::start(env.config()).await;
    let key = s
        .create(
            "/keys",
            json!({"system": "shopify", "title": "Main", "credentials": {
            "shop_domain": "a.myshopify.com", "access_token": "shpat_keep_me"}}),
        )
        .await;
    s.stop().await;

    let s = Server::start(env.config()).await;
    let (status, got) = s
        .get(&format!("/keys/{}", key["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, key);
    let (_, tokens) = s.get("/tokens").await;
    assert_eq!(
        tokens["items"].as_array().unwrap().len(),
        1,
        "no second bootstrap token: {tokens}"
    );
    let (_, orgs) = s.get("/organisations").await;
    assert_eq!(orgs["items"][0]["name"], "default");
    // Secrets still open after a restart (the master key was kept in the data directory).
    let (status, p) = s
        .patch(
            &format!("/keys/{}", key["id"].as_str().unwrap()),
            json!({"credentials": {"api_version": "2025-01"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    s.stop().await;
}

async fn generated_bootstrap_token_is_written_once(db: Db) {
    let env = Env::new(db).await;
    let mut config = env.config();
    config.bootstrap_token = None;
    let s = Server::start(config.clone()).await;
    let path = env.data_path().join(wharf::BOOTSTRAP_TOKEN_FILE);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.starts_with("wharf_"), "{token}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (status, _) = send(s.req_as(&token, Method::GET, "/keys")).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;

    // The used token's file goes by itself (tests/api/access.rs); make sure it is gone.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
        _ => {}
    }
    let s = Server::start(config).await;
    assert!(!path.exists(), "a later start creates no token");
    let (_, tokens) = send(s.req_as(&token, Method::GET, "/tokens")).await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 1);
    s.stop().await;
}

both_stores!(
    restart_keeps_data_and_bootstraps_once,
    generated_bootstrap_token_is_written_once
);
