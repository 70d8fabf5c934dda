//! Local HTTP peers for engine tests: a paginated JSON source and a sink that records every
//! delivery and answers as a test scripts it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// Serves `total` records `{"id": "<n>", …}` at `/orders`, `per_page` a page, linked with
/// `Link: rel="next"` like Shopify's Admin API.
pub async fn paginated_source(total: usize, per_page: usize) -> SocketAddr {
    let app = Router::new().route(
        "/orders",
        get(move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| async move {
            let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let host = headers["host"].to_str().unwrap().to_string();
            let start = page * per_page;
            let end = (start + per_page).min(total);
            let orders: Vec<Value> = (start..end)
                .map(|i| json!({"id": format!("{}", 1000 + i), "name": format!("#{}", 1000 + i), "total_price": "10.00"}))
                .collect();
            let mut res = axum::Json(json!({"orders": orders})).into_response();
            if end < total {
                let link = format!("<http://{host}/orders?page={}>; rel=\"next\"", page + 1);
                res.headers_mut().insert("link", link.parse().unwrap());
            }
            res
        }),
    );
    serve(app).await
}

/// A source that always fails.
pub async fn broken_source() -> SocketAddr {
    serve(Router::new().route(
        "/orders",
        get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database on fire") }),
    ))
    .await
}

/// One delivery the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    /// The body as text (CSV, XML and other text deliveries).
    pub raw: String,
    pub headers: HeaderMap,
}

/// How the sink answers the `n`th delivery (counting from 1) of a body.
pub type Script =
    Arc<dyn Fn(&Value, usize) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync>;

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct SinkState {
    received: Arc<Mutex<Vec<Received>>>,
    tries: Arc<Mutex<HashMap<String, usize>>>,
    script: Script,
    delay: std::time::Duration,
}

impl Sink {
    /// A sink answering 200 to everything.
    pub async fn ok() -> Sink {
        Sink::scripted(Arc::new(|_, _| (StatusCode::OK, vec![]))).await
    }

    pub async fn scripted(script: Script) -> Sink {
        Sink::build(script, std::time::Duration::ZERO).await
    }

    /// A sink answering 200 after `delay`, like a slow ERP.
    pub async fn slow(delay: std::time::Duration) -> Sink {
        Sink::build(Arc::new(|_, _| (StatusCode::OK, vec![])), delay).await
    }

    async fn build(script: Script, delay: std::time::Duration) -> Sink {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = SinkState {
            received: received.clone(),
            tries: Arc::default(),
            script,
            delay,
        };
        let app = Router::new().route("/in", post(receive)).with_state(state);
        Sink {
            addr: serve(app).await,
            received,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/in", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many deliveries carried each `id`.
    pub fn counts_by_id(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.received() {
            let id = r.body["id"].as_str().unwrap_or_default().to_string();
            *out.entry(id).or_default() += 1;
        }
        out
    }
}

async fn receive(State(s): State<SinkState>, headers: HeaderMap, body: Bytes) -> Response {
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let raw = String::from_utf8_lossy(&body).into_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let n = {
        let mut tries = s.tries.lock().unwrap();
        let n = tries.entry(id).or_default();
        *n += 1;
        *n
    };
    let (status, extra) = (s.script)(&body, n);
    s.received
        .lock()
        .unwrap()
        .push(Received { body, raw, headers });
    let mut res = (status, format!("answer {n}: {status}")).into_response();
    for (k, v) in extra {
        res.headers_mut().insert(k, v.parse().unwrap());
    }
    res
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
