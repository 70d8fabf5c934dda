//! Storage taken away from a running server and given back, through a loopback proxy in front
//! of Postgres (the server behind it is shared with other tests and is never touched): pushes
//! are refused with 503 and `Retry-After` — never 202 — soon after they arrive, not after the
//! pool's connection wait; `/readyz` says so within a second or two; nothing refused is
//! stored; and the same process takes pushes and delivers again once storage is back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use wharf_testkit::proxy::Proxy;

use crate::common::{Db, Env, Server};
use crate::peers::Sink;

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, path) = rest.split_once('/').unwrap();
    let user = auth
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}/{path}")
}

/// The `host:port` of a Postgres URL.
fn upstream(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let auth = rest.split('/').next().unwrap();
    let hostport = auth.rsplit_once('@').map(|(_, h)| h).unwrap_or(auth);
    use std::net::ToSocketAddrs;
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

#[test]
fn a_url_is_sent_through_the_proxy() {
    let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(
        through(
            "postgres://postgres@127.0.0.1:5432/db?sslmode=disable",
            addr
        ),
        "postgres://postgres@127.0.0.1:40000/db?sslmode=disable"
    );
    assert_eq!(
        upstream("postgres://root@127.0.0.1:5432/test"),
        "127.0.0.1:5432".parse().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_are_refused_soon_while_postgres_is_out_of_reach_and_the_node_recovers() {
    let env = Env::new(Db::Postgres).await;
    let pg_url = env.pg.as_ref().unwrap().url.clone();
    let proxy = Proxy::start(upstream(&pg_url)).await;
    let mut config = env.config();
    config.database_url = Some(through(&pg_url, proxy.addr()));
    // Long enough that a push waiting out the pool would be plainly told apart.
    config.database.acquire_timeout_seconds = 15;
    config.workers.poll_interval_ms = 50;
    let sink = Sink::ok().await;
    let s = Server::start(config).await;
    let hook = s.url(&s.webhook_stream("Pushes", "id", &sink.url()).await);
    let push = |id: String| {
        let client = s.client.clone();
        let hook = hook.clone();
        async move {
            let started = Instant::now();
            let res = client
                .post(&hook)
                .json(&json!({"id": id}))
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            let retry_after = res.headers().get("retry-after").cloned();
            let status = res.status();
            if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                eprintln!("{status}: {}", res.text().await.unwrap_or_default());
            }
            (status, retry_after, started.elapsed())
        }
    };
    let (status, _, _) = push("before".into()).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    proxy.cut();
    let mut refused = Vec::new();
    for i in 0..4 {
        let (status, retry_after, took) = push(format!("during-{i}")).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "push {i}: never 202"
        );
        assert!(retry_after.is_some(), "push {i}: 503 says when to retry");
        // Well under the 15 s connection wait every push would otherwise sit out.
        assert!(took < Duration::from_secs(8), "push {i} took {took:?}");
        refused.push(took);
    }
    let started = Instant::now();
    let ready = s
        .client
        .get(s.url("/readyz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, _) = push("after".into()).await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no push taken after storage came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What was accepted is delivered; what was refused was never stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.counts_by_id().len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", sink.counts_by_id());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, events) = s.get("/events?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e: &Value| e["entity_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["after", "before"], "refused pushes stored nothing");
    let counts = sink.counts_by_id();
    assert_eq!(counts.get("before"), Some(&1));
    assert_eq!(counts.get("after"), Some(&1));
}
